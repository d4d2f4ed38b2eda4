package actors

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/internal/console"
	"sstack/internal/logformat"
	"sstack/metrics"
)

// BenchmarkLogPath relays numbered lines ("1" to "N") from a generator
// process through the whole log path of one replica as up runs it
// (logPipe, pumpLines, the logger with its store and metrics, the console
// writing to a pipe) to a reader process. The floor, in the same run: the
// same generator straight into the same reader. Unlike the root package's
// BenchmarkLogThroughput it needs no Apptainer, so the path can be
// profiled alone (-cpuprofile). cpu-ns/line is the CPU this process, which
// runs nothing but the path, spends per line.
//
// Two generators: the host's seq, as fast as it goes (the log path is
// the limit, every batch full), and one paced at 4.5 M lines/s in 4 KiB
// writes, about what `seq` in an Apptainer instance writes on our 2-core
// machine, so batches are as small as there (the floor is then the pace).
func BenchmarkLogPath(b *testing.B) {
	seq, err := exec.LookPath("seq")
	if err != nil {
		b.Skip("needs seq")
	}
	lines := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("SSTACK_BENCH_LINES")); err == nil && n > 1 {
		lines = n
	}
	// One actor system for every run, as up has one for the stack: its
	// setup is not what is measured.
	system := actor.NewActorSystem(actor.WithLoggerFactory(quietLogger))
	defer system.Shutdown()
	for _, gen := range []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{"seq", func() *exec.Cmd { return exec.Command(seq, "1", strconv.Itoa(lines)) }},
		{"paced", func() *exec.Cmd {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), genEnv+"="+strconv.Itoa(lines))
			return cmd
		}},
	} {
		b.Run(gen.name, func(b *testing.B) {
			var floor, path, cpu, ratio []float64
			for i := 0; i < b.N; i++ {
				f, _ := runLogPath(b, nil, gen.cmd(), lines)
				p, c := runLogPath(b, system, gen.cmd(), lines)
				floor, path, ratio = append(floor, f), append(path, p), append(ratio, p/f)
				cpu = append(cpu, float64(c.Nanoseconds())/float64(lines))
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(medianOf(floor), "floor-lines/s")
			b.ReportMetric(medianOf(path), "path-lines/s")
			b.ReportMetric(medianOf(ratio), "ratio")
			b.ReportMetric(medianOf(cpu), "cpu-ns/line")
		})
	}
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// readerEnv and genEnv make the test binary the benchmark's reader or its
// paced generator (see init).
const (
	readerEnv = "SSTACK_LOGPATH_READER"
	genEnv    = "SSTACK_LOGPATH_GEN"
)

// genRate is the paced generator's lines per second; SSTACK_BENCH_RATE
// overrides it (a slower service makes smaller batches).
var genRate = func() int {
	if n, err := strconv.Atoi(os.Getenv("SSTACK_BENCH_RATE")); err == nil && n > 0 {
		return n
	}
	return 4_500_000
}()

func init() {
	if os.Getenv(readerEnv) != "" {
		benchReader()
	}
	if n, err := strconv.Atoi(os.Getenv(genEnv)); err == nil {
		benchGenerator(n)
	}
}

// benchReader counts the lines on its stdin and prints the count, the
// times of the first and the last read, and the last line. It is a
// process of its own so that its CPU is not the path's.
func benchReader() {
	buf := make([]byte, 64<<10)
	tail := make([]byte, 0, 64<<10)
	var n int
	var first, last int64
	for {
		k, err := os.Stdin.Read(buf)
		if k > 0 {
			last = time.Now().UnixNano()
			if first == 0 {
				first = last
			}
			n += bytes.Count(buf[:k], newline)
			chunk := buf[:k]
			if i := bytes.LastIndexByte(chunk[:k-1], '\n'); i >= 0 {
				tail, chunk = tail[:0], chunk[i+1:]
			}
			tail = append(tail, chunk...)
		}
		if err != nil {
			break
		}
	}
	fmt.Printf("%d %d %d %q\n", n, first, last, tail)
	os.Exit(0)
}

// benchGenerator writes lines 1 to n to stdout in 4 KiB writes, as stdio
// does, at genRate lines/s.
func benchGenerator(n int) {
	buf := make([]byte, 0, 4096+32)
	start := time.Now()
	for i := 1; i <= n; i++ {
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, '\n')
		if len(buf) >= 4096 || i == n {
			k := min(len(buf), 4096)
			if _, err := os.Stdout.Write(buf[:k]); err != nil {
				os.Exit(1)
			}
			buf = append(buf[:0], buf[k:]...)
			for time.Since(start) < time.Duration(i)*time.Second/time.Duration(genRate) {
			}
		}
	}
	os.Exit(0)
}

// runLogPath runs gen, which writes lines 1 to lines, its stdout through
// the log path in system (for the floor, nil: straight) into a reader
// process, and returns lines/s from the first line read to the last and
// the CPU this process used from gen's start to the path's end.
func runLogPath(b *testing.B, system *actor.ActorSystem, gen *exec.Cmd, lines int) (float64, time.Duration) {
	b.Helper()
	reader := exec.Command(os.Args[0])
	reader.Env = append(os.Environ(), readerEnv+"=1")
	var report bytes.Buffer
	reader.Stdout, reader.Stderr = &report, os.Stderr
	prefix := ""
	var finish func()
	if system != nil {
		prefix = "gen-1 | "
		svcR, svcW, err := logPipe()
		if err != nil {
			b.Fatal(err)
		}
		outR, outW, err := logPipe()
		if err != nil {
			b.Fatal(err)
		}
		gen.Stdout, reader.Stdin = svcW, outR
		c := console.New(outW, io.Discard, "bench")
		logger := system.Root.Spawn(newLogger(logformat.Format{Prefix: true, Width: 5, Project: "bench", StoreDir: b.TempDir()}, c, metrics.New("bench")))
		pumped := make(chan struct{})
		go func() {
			defer close(pumped)
			pumpLines(system.Root, logger, &logformat.Source{Service: "gen", Replica: 1, Name: "gen-1"}, Stdout, svcR, time.Now)
		}()
		finish = func() {
			svcW.Close()
			<-pumped
			svcR.Close()
			_ = system.Root.PoisonFuture(logger).Wait()
			c.Close()
			outW.Close()
			outR.Close()
		}
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		gen.Stdout, reader.Stdin = w, r
		finish = func() { w.Close(); r.Close() }
	}
	if err := reader.Start(); err != nil {
		b.Fatal(err)
	}
	runtime.GC() // not the setup's garbage during the measurement
	cpu0 := selfCPU()
	if err := gen.Run(); err != nil {
		b.Fatal(err)
	}
	finish()
	cpu := selfCPU() - cpu0
	if err := reader.Wait(); err != nil {
		b.Fatal(err)
	}
	var n int
	var first, last int64
	var tail string
	if _, err := fmt.Sscanf(report.String(), "%d %d %d %q", &n, &first, &last, &tail); err != nil {
		b.Fatalf("reader: %q: %v", report.String(), err)
	}
	if want := prefix + strconv.Itoa(lines) + "\n"; n != lines || tail != want {
		b.Fatalf("read %d lines of %d, the last %q", n, lines, tail)
	}
	return float64(n-1) / time.Duration(last-first).Seconds(), cpu
}

// selfCPU is the user and system CPU this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

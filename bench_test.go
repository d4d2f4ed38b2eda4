package main

// Benchmarks of sstack against the raw Apptainer floor, measured in the same
// run, alternating floor and sstack to cancel drift (scripts/bench.sh):
//
//	go test -run '^$' -bench . -benchtime 10x .
//
// They are not run by `go test` without -bench. Each reports medians in ms
// (or lines/s) and the median of the per-iteration ratios sstack/floor;
// ns/op is suppressed because one iteration holds several timed phases.
// They time a sstack built without -race, by benchSstack.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
)

var (
	benchBinOnce sync.Once
	benchBinPath string
	benchBinErr  error
)

// benchSstack builds sstack without -race (the race detector slows it
// several times over) at a fixed per-user path, so repeated runs overwrite
// one file instead of leaving binaries behind.
func benchSstack(b *testing.B) string {
	b.Helper()
	benchBinOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "sstack-bench-"+strconv.Itoa(os.Getuid()))
		if benchBinErr = os.MkdirAll(dir, 0o755); benchBinErr != nil {
			return
		}
		benchBinPath = filepath.Join(dir, "sstack")
		out, err := exec.Command("go", "build", "-o", benchBinPath, ".").CombinedOutput()
		if err != nil {
			benchBinErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if benchBinErr != nil {
		b.Fatal(benchBinErr)
	}
	return benchBinPath
}

// benchCmd is the service process of BenchmarkUp10: it prints "ready", then
// idles in `wait`, which a trapped SIGTERM interrupts at once (a `sleep` in
// the foreground would delay the trap until it ends). The sleep's output
// goes nowhere so it holds no log pipe.
const benchCmd = `trap 'kill $p; exit 0' TERM; echo ready; sleep 100000 </dev/null >/dev/null 2>&1 & p=$!; wait $p`

// isolation are the flags sstack gives `instance start`
// (singularity/apptainer.go isolationFlags).
var isolation = []string{"--containall", "--no-init", "--no-umask", "--no-eval", "--writable-tmpfs"}

type benchEnv struct {
	b        *testing.B
	apptBin  string
	image    string
	dir      string // compose files, hosts files
	stateDir string
	sstack   string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	rt := testimg.RequireRuntime(b)
	e := &benchEnv{
		b:        b,
		apptBin:  rt.Binary,
		image:    testimg.Busybox(b),
		dir:      b.TempDir(),
		stateDir: b.TempDir(),
		sstack:   benchSstack(b),
	}
	return e
}

func benchName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, rand.Int63()%1_000_000_000)
}

// killInstances removes whatever a failed iteration left behind.
func (e *benchEnv) killInstances(project string) {
	out, _ := exec.Command(e.apptBin, "-s", "instance", "list", project+".*").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], project+".") {
			_ = exec.Command(e.apptBin, "-s", "instance", "stop", "-s", "KILL", f[0]).Run()
		}
	}
}

func (e *benchEnv) instancesLeft(project string) []string {
	out, err := exec.Command(e.apptBin, "-s", "instance", "list", project+".*").Output()
	if err != nil {
		e.b.Fatalf("instance list: %v", err)
	}
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], project+".") {
			left = append(left, f[0])
		}
	}
	return left
}

func (e *benchEnv) appt(args ...string) *exec.Cmd {
	cmd := exec.Command(e.apptBin, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// startInstance runs `instance start` exactly as sstack does for a service
// with no volumes: isolation flags plus the hosts file bound read-only.
func (e *benchEnv) startInstance(name, hosts string) error {
	args := append([]string{"-s", "instance", "start"}, isolation...)
	args = append(args, "--mount", "type=bind,source="+hosts+",destination=/etc/hosts,readonly", e.image, name)
	if out, err := e.appt(args...).CombinedOutput(); err != nil {
		return fmt.Errorf("instance start %s: %v: %s", name, err, out)
	}
	return nil
}

// execArgs is sstack's `exec instance://` command line
// (singularity/apptainer.go processArgs).
func execArgs(instance string, args ...string) []string {
	return append([]string{"-s", "exec", "--cleanenv", "--no-eval", "--pwd", "/", "instance://" + instance}, args...)
}

func (e *benchEnv) writeFile(name, content string) string {
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.b.Fatal(err)
	}
	return path
}

// sstackRun is one `sstack up` with stdout on a pipe the caller reads.
type sstackRun struct {
	cmd    *exec.Cmd
	stdout *os.File // read end
	stderr  *lockedBuffer
	started *statusClock // when each "Started" status line arrived
	done    chan struct{}
	code    int
}

// statusClock notes when each "  Started" status line of sstack's stderr
// arrived.
type statusClock struct {
	mu      sync.Mutex
	partial []byte
	times   []time.Time
}

func (c *statusClock) Write(p []byte) (int, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		if bytes.HasSuffix(c.partial[:i], []byte("  Started")) {
			c.times = append(c.times, now)
		}
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

// nth is when the n-th Started line arrived.
func (c *statusClock) nth(n int) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.times) < n {
		return time.Time{}, false
	}
	return c.times[n-1], true
}

// sstackCmd is the benchmarked sstack with args, in the directory of the
// compose files, with the benchmark's state directory and no colours.
func (e *benchEnv) sstackCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(e.sstack, args...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "SSTACK_STATE_DIR="+e.stateDir, "NO_COLOR=1")
	return cmd
}

func (e *benchEnv) startSstack(compose, project string) *sstackRun {
	e.b.Helper()
	cmd := e.sstackCmd("-f", compose, "-n", project, "--metrics-addr", "")
	r, w, err := os.Pipe()
	if err != nil {
		e.b.Fatal(err)
	}
	run := &sstackRun{cmd: cmd, stdout: r, stderr: &lockedBuffer{}, started: &statusClock{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = w, io.MultiWriter(run.stderr, run.started)
	if err := cmd.Start(); err != nil {
		e.b.Fatal(err)
	}
	w.Close()
	go func() {
		_ = cmd.Wait()
		run.code = cmd.ProcessState.ExitCode()
		close(run.done)
	}()
	e.b.Cleanup(func() {
		select {
		case <-run.done:
		default:
			_ = cmd.Process.Kill()
			<-run.done
		}
		r.Close()
		e.killInstances(project)
	})
	return run
}

func (r *sstackRun) wait(b *testing.B, timeout time.Duration) {
	b.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		b.Fatalf("sstack did not exit within %s; stderr:\n%s", timeout, r.stderr)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pairRatio is the median of num[i]/den[i]: each pair was measured back to
// back, so a burst of load from other processes hits both sides of a pair
// more often than the medians of two separate series.
func pairRatio(num, den []float64) float64 {
	r := make([]float64, len(num))
	for i := range num {
		r[i] = num[i] / den[i]
	}
	return median(r)
}

// fmtSeries prints a series rounded to integers, for the benchmark log.
func fmtSeries(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

const upServices = 10

// BenchmarkUp10 times a stack of 10 independent busybox services: from
// launching `sstack up` until every service process prints "ready" (its
// first line, relayed to sstack's stdout), and from SIGINT until sstack has
// exited with every instance gone. The floor, in the same run: 10 parallel
// `instance start` (sstack's flags) each followed by `exec instance://` of
// the same command until it prints "ready"; then 10 parallel `instance
// stop` until they and the exec clients have returned.
func BenchmarkUp10(b *testing.B) {
	e := newBenchEnv(b)
	composeFile := e.writeFile("docker-compose.yml", benchCompose(e.image, upServices, 1))
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")

	var floorUp, floorDown, sstackUp, sstackDown []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		phases := []func(){
			func() {
				up, down := e.floorUp10(hosts)
				floorUp, floorDown = append(floorUp, ms(up)), append(floorDown, ms(down))
			},
			func() {
				up, down := e.sstackUp10(composeFile)
				sstackUp, sstackDown = append(sstackUp, ms(up)), append(sstackDown, ms(down))
			},
		}
		if i%2 == 1 {
			phases[0], phases[1] = phases[1], phases[0]
		}
		for _, p := range phases {
			p()
		}
	}
	b.StopTimer()
	b.Logf("floor  up %s ms, down %s ms", fmtSeries(floorUp), fmtSeries(floorDown))
	b.Logf("sstack up %s ms, down %s ms", fmtSeries(sstackUp), fmtSeries(sstackDown))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(floorUp), "floor-up-ms")
	b.ReportMetric(median(sstackUp), "sstack-up-ms")
	b.ReportMetric(pairRatio(sstackUp, floorUp), "up-ratio")
	b.ReportMetric(median(floorDown), "floor-down-ms")
	b.ReportMetric(median(sstackDown), "sstack-down-ms")
	b.ReportMetric(pairRatio(sstackDown, floorDown), "down-ratio")
}

// benchCompose is a stack of n independent services svc0, svc1, ...,
// each of replicas replicas running benchCmd.
func benchCompose(image string, n, replicas int) string {
	var compose strings.Builder
	compose.WriteString("services:\n")
	for i := 0; i < n; i++ {
		// $$: compose interpolates $VAR.
		fmt.Fprintf(&compose, "  svc%d:\n    image: %s\n    command: [\"sh\", \"-c\", %q]\n", i, image, strings.ReplaceAll(benchCmd, "$", "$$"))
		if replicas != 1 {
			fmt.Fprintf(&compose, "    deploy:\n      replicas: %d\n", replicas)
		}
	}
	return compose.String()
}

func (e *benchEnv) floorUp10(hosts string) (up, down time.Duration) {
	b := e.b
	project := benchName("benchfloor")
	b.Cleanup(func() { e.killInstances(project) })
	type svc struct {
		name   string
		client *exec.Cmd
		out    *os.File
	}
	svcs := make([]*svc, upServices)
	errs := make(chan error, upServices)
	t0 := time.Now()
	for i := range svcs {
		s := &svc{name: fmt.Sprintf("%s.svc%d.1", project, i)}
		svcs[i] = s
		go func() {
			if err := e.startInstance(s.name, hosts); err != nil {
				errs <- err
				return
			}
			r, w, err := os.Pipe()
			if err != nil {
				errs <- err
				return
			}
			s.client = e.appt(execArgs(s.name, "sh", "-c", benchCmd)...)
			s.client.Stdout, s.client.Stderr = w, os.Stderr
			err = s.client.Start()
			w.Close()
			if err != nil {
				r.Close()
				errs <- err
				return
			}
			s.out = r
			line, err := bufio.NewReader(r).ReadString('\n')
			if err == nil && line != "ready\n" {
				err = fmt.Errorf("%s: got %q, want ready", s.name, line)
			}
			errs <- err
		}()
	}
	for range svcs {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	up = time.Since(t0)

	t1 := time.Now()
	var wg sync.WaitGroup
	for _, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := e.appt("-s", "instance", "stop", "-s", "SIGTERM", "-t", "2", s.name).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("instance stop %s: %v: %s", s.name, err, out)
				return
			}
			_ = s.client.Wait() // killed by instance stop
			errs <- nil
		}()
	}
	wg.Wait()
	down = time.Since(t1)
	for range svcs {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range svcs {
		s.out.Close()
	}
	if left := e.instancesLeft(project); len(left) > 0 {
		b.Fatalf("floor: instances left: %v", left)
	}
	return up, down
}

func (e *benchEnv) sstackUp10(composeFile string) (up, down time.Duration) {
	_, up, down = e.sstackUp10Started(composeFile)
	return up, down
}

// sstackUp10Started is sstackUp10 that also returns when the last
// "Started" status line arrived (started), which is what `up -d` waits for.
func (e *benchEnv) sstackUp10Started(composeFile string) (started, up, down time.Duration) {
	b := e.b
	project := benchName("benchss")
	t0 := time.Now()
	run := e.startSstack(composeFile, project)
	ready := make(chan struct{})
	go func() {
		seen := map[string]bool{}
		closed := false
		br := bufio.NewReader(run.stdout)
		for {
			line, err := br.ReadString('\n')
			if name, rest, ok := strings.Cut(line, " | "); ok && rest == "ready\n" {
				seen[strings.TrimSpace(name)] = true
				if len(seen) == upServices && !closed {
					closed = true
					close(ready)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-ready:
	case <-run.done:
		b.Fatalf("sstack exited (code %d) before every service was ready; stderr:\n%s", run.code, run.stderr)
	case <-time.After(60 * time.Second):
		b.Fatalf("services not ready after 60s; stderr:\n%s", run.stderr)
	}
	up = time.Since(t0)
	if n := strings.Count(run.stderr.String(), "  Started\n"); n != upServices {
		b.Fatalf("%d Started lines, want %d; stderr:\n%s", n, upServices, run.stderr)
	}
	if at, ok := run.started.nth(upServices); ok {
		started = at.Sub(t0)
	}

	t1 := time.Now()
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	run.wait(b, 60*time.Second)
	down = time.Since(t1)
	if run.code != 0 {
		b.Fatalf("sstack exit code %d after SIGINT; stderr:\n%s", run.code, run.stderr)
	}
	// Every process ran its TERM handler (not killed at the grace period).
	if n := strings.Count(run.stderr.String(), " exited with code 0\n"); n != upServices {
		b.Fatalf("%d services exited with code 0 after SIGINT, want %d; stderr:\n%s", n, upServices, run.stderr)
	}
	if left := e.instancesLeft(project); len(left) > 0 {
		b.Fatalf("sstack: instances left: %v", left)
	}
	return started, up, down
}

// logLines is how many lines BenchmarkLogThroughput relays;
// SSTACK_BENCH_LINES overrides it (more lines, steadier numbers).
var logLines = func() int {
	if n, err := strconv.Atoi(os.Getenv("SSTACK_BENCH_LINES")); err == nil && n > 1 {
		return n
	}
	return 1_000_000
}()

// lineCounter reads numbered lines ("N" or "PREFIX N") and checks that they
// are 1, 2, ... in order. It records when the first and the last line
// arrived, and calls onFirst and onLast right then.
type lineCounter struct {
	prefix          []byte
	onFirst, onLast func()
	n               int
	first, last     time.Time
	err             error
}

func (c *lineCounter) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			now := time.Now()
			if c.n == 0 && c.first.IsZero() {
				c.first = now
				if c.onFirst != nil {
					c.onFirst()
				}
			}
			c.last = now
			if c.err == nil {
				c.check(line)
				if c.n == logLines && c.onLast != nil {
					c.onLast()
				}
			}
		}
		if err == bufio.ErrBufferFull {
			c.err = fmt.Errorf("line %d longer than 64 KiB", c.n+1)
			continue
		}
		if err != nil {
			return
		}
	}
}

func (c *lineCounter) check(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	rest, ok := bytes.CutPrefix(line, c.prefix)
	if !ok {
		c.err = fmt.Errorf("after %d lines: unexpected line %q", c.n, line)
		return
	}
	v, err := strconv.Atoi(string(rest))
	if err != nil || v != c.n+1 {
		c.err = fmt.Errorf("after %d lines: got %q, want %d", c.n, line, c.n+1)
		return
	}
	c.n++
}

// rate checks that every line arrived, in order, and returns lines/s from
// the first line to the last.
func (c *lineCounter) rate(b *testing.B, who string) float64 {
	b.Helper()
	if c.err != nil {
		b.Fatalf("%s: %v", who, c.err)
	}
	if c.n != logLines {
		b.Fatalf("%s: %d lines, want %d", who, c.n, logLines)
	}
	return float64(c.n-1) / c.last.Sub(c.first).Seconds()
}

// cpuTime is the CPU time (user+system) pid has used itself, children not
// included, at the kernel's tick resolution (usually 10 ms).
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// BenchmarkLogThroughput relays 1M numbered lines (busybox `seq`) from one
// service through sstack to a pipe, and checks that none is lost or out of
// order. Throughput is lines per second between the first and the last line
// reaching the reader, which leaves out instance start and teardown. The
// floor, in the same run: `exec instance://` of the same `seq` in an
// instance started with sstack's flags, its stdout on a pipe read the same
// way. sstack-cpu-ns/line is the CPU sstack itself (not Apptainer, not seq)
// spends per line relayed, which load from other processes barely changes.
func BenchmarkLogThroughput(b *testing.B) {
	e := newBenchEnv(b)
	composeFile := e.writeFile("docker-compose.yml", fmt.Sprintf(
		"services:\n  gen:\n    image: %s\n    command: [\"seq\", \"1\", \"%d\"]\n", e.image, logLines))
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")
	// One instance serves every floor run: its start and stop are not timed.
	floorInst := benchName("benchlograw") + ".gen.1"
	if err := e.startInstance(floorInst, hosts); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.appt("-s", "instance", "stop", "-s", "KILL", floorInst).Run() })

	var floor, sstack, cpu []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		phases := []func(){
			func() { floor = append(floor, e.floorLogs(floorInst)) },
			func() {
				rate, perLine := e.sstackLogs(composeFile)
				sstack, cpu = append(sstack, rate), append(cpu, perLine)
			},
		}
		if i%2 == 1 {
			phases[0], phases[1] = phases[1], phases[0]
		}
		for _, p := range phases {
			p()
		}
	}
	b.StopTimer()
	b.Logf("floor  lines/s %s", fmtSeries(floor))
	b.Logf("sstack lines/s %s, CPU ns/line %s", fmtSeries(sstack), fmtSeries(cpu))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(floor), "floor-lines/s")
	b.ReportMetric(median(sstack), "sstack-lines/s")
	b.ReportMetric(pairRatio(sstack, floor), "ratio")
	b.ReportMetric(median(cpu), "sstack-cpu-ns/line")
}

func (e *benchEnv) floorLogs(instance string) float64 {
	b := e.b
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	cmd := e.appt(execArgs(instance, "seq", "1", strconv.Itoa(logLines))...)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		b.Fatal(err)
	}
	var c lineCounter
	c.read(r)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("floor exec: %v", err)
	}
	return c.rate(b, "floor")
}

// sstackLogs runs the stack, which ends by itself once seq has exited, and
// returns lines/s and sstack's own CPU ns per line.
func (e *benchEnv) sstackLogs(composeFile string) (rate, cpuPerLine float64) {
	b := e.b
	project := benchName("benchlog")
	run := e.startSstack(composeFile, project)
	pid := run.cmd.Process.Pid
	var cpu0, cpu1 time.Duration
	c := lineCounter{
		prefix:  []byte("gen-1 | "),
		onFirst: func() { cpu0 = cpuTime(pid) },
		onLast:  func() { cpu1 = cpuTime(pid) },
	}
	c.read(run.stdout)
	run.wait(b, 60*time.Second)
	if run.code != 0 {
		b.Fatalf("sstack exit code %d; stderr:\n%s", run.code, run.stderr)
	}
	if !strings.Contains(run.stderr.String(), "gen-1 exited with code 0") {
		b.Fatalf("no exit line; stderr:\n%s", run.stderr)
	}
	rate = c.rate(b, "sstack")
	return rate, float64((cpu1 - cpu0).Nanoseconds()) / float64(logLines)
}

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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
	"sstack/singularity"
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

type benchEnv struct {
	b        *testing.B
	apptBin  string
	image    string
	dir      string // compose files, hosts files
	stateDir string
	sstack   string
	env      []string // added to sstack's environment (a Slurm job's)
	// last is what the CPUs did during the last up timed (floorRun's or
	// sstackUpStarted's).
	last upCPU
}

// upCPU is what the CPUs did from the launch of an up until every
// service was ready: busy is the machine's busy time, every process
// (for an up on 2 cores that keeps both busy, the wall time is about
// half of it), own the time sstack's own threads ran (0 for the floor;
// not its children: apptainer, the network's holder and slirp4netns).
type upCPU struct{ busy, own time.Duration }

// cpuSeries are upCPU of several ups, in ms.
type cpuSeries struct{ busy, own []float64 }

func (s *cpuSeries) add(c upCPU) {
	s.busy, s.own = append(s.busy, ms(c.busy)), append(s.own, ms(c.own))
}

// machineBusy is the time the machine's CPUs have been busy since boot
// (/proc/stat: all but idle and iowait), at the clock tick's resolution.
func machineBusy(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i := 1; i < len(f) && i <= 8; i++ {
		if i == 4 || i == 5 {
			continue
		}
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// threadsCPU is the time pid's threads have run, in ns (their schedstat).
func threadsCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var total int64
	for _, t := range tasks {
		if data, err := os.ReadFile(t); err == nil {
			n, _ := strconv.ParseInt(strings.Fields(string(data))[0], 10, 64)
			total += n
		}
	}
	return time.Duration(total)
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

// startArgs are sstack's own `instance start` arguments for a service
// with no volumes on the host's network: isolation flags plus the hosts
// file bound read-only.
func (e *benchEnv) startArgs(name, hosts string) []string {
	args, err := singularity.StartArgs(singularity.InstanceSpec{Name: name, Image: e.image, HostsFile: hosts})
	if err != nil {
		e.b.Fatal(err)
	}
	return args
}

// startInstance runs `instance start` exactly as sstack does for a service
// with no volumes.
func (e *benchEnv) startInstance(name, hosts string) error {
	if out, err := e.appt(e.startArgs(name, hosts)...).CombinedOutput(); err != nil {
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
	running
	stdout  *os.File          // read end
	started *benchStatusClock // when each "Started" status line arrived
}

// benchStatusClock notes when each "  Started" status line of sstack's stderr
// arrived.
type benchStatusClock struct {
	mu      sync.Mutex
	partial []byte
	times   []time.Time
}

func (c *benchStatusClock) Write(p []byte) (int, error) {
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
func (c *benchStatusClock) nth(n int) (time.Time, bool) {
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
	cmd.Env = append(append(os.Environ(), "SSTACK_STATE_DIR="+e.stateDir, "NO_COLOR=1"), e.env...)
	return cmd
}

// startSstack starts `sstack up` of compose as project, with args added.
func (e *benchEnv) startSstack(compose, project string, args ...string) *sstackRun {
	e.b.Helper()
	cmd := e.sstackCmd(append([]string{"-f", compose, "-n", project, "--metrics-addr", ""}, args...)...)
	r, w, err := os.Pipe()
	if err != nil {
		e.b.Fatal(err)
	}
	run := &sstackRun{running: running{stderr: &lockedBuffer{}}, stdout: r, started: &benchStatusClock{}}
	e.b.Cleanup(func() {
		r.Close()
		e.killInstances(project)
	})
	start(e.b, &run.running, cmd, w, io.MultiWriter(run.stderr, run.started))
	w.Close()
	return run
}

// alternate runs each phase b.N times, rotating which goes first from one
// iteration to the next, so that the floor and sstack, measured in the
// same run, share the machine's drifts of load alike.
func alternate(b *testing.B, phases ...func()) {
	for i := 0; i < b.N; i++ {
		for k := range phases {
			phases[(k+i)%len(phases)]()
		}
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

// upDownSeries is how long each run's up and its down took, in ms.
type upDownSeries struct{ up, down []float64 }

func (s *upDownSeries) add(up, down time.Duration) {
	s.up, s.down = append(s.up, ms(up)), append(s.down, ms(down))
}

// reportUpDownVsFloor logs the floor's and sstack's series and reports
// their medians, up and down, with the ratio of sstack's to the floor's.
func reportUpDownVsFloor(b *testing.B, floor, sstack upDownSeries) {
	b.Logf("floor  up %s ms, down %s ms", fmtSeries(floor.up), fmtSeries(floor.down))
	b.Logf("sstack up %s ms, down %s ms", fmtSeries(sstack.up), fmtSeries(sstack.down))
	b.ReportMetric(0, "ns/op")
	reportVs(b, floor.up, "floor-up-ms", sstack.up, "sstack-up-ms", "up-ratio")
	reportVs(b, floor.down, "floor-down-ms", sstack.down, "sstack-down-ms", "down-ratio")
}

// reportVs reports the medians of a base series and of one measured
// against it in the same run, and their pairRatio as ratioName.
func reportVs(b *testing.B, base []float64, baseName string, x []float64, xName, ratioName string) {
	b.ReportMetric(median(base), baseName)
	b.ReportMetric(median(x), xName)
	b.ReportMetric(pairRatio(x, base), ratioName)
}

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
// stop` until they and the exec clients have returned. It is
// BenchmarkUpDownN/N=10 under the name the README's table has used.
func BenchmarkUp10(b *testing.B) { benchUpDown(b, upServices) }

// upDownSizes are the stack sizes BenchmarkUpDownN runs.
var upDownSizes = []int{10, 50, 100, 200}

// BenchmarkUpDownN is BenchmarkUp10 for stacks of N = 10, 50, 100 and 200
// independent services (sub-benchmarks "N=10", ...). sstack runs at its
// default bound of parallel starts and stops (singularity.DefaultParallel, 8 per
// core; --parallel and COMPOSE_PARALLEL_LIMIT are not set), while the floor
// is unbounded: N `instance start`, then N `instance stop`, all at once.
// One iteration of N=200 takes about 1.5 minutes on 2 cores (and Go runs
// one more before the timed ones): run it with a small -benchtime
// (BENCHTIME=3x scripts/bench.sh -bench UpDownN).
func BenchmarkUpDownN(b *testing.B) {
	for _, n := range upDownSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchUpDown(b, n) })
	}
}

// benchUpDown is BenchmarkUp10 for a stack of n services.
func benchUpDown(b *testing.B, n int) {
	e := newBenchEnv(b)
	composeFile := e.writeFile("docker-compose.yml", benchCompose(e.image, n, 1))
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")
	if os.Getenv("COMPOSE_PARALLEL_LIMIT") != "" {
		b.Fatal("COMPOSE_PARALLEL_LIMIT is set: the benchmark times sstack at its default bound")
	}

	b.Logf("%d services; sstack starts and stops at most %d at once (its default), the floor all at once", n, singularity.DefaultParallel())
	var floor, sstack upDownSeries
	var floorCPU, sstackCPU cpuSeries
	b.ResetTimer()
	alternate(b,
		func() { floor.add(e.floorUp(hosts, n)); floorCPU.add(e.last) },
		func() { sstack.add(e.sstackUp(composeFile, n)); sstackCPU.add(e.last) },
	)
	b.StopTimer()
	reportUpDownVsFloor(b, floor, sstack)
	reportCPU(b, "floor", floorCPU)
	reportCPU(b, "sstack", sstackCPU)
}

// reportCPU logs what the CPUs did during the ups of name and reports
// the medians: the machine's busy time and, but for the floor, sstack's
// own. They explain the wall times: the ups keep 2 cores busy, so
// sstack's up lasts longer than the floor's by about half of the CPU
// time it adds, its own and its helpers'.
func reportCPU(b *testing.B, name string, s cpuSeries) {
	b.Logf("%s up: machine busy %s ms, sstack's own threads %s ms", name, fmtSeries(s.busy), fmtSeries(s.own))
	b.ReportMetric(median(s.busy), name+"-busy-ms")
	if name != "floor" {
		b.ReportMetric(median(s.own), name+"-own-cpu-ms")
	}
}

// upDownTimeout bounds each phase of benchUpDown for n services: generous,
// since n instance starts on a loaded 2-core machine take a while, and only
// there so that a hang fails the benchmark instead of stalling it.
func upDownTimeout(n int) time.Duration {
	return time.Minute + time.Duration(n)*2*time.Second
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

// floorUp is the raw floor of n services up and down on this host: n
// parallel `instance start`, each followed by `exec instance://` of
// benchCmd (floorRun).
func (e *benchEnv) floorUp(hosts string, n int) (up, down time.Duration) {
	project := benchName("benchfloor")
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s.svc%d.1", project, i)
	}
	return e.floorRun(project, names, func(name string) (*exec.Cmd, error) {
		if err := e.startInstance(name, hosts); err != nil {
			return nil, err
		}
		return e.appt(execArgs(name, "sh", "-c", benchCmd)...), nil
	})
}

// floorRun is the raw floor of a stack's up and down, the same for one host
// and a Slurm allocation: launch of every instance, in parallel, gives the
// client whose stdout says "ready" once benchCmd runs in it (up); then
// `instance stop` of each, in parallel, until it and its client have
// returned (down). None is bounded.
func (e *benchEnv) floorRun(project string, names []string, launch func(name string) (*exec.Cmd, error)) (up, down time.Duration) {
	b := e.b
	b.Cleanup(func() { e.killInstances(project) })
	n := len(names)
	errs := make(chan error, n)
	timeout := time.After(upDownTimeout(n))
	collect := func(what string) {
		for range names {
			select {
			case err := <-errs:
				if err != nil {
					b.Fatal(err)
				}
			case <-timeout:
				b.Fatalf("floor: %d replicas not %s after %s", n, what, upDownTimeout(n))
			}
		}
	}
	done := make([]chan struct{}, n) // each client has ended
	busy0 := machineBusy(b)
	t0 := time.Now()
	for i, name := range names {
		done[i] = make(chan struct{})
		go func() {
			client, err := launch(name)
			if err != nil {
				errs <- err
				return
			}
			r, w, err := os.Pipe()
			if err != nil {
				errs <- err
				return
			}
			client.Stdout, client.Stderr = w, os.Stderr
			err = client.Start()
			w.Close()
			if err != nil {
				r.Close()
				errs <- err
				return
			}
			line, err := bufio.NewReader(r).ReadString('\n')
			if err == nil && line != "ready\n" {
				err = fmt.Errorf("%s: got %q, want ready", name, line)
			}
			go func() { _ = client.Wait(); r.Close(); close(done[i]) }()
			errs <- err
		}()
	}
	collect("ready")
	up = time.Since(t0)
	e.last = upCPU{busy: machineBusy(b) - busy0}

	timeout = time.After(upDownTimeout(n))
	t1 := time.Now()
	for i, name := range names {
		go func() {
			if out, err := e.appt("-s", "instance", "stop", "-s", "SIGTERM", "-t", "2", name).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("instance stop %s: %v: %s", name, err, out)
				return
			}
			<-done[i] // the client ends with its instance
			errs <- nil
		}()
	}
	collect("stopped")
	down = time.Since(t1)
	if left := e.instancesLeft(project); len(left) > 0 {
		b.Fatalf("floor: instances left: %v", left)
	}
	return up, down
}

// sstackUp times `sstack up` of a stack of n services running benchCmd
// from launch until every process has printed "ready" (up), and from
// SIGINT until sstack has exited with no instance left (down).
func (e *benchEnv) sstackUp(composeFile string, n int, args ...string) (up, down time.Duration) {
	_, up, down = e.sstackUpStarted(composeFile, n, args...)
	return up, down
}

// sstackUpStarted is sstackUp that also returns when the last "Started"
// status line arrived (started), which is what `up -d` waits for.
func (e *benchEnv) sstackUpStarted(composeFile string, n int, args ...string) (started, up, down time.Duration) {
	b := e.b
	project := benchName("benchss")
	busy0 := machineBusy(b)
	t0 := time.Now()
	run := e.startSstack(composeFile, project, args...)
	ready := make(chan struct{})
	go func() {
		seen := map[string]bool{}
		closed := false
		br := bufio.NewReader(run.stdout)
		for {
			line, err := br.ReadString('\n')
			if name, rest, ok := strings.Cut(line, " | "); ok && rest == "ready\n" {
				seen[strings.TrimSpace(name)] = true
				if len(seen) == n && !closed {
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
	case <-time.After(upDownTimeout(n)):
		b.Fatalf("services not ready after %s; stderr:\n%s", upDownTimeout(n), run.stderr)
	}
	up = time.Since(t0)
	e.last = upCPU{busy: machineBusy(b) - busy0, own: threadsCPU(run.cmd.Process.Pid)}
	// A status line may reach stderr a moment after the service's own first
	// line reached stdout (they are written by different goroutines): wait
	// for it, untimed, before checking the count.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(run.stderr.String(), "  Started\n") < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if c := strings.Count(run.stderr.String(), "  Started\n"); c != n {
		b.Fatalf("%d Started lines, want %d; stderr:\n%s", c, n, run.stderr)
	}
	if at, ok := run.started.nth(n); ok {
		started = at.Sub(t0)
	}

	t1 := time.Now()
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	run.wait(b, upDownTimeout(n))
	down = time.Since(t1)
	if run.code != 0 {
		b.Fatalf("sstack exit code %d after SIGINT; stderr:\n%s", run.code, run.stderr)
	}
	// Every process stopped by its stop signal, none killed at the grace
	// period (the teardown's exits have no line, as in docker compose).
	if c := strings.Count(run.stderr.String(), "  Stopped\n"); c != n || strings.Contains(run.stderr.String(), "killing it") {
		b.Fatalf("%d instances stopped after SIGINT, want %d, none killed; stderr:\n%s", c, n, run.stderr)
	}
	if left := e.instancesLeft(project); len(left) > 0 {
		b.Fatalf("sstack: instances left: %v", left)
	}
	return started, up, down
}

// Detached stacks: `up -d`, `ps`, `down`.

// runTimed runs cmd with its stdout and stderr in one buffer and returns how
// long it took; it fails the benchmark if cmd fails or takes over timeout.
func (e *benchEnv) runTimed(cmd *exec.Cmd, timeout time.Duration) (time.Duration, string) {
	b := e.b
	b.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		b.Fatalf("%v: not done after %s; output:\n%s", cmd.Args, timeout, &out)
	}
	d := time.Since(t0)
	if err != nil {
		b.Fatalf("%v: %v; output:\n%s", cmd.Args, err, &out)
	}
	return d, out.String()
}

// upDetached runs `sstack up -d` and returns how long it took to return.
// Every one of the replicas must have reported Started by then. The stack is
// taken down at the end of the benchmark if it still runs.
// args are added to up's (the last --metrics-addr wins).
func (e *benchEnv) upDetached(composeFile, project string, replicas int, timeout time.Duration, args ...string) time.Duration {
	b := e.b
	b.Helper()
	b.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(e.stateDir, project)); err == nil {
			cmd := e.sstackCmd("down", "-n", project)
			done := make(chan struct{})
			go func() { _ = cmd.Run(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
			}
		}
		e.killInstances(project)
	})
	d, out := e.runTimed(e.sstackCmd(append([]string{"up", "-d", "-f", composeFile, "-n", project, "--metrics-addr", ""}, args...)...), timeout)
	if n := strings.Count(out, "  Started\n"); n != replicas {
		b.Fatalf("up -d returned after %d Started lines, want %d; output:\n%s", n, replicas, out)
	}
	return d
}

// awaitReady waits (untimed) until every one of the n replicas of a
// detached stack has printed "ready", and returns how long after `up -d`
// returned the last of them did (negative: before), from the time stamps
// the supervisor gave the lines. `up -d` returns once every replica's
// `exec` has been launched, which is before the process inside runs.
func (e *benchEnv) awaitReady(project string, n int, returned time.Time) time.Duration {
	b := e.b
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		cmd := e.sstackCmd("logs", "-n", project, "-t", "--no-log-prefix")
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("sstack logs: %v", err)
		}
		var last time.Time
		count := 0
		for _, line := range strings.Split(string(out), "\n") {
			stamp, text, ok := strings.Cut(line, " ")
			if !ok || text != "ready" {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, stamp)
			if err != nil {
				b.Fatalf("sstack logs -t: %q: %v", line, err)
			}
			count++
			if at.After(last) {
				last = at
			}
		}
		if count == n {
			return last.Sub(returned)
		}
		if count > n || time.Now().After(deadline) {
			b.Fatalf("%d replicas printed ready, want %d; logs:\n%s", count, n, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchPsRow is what the checks read of `sstack ps --format json`.
type benchPsRow struct {
	Instance   string
	State      string
	Supervised bool
}

// benchCheckPsJSON checks that out lists n replicas, all running and supervised.
func benchCheckPsJSON(out string, n int) error {
	var rows []benchPsRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return fmt.Errorf("ps --format json: %v: %s", err, out)
	}
	if len(rows) != n {
		return fmt.Errorf("ps --format json: %d rows, want %d", len(rows), n)
	}
	for _, r := range rows {
		if r.State != "running" || !r.Supervised {
			return fmt.Errorf("ps --format json: %s is %s (supervised %v), want running", r.Instance, r.State, r.Supervised)
		}
	}
	return nil
}

// benchCheckPsTable checks that out is a header and n rows, all running.
func benchCheckPsTable(out string, n int) error {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n+1 || !strings.HasPrefix(lines[0], "NAME ") {
		return fmt.Errorf("ps: %d lines, want a header and %d rows:\n%s", len(lines), n, out)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) < 3 || f[2] != "running" {
			return fmt.Errorf("ps: not running: %q", l)
		}
	}
	return nil
}

// benchCheckInstanceList checks that out, `instance list --json`, lists n instances.
func benchCheckInstanceList(out string, n int) error {
	var list struct {
		Instances []struct {
			Instance string `json:"instance"`
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return fmt.Errorf("instance list --json: %v: %s", err, out)
	}
	if len(list.Instances) != n {
		return fmt.Errorf("instance list --json: %d instances, want %d", len(list.Instances), n)
	}
	return nil
}

var benchSupervisorPid = regexp.MustCompile(`supervisor of \S+ \(pid (\d+)\)`)

// downDetached runs `sstack down` on a detached stack and returns how long
// it took to return. Then it checks that the supervisor had the stack
// down (down did not have to stop instances itself), that every replica
// stopped by its stop signal (Stopped, none killed, in the supervisor's
// log), and that no instance, no process of the project and no supervisor
// are left, nor the state directory.
// lingered is how long after down returned the last process of the
// project was still there (0 when none was).
func (e *benchEnv) downDetached(project string, replicas int) (d, lingered time.Duration) {
	b := e.b
	b.Helper()
	stateDir := filepath.Join(e.stateDir, project)
	// down removes sstack.log; an open descriptor still reads it.
	logFile, err := os.Open(filepath.Join(stateDir, "sstack.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd := e.sstackCmd("down", "-n", project)
	cmd.Dir = "/"
	d, out := e.runTimed(cmd, 2*time.Minute)
	returned := time.Now()
	m := benchSupervisorPid.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("down found no supervisor; output:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[1])
	if strings.Contains(out, "  Stopping\n") {
		b.Errorf("down had to stop instances the supervisor left; output:\n%s", out)
	}
	log, _ := io.ReadAll(logFile)
	if n := strings.Count(string(log), "  Stopped\n"); n != replicas || strings.Contains(string(log), "killing it") {
		b.Errorf("%d replicas stopped on down, want %d, none killed; supervisor log:\n%s", n, replicas, log)
	}
	// Processes that are exiting get a moment; none should need it.
	var procs []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		procs = leftovers(project)
		if len(procs) == 0 && pidGone(pid) {
			break
		}
		lingered = time.Since(returned)
		if time.Now().After(deadline) {
			b.Fatalf("10s after down: supervisor pid %d gone: %v; processes left: %v", pid, pidGone(pid), procs)
		}
	}
	if left := e.instancesLeft(project); len(left) > 0 {
		b.Fatalf("instances left after down: %v", left)
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		b.Errorf("state directory %s left after down (%v)", stateDir, err)
	}
	return d, lingered
}

const (
	psServices = 5
	psReplicas = 10 // per service
	ps50Rows   = psServices * psReplicas
	// psRounds is how many times each iteration times each command: one
	// ps takes tens of ms, so one sample per iteration would leave few.
	psRounds = 10
)

// BenchmarkPs50 times `sstack ps -n NAME` and `sstack ps -n NAME --format
// json` on a detached stack of 50 replicas (5 services of 10, started once
// with `up -d` before the timed loop), run from / (no compose file): a
// client that asks the supervisor over its control socket. The floor, in
// the same rounds: `apptainer instance list --json 'NAME.*'`, the least a
// tool without a supervisor would have to run to know the instances. Every
// output is checked (50 running rows); each round runs the three in a
// rotating order. It also reports how long `up -d` and `down` of the 50
// took (one sample each), and how long after `up -d` returned the last
// replica printed its first line (ready-lag; the timed rounds start only
// then).
func BenchmarkPs50(b *testing.B) {
	e := newBenchEnv(b)
	composeFile := e.writeFile("ps50.yml", benchCompose(e.image, psServices, psReplicas))
	project := benchName("benchps")
	up := e.upDetached(composeFile, project, ps50Rows, 10*time.Minute)
	readyLag := e.awaitReady(project, ps50Rows, time.Now())
	{
		cmd := e.sstackCmd("ps", "-n", project, "--format", "json")
		_, out := e.runTimed(cmd, time.Minute)
		if err := benchCheckPsJSON(out, ps50Rows); err != nil {
			b.Fatal(err)
		}
	}

	timeOne := func(cmd *exec.Cmd, check func(string, int) error) float64 {
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		if err != nil {
			b.Fatalf("%v: %v", cmd.Args, err)
		}
		if err := check(out.String(), ps50Rows); err != nil {
			b.Fatal(err)
		}
		return ms(d)
	}
	psCmd := func(args ...string) *exec.Cmd {
		cmd := e.sstackCmd(append([]string{"ps", "-n", project}, args...)...)
		cmd.Dir = "/"
		return cmd
	}
	var floor, table, asJSON []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < psRounds; r++ {
			phases := []func(){
				func() {
					floor = append(floor, timeOne(e.appt("instance", "list", "--json", project+".*"), benchCheckInstanceList))
				},
				func() { table = append(table, timeOne(psCmd(), benchCheckPsTable)) },
				func() { asJSON = append(asJSON, timeOne(psCmd("--format", "json"), benchCheckPsJSON)) },
			}
			k := (i*psRounds + r) % len(phases)
			for j := range phases {
				phases[(k+j)%len(phases)]()
			}
		}
	}
	b.StopTimer()
	down, lingered := e.downDetached(project, ps50Rows)
	b.Logf("up -d of %d replicas %.0f ms, the last printed ready %.0f ms after it returned; down %.0f ms (processes lingered %.0f ms after it returned)", ps50Rows, ms(up), ms(readyLag), ms(down), ms(lingered))
	b.Logf("floor     %s ms", fmtSeries(floor))
	b.Logf("ps        %s ms", fmtSeries(table))
	b.Logf("ps --json %s ms", fmtSeries(asJSON))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(floor), "floor-ms")
	b.ReportMetric(median(table), "ps-ms")
	b.ReportMetric(pairRatio(table, floor), "ps-ratio")
	b.ReportMetric(median(asJSON), "ps-json-ms")
	b.ReportMetric(pairRatio(asJSON, floor), "ps-json-ratio")
	b.ReportMetric(ms(up), "up-d-50-ms")
	b.ReportMetric(ms(readyLag), "ready-lag-50-ms")
	b.ReportMetric(ms(down), "down-50-ms")
}

// BenchmarkUpDetached10 times `sstack up -d` of BenchmarkUp10's stack until
// it returns (every service has started), against, in the same run and in a
// rotating order: the foreground `sstack up` of the same stack measured as
// BenchmarkUp10 does (until every process has printed "ready"; fg-started
// is when its last "Started" status line arrived, which is what -d waits
// for), and the raw floor of BenchmarkUp10. Each is taken down between
// iterations: `sstack down` for -d (timed until it returns, then checked:
// no supervisor, instance or process left, every process ended by its TERM
// handler), SIGINT for the foreground, `instance stop` for the floor.
// Before its down, the detached stack is waited for (untimed) until every
// process has printed "ready": detached-ready-lag is how long after `up -d`
// returned the last one did, by the supervisor's log time stamps.
func BenchmarkUpDetached10(b *testing.B) {
	e := newBenchEnv(b)
	composeFile := e.writeFile("docker-compose.yml", benchCompose(e.image, upServices, 1))
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")

	var floor, fg, det upDownSeries
	var fgStarted, detLag []float64
	var maxLinger time.Duration
	b.ResetTimer()
	alternate(b,
		func() { floor.add(e.floorUp(hosts, upServices)) },
		func() {
			started, up, down := e.sstackUpStarted(composeFile, upServices)
			fgStarted = append(fgStarted, ms(started))
			fg.add(up, down)
		},
		func() {
			project := benchName("benchdet")
			up := e.upDetached(composeFile, project, upServices, 2*time.Minute)
			// Not timed: every process runs (and has set its TERM
			// trap), the stack is supervised.
			detLag = append(detLag, ms(e.awaitReady(project, upServices, time.Now())))
			_, out := e.runTimed(e.sstackCmd("ps", "-n", project, "--format", "json"), time.Minute)
			if err := benchCheckPsJSON(out, upServices); err != nil {
				b.Fatal(err)
			}
			down, lingered := e.downDetached(project, upServices)
			det.add(up, down)
			maxLinger = max(maxLinger, lingered)
		},
	)
	b.StopTimer()
	b.Logf("floor     up %s ms, down %s ms", fmtSeries(floor.up), fmtSeries(floor.down))
	b.Logf("up        up %s ms (last Started %s), down %s ms", fmtSeries(fg.up), fmtSeries(fgStarted), fmtSeries(fg.down))
	b.Logf("up -d     up %s ms (last ready %s ms after it returned), down %s ms (processes lingered up to %.0f ms after down returned)", fmtSeries(det.up), fmtSeries(detLag), fmtSeries(det.down), ms(maxLinger))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(floor.up), "floor-up-ms")
	b.ReportMetric(median(fg.up), "fg-up-ms")
	b.ReportMetric(median(fgStarted), "fg-started-ms")
	b.ReportMetric(median(det.up), "detached-up-ms")
	b.ReportMetric(pairRatio(det.up, floor.up), "detached/floor")
	b.ReportMetric(pairRatio(det.up, fg.up), "detached/fg")
	b.ReportMetric(median(detLag), "detached-ready-lag-ms")
	b.ReportMetric(pairRatio(fg.up, floor.up), "fg/floor")
	b.ReportMetric(median(floor.down), "floor-down-ms")
	b.ReportMetric(median(fg.down), "fg-down-ms")
	b.ReportMetric(median(det.down), "detached-down-ms")
	b.ReportMetric(pairRatio(det.down, floor.down), "detached-down/floor")
}

// Restarts.

const (
	// restartRuns is how many restarts each iteration of
	// BenchmarkRestartLatency times, on each side.
	restartRuns = 20
	// restartCmd is the process of BenchmarkRestartLatency: it counts its
	// runs in /tmp/runs (the instance's tmpfs, which outlives a run, so a
	// recreated instance would start again from 1), prints "run N" and
	// "bye N", and exits with code 1. Only shell builtins: no fork.
	restartCmd = `n=0; [ -f /tmp/runs ] && read n </tmp/runs; n=$((n+1)); echo $n >/tmp/runs; echo run $n; echo bye $n; exit 1`
)

// BenchmarkRestartLatency times how long a crashing service is down: from
// the last line of one run ("bye N", printed right before the process
// exits) to the first line of the next ("run N+1"). sstack runs it with
// deploy.restart_policy {condition: any, delay: 0s}, which restarts at once
// (restart: always would add the engine's backoff of 100ms, 200ms, ...),
// and the times are the ones sstack stamps on the lines as it reads them
// (--timestamps). A restart is: sstack sees the exec client exit, ends
// what the run left in the instance (singularity EndRun: one `instance
// list` and a /proc scan), waits for the run's output to drain, and runs
// `exec instance://` again. The floor, in the same run: the least a
// supervisor must pay, the same process run back to back by a Go loop with
// `exec instance://` in an instance started by hand with sstack's flags,
// the times being when the lines arrive on the pipe. Each iteration times
// restartRuns restarts on each side (one `sstack up`, taken down with
// SIGINT, untimed, and checked: every run numbered in order, in the same
// instance, nothing left); values are medians over all restarts, the
// ratio the median of the per-iteration ratios of medians.
func BenchmarkRestartLatency(b *testing.B) {
	e := newBenchEnv(b)
	composeFile := e.writeFile("docker-compose.yml", fmt.Sprintf(`services:
  loop:
    image: %s
    command: ["sh", "-c", %q]
    deploy:
      restart_policy:
        condition: any
        delay: 0s
`, e.image, strings.ReplaceAll(restartCmd, "$", "$$")))
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")
	// One instance serves every floor run: its start and stop are not timed.
	floorInst := benchName("benchrestartraw") + ".loop.1"
	if err := e.startInstance(floorInst, hosts); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.appt("-s", "instance", "stop", "-s", "KILL", floorInst).Run() })

	var floor, sstack, floorMed, sstackMed, pipeLag []float64
	b.ResetTimer()
	alternate(b,
		func() {
			lat := e.floorRestarts(floorInst)
			floor, floorMed = append(floor, lat...), append(floorMed, median(lat))
		},
		func() {
			lat, lag := e.sstackRestarts(composeFile)
			sstack, sstackMed = append(sstack, lat...), append(sstackMed, median(lat))
			pipeLag = append(pipeLag, lag...)
		},
	)
	b.StopTimer()
	b.Logf("floor  restart ms, per-iteration medians %s, min %.1f, max %.1f", fmtSeries(floorMed), minOf(floor), maxOf(floor))
	b.Logf("sstack restart ms, per-iteration medians %s, min %.1f, max %.1f", fmtSeries(sstackMed), minOf(sstack), maxOf(sstack))
	b.Logf("sstack's stdout reached the benchmark a median %.2f ms after the time stamp on the line", median(pipeLag))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(floor), "floor-restart-ms")
	b.ReportMetric(median(sstack), "sstack-restart-ms")
	b.ReportMetric(pairRatio(sstackMed, floorMed), "restart-ratio")
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}

// floorRestarts runs restartCmd restartRuns+1 times back to back in
// instance and returns, for each run after the first, the ms from the
// previous run's "bye" line to its "run" line, as they arrived on the pipe.
// Each run must print its two lines, numbered one more than the run
// before, and exit with code 1.
func (e *benchEnv) floorRestarts(instance string) []float64 {
	b := e.b
	var lat []float64
	var bye time.Time
	prev := 0
	for k := 0; k <= restartRuns; k++ {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd := e.appt(execArgs(instance, "sh", "-c", restartCmd)...)
		cmd.Stdout, cmd.Stderr = w, os.Stderr
		err = cmd.Start()
		w.Close()
		if err != nil {
			r.Close()
			b.Fatal(err)
		}
		br := bufio.NewReader(r)
		first, err1 := br.ReadString('\n')
		ran := time.Now()
		last, err2 := br.ReadString('\n')
		byeAt := time.Now()
		rest, err3 := io.ReadAll(br)
		r.Close()
		werr := cmd.Wait()
		if err1 != nil || err2 != nil || err3 != nil || len(rest) > 0 {
			b.Fatalf("floor run %d: read %q %q %q (%v, %v, %v)", k, first, last, rest, err1, err2, err3)
		}
		var ee *exec.ExitError
		if !errors.As(werr, &ee) || ee.ExitCode() != 1 {
			b.Fatalf("floor run %d: exec: %v, want exit code 1", k, werr)
		}
		var n, m int
		if _, err := fmt.Sscanf(first, "run %d\n", &n); err != nil || (prev > 0 && n != prev+1) {
			b.Fatalf("floor run %d: first line %q after run %d", k, first, prev)
		}
		if _, err := fmt.Sscanf(last, "bye %d\n", &m); err != nil || m != n {
			b.Fatalf("floor run %d: last line %q after %q", k, last, first)
		}
		if k > 0 {
			lat = append(lat, ms(ran.Sub(bye)))
		}
		bye, prev = byeAt, n
	}
	return lat
}

// benchStamped matches a line of loop-1 in sstack --timestamps output.
var benchStamped = regexp.MustCompile(`^loop-1 \| (\S+) (run|bye) (\d+)$`)

// sstackRestarts runs the stack of BenchmarkRestartLatency with
// --timestamps until its process has run restartRuns+1 times, takes it down
// with SIGINT and returns, for each of the restartRuns restarts, the ms
// from the "bye" line of a run to the "run" line of the next by sstack's
// time stamps. lag is, for each line, how long after its time stamp it
// reached the benchmark's pipe. The runs must be numbered 1, 2, ... (one
// instance), each with its two lines, and each exit reported as a restart.
func (e *benchEnv) sstackRestarts(composeFile string) (lat, lag []float64) {
	b := e.b
	project := benchName("benchrestart")
	run := e.startSstack(composeFile, project, "--timestamps")
	type stamp struct{ run, bye time.Time }
	var (
		mu      sync.Mutex
		stamps  = map[int]*stamp{}
		bad     []string
		enough  = make(chan struct{})
		readErr = make(chan struct{})
	)
	go func() {
		defer close(readErr)
		closed := false
		br := bufio.NewReader(run.stdout)
		for {
			line, err := br.ReadString('\n')
			arrived := time.Now()
			if line != "" {
				mu.Lock()
				m := benchStamped.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
				var at time.Time
				var perr error
				if m != nil {
					at, perr = time.Parse(time.RFC3339Nano, m[1])
				}
				if m == nil || perr != nil {
					bad = append(bad, line)
				} else {
					n, _ := strconv.Atoi(m[3])
					s := stamps[n]
					if s == nil {
						s = &stamp{}
						stamps[n] = s
					}
					if m[2] == "run" {
						s.run = at
					} else {
						s.bye = at
					}
					lag = append(lag, ms(arrived.Sub(at)))
				}
				if s := stamps[restartRuns+1]; s != nil && !s.run.IsZero() && !closed {
					closed = true
					close(enough)
				}
				mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-enough:
	case <-run.done:
		b.Fatalf("sstack exited (code %d) before %d runs; stderr:\n%s", run.code, restartRuns+1, run.stderr)
	case <-time.After(2 * time.Minute):
		b.Fatalf("not %d runs after 2 minutes; stderr:\n%s", restartRuns+1, run.stderr)
	}
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	run.wait(b, time.Minute)
	<-readErr
	stderr := run.stderr.String()
	if run.code != 0 {
		b.Fatalf("sstack exit code %d after SIGINT; stderr:\n%s", run.code, stderr)
	}
	if left := e.instancesLeft(project); len(left) > 0 {
		b.Fatalf("sstack: instances left: %v", left)
	}
	if procs := leftovers(project); len(procs) > 0 {
		b.Fatalf("sstack: processes left: %v", procs)
	}
	if len(bad) > 0 {
		b.Fatalf("unexpected lines on stdout: %q", bad)
	}
	if c := strings.Count(stderr, "loop-1 exited with code 1, restarting now"); c < restartRuns {
		b.Fatalf("%d exits reported as restarts, want %d or more; stderr:\n%s", c, restartRuns, stderr)
	}
	if strings.Contains(stderr, "recreating") {
		b.Fatalf("the instance was recreated; stderr:\n%s", stderr)
	}
	for n := 1; n <= restartRuns; n++ {
		cur, next := stamps[n], stamps[n+1]
		if cur == nil || next == nil || cur.run.IsZero() || cur.bye.IsZero() || next.run.IsZero() {
			b.Fatalf("run %d or %d is missing a line (runs seen: %d)", n, n+1, len(stamps))
		}
		if cur.bye.Before(cur.run) {
			b.Fatalf("run %d: bye stamped before run", n)
		}
		lat = append(lat, ms(next.run.Sub(cur.bye)))
	}
	return lat, lag
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
	alternate(b,
		func() { floor = append(floor, e.floorLogs(floorInst)) },
		func() {
			rate, perLine := e.sstackLogs(composeFile)
			sstack, cpu = append(sstack, rate), append(cpu, perLine)
		},
	)
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

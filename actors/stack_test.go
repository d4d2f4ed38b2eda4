package actors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sstack/actors/policy"
	"sstack/compose"
	"sstack/internal/logformat"
	"sstack/internal/testutil"
	"sstack/singularity"
)

type syncBuffer = testutil.Buffer

func svc(name string, deps ...string) compose.Service {
	s := compose.Service{Name: name, Replicas: 1, Image: "/img.sif", Command: []string{"run"},
		StopSignal: "SIGTERM", StopGracePeriod: 2 * time.Second}
	for _, d := range deps {
		s.DependsOn = append(s.DependsOn, compose.Dependency{Service: d, Condition: compose.ConditionStarted, Required: true})
	}
	return s
}

// serve prints a line and runs until it gets a signal.
func serve(instance string, run int, p *fakeProc) {
	p.Print("hello from " + instance)
	<-p.signals
	p.Exit(0)
}

func startStack(t *testing.T, rt *fakeRuntime, services ...compose.Service) (*System, *syncBuffer, *syncBuffer) {
	t.Helper()
	out, errb := &syncBuffer{}, &syncBuffer{}
	st := Start(StackConfig{
		Plan:    &compose.Plan{Project: "p", Services: services},
		Runtime: rt,
		UpOptions: UpOptions{
			Format: logformat.Format{Prefix: true},
			Stdout: out,
			Stderr: errb,
		},
	})
	return st, out, errb
}

func waitDone(t *testing.T, st *System) int {
	t.Helper()
	select {
	case d := <-st.Done():
		st.Close()
		return d.ExitCode
	case <-time.After(20 * time.Second):
		t.Fatal("stack did not finish")
		return -1
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func index(events []string, e string) int {
	for i, x := range events {
		if x == e {
			return i
		}
	}
	return -1
}

func count(events []string, e string) int {
	n := 0
	for _, x := range events {
		if x == e {
			n++
		}
	}
	return n
}

func TestStartOrderAndReverseTeardown(t *testing.T) {
	rt := newFakeRuntime(serve)
	// web -> api -> db; cache is independent.
	st, out, _ := startStack(t, rt, svc("db"), svc("cache"), svc("api", "db"), svc("web", "api"))
	waitFor(t, func() bool { return count(rt.Events(), "exec p.web.1") == 1 })
	st.TearDown("")
	if code := waitDone(t, st); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	ev := rt.Events()
	before := func(a, b string) {
		t.Helper()
		ia, ib := index(ev, a), index(ev, b)
		if ia < 0 || ib < 0 || ia > ib {
			t.Errorf("want %q before %q in %v", a, b, ev)
		}
	}
	before("exec p.db.1", "start p.api.1")
	before("exec p.api.1", "start p.web.1")
	before("stop p.web.1", "signal p.api.1 terminated")
	before("stop p.api.1", "signal p.db.1 terminated")
	for _, n := range []string{"db", "cache", "api", "web"} {
		if count(ev, "stop p."+n+".1") != 1 {
			t.Errorf("instance p.%s.1 stopped %d times, want 1: %v", n, count(ev, "stop p."+n+".1"), ev)
		}
		if !strings.Contains(out.String(), n+"-1") || !strings.Contains(out.String(), "| hello from p."+n+".1\n") {
			t.Errorf("missing log line of %s in %q", n, out.String())
		}
	}
	if !strings.Contains(out.String(), "db-1    | hello") {
		t.Errorf("prefix not padded to the longest name: %q", out.String())
	}
}

func TestGraceExpiryKills(t *testing.T) {
	stubborn := func(instance string, run int, p *fakeProc) {
		<-p.signals // ignores the stop signal
		<-p.exit
	}
	rt := newFakeRuntime(stubborn)
	s := svc("app")
	s.StopGracePeriod = 100 * time.Millisecond
	s.StopSignal = "SIGUSR1"
	st, _, errb := startStack(t, rt, s)
	waitFor(t, func() bool { return count(rt.Events(), "exec p.app.1") == 1 })
	st.TearDown("")
	waitDone(t, st)
	ev := rt.Events()
	if index(ev, "signal p.app.1 user defined signal 1") < 0 || index(ev, "kill p.app.1") < 0 {
		t.Fatalf("want stop_signal then kill, got %v", ev)
	}
	if !strings.Contains(errb.String(), "did not stop within 100ms") {
		t.Errorf("status lines: %q", errb.String())
	}
}

func TestCrashLoopOnFailureGivesUp(t *testing.T) {
	crash := func(instance string, run int, p *fakeProc) { p.Exit(3) }
	rt := newFakeRuntime(crash)
	s := svc("job")
	s.Restart = compose.RestartPolicy{Source: "deploy", Condition: "on-failure", MaxAttempts: 3}
	st, _, errb := startStack(t, rt, s)
	code := waitDone(t, st)
	if code != 0 {
		t.Errorf("exit code %d, want 0 (docker compose up ends with 0 when all exited)", code)
	}
	if n := count(rt.Events(), "exec p.job.1"); n != 4 {
		t.Errorf("ran %d times, want 4: %v", n, rt.Events())
	}
	if !strings.Contains(errb.String(), "job-1 exited with code 3, giving up after 3 attempts") {
		t.Errorf("status lines: %q", errb.String())
	}
}

func TestFailedDependencyStopsStack(t *testing.T) {
	rt := newFakeRuntime(serve)
	rt.failStart["p.db.1"] = errors.New("FATAL: image not found")
	st, _, errb := startStack(t, rt, svc("db"), svc("web", "db"), svc("other"))
	code := waitDone(t, st)
	if code == 0 {
		t.Errorf("exit code 0 after a failed start")
	}
	ev := rt.Events()
	if index(ev, "start p.web.1") >= 0 {
		t.Errorf("dependent started although its dependency failed: %v", ev)
	}
	if !strings.Contains(errb.String(), "FATAL: image not found") {
		t.Errorf("the runtime's reason is not shown: %q", errb.String())
	}
	if index(ev, "start p.other.1") >= 0 && index(ev, "stop p.other.1") < 0 {
		t.Errorf("independent service left running: %v", ev)
	}
}

func TestCompletedSuccessfullyCondition(t *testing.T) {
	behave := func(instance string, run int, p *fakeProc) {
		if instance == "p.migrate.1" {
			time.Sleep(50 * time.Millisecond)
			p.Exit(0)
			return
		}
		serve(instance, run, p)
	}
	rt := newFakeRuntime(behave)
	app := svc("app")
	app.DependsOn = []compose.Dependency{{Service: "migrate", Condition: compose.ConditionCompletedSuccessfully, Required: true}}
	st, _, _ := startStack(t, rt, svc("migrate"), app)
	waitFor(t, func() bool { return count(rt.Events(), "exec p.app.1") == 1 })
	st.TearDown("")
	waitDone(t, st)
	ev := rt.Events()
	if index(ev, "start p.app.1") < index(ev, "exec p.migrate.1") {
		t.Errorf("app started before migrate completed: %v", ev)
	}
}

func TestLastLineWithoutNewlineAndStderr(t *testing.T) {
	behave := func(instance string, run int, p *fakeProc) {
		_, _ = p.stderr.WriteString("oops\n")
		_, _ = p.stdout.WriteString("partial")
		p.Exit(0)
	}
	rt := newFakeRuntime(behave)
	st, out, _ := startStack(t, rt, svc("one"))
	waitDone(t, st)
	if !strings.Contains(out.String(), "one-1  | partial\n") && !strings.Contains(out.String(), "one-1 | partial\n") {
		t.Errorf("last line without newline lost: %q", out.String())
	}
	if !strings.Contains(out.String(), "| oops\n") {
		t.Errorf("stderr line lost: %q", out.String())
	}
}

// probeRuntime is the fake runtime with a scripted healthcheck: probe
// answers the n-th probe (from 1) of an instance with an exit code.
type probeRuntime struct {
	*fakeRuntime
	mu     sync.Mutex
	probes map[string]int
	probe  func(instance string, n int) int
}

// newProbeRuntime is a fakeRuntime whose processes serve and whose n-th
// probe of an instance exits with probe(instance, n).
func newProbeRuntime(probe func(instance string, n int) int) *probeRuntime {
	return &probeRuntime{fakeRuntime: newFakeRuntime(serve), probes: map[string]int{}, probe: probe}
}

// failFirst is a probe that fails (exit 1) the first k times, then passes.
func failFirst(k int) func(string, int) int {
	return func(_ string, n int) int {
		if n <= k {
			return 1
		}
		return 0
	}
}

func (r *probeRuntime) Exec(ctx context.Context, spec singularity.ProcessSpec) (int, []byte, error) {
	instance := spec.Instance
	r.mu.Lock()
	r.probes[instance]++
	n := r.probes[instance]
	r.mu.Unlock()
	r.record("probe %s", instance)
	code := r.probe(instance, n)
	return code, []byte(fmt.Sprintf("probe %d exit %d\n", n, code)), nil
}

func startWith(t *testing.T, cfg StackConfig, services ...compose.Service) (*System, *syncBuffer, *syncBuffer) {
	t.Helper()
	out, errb := &syncBuffer{}, &syncBuffer{}
	cfg.Plan = &compose.Plan{Project: "p", Services: services}
	cfg.Format = logformat.Format{Prefix: true}
	cfg.Stdout, cfg.Stderr = out, errb
	return Start(cfg), out, errb
}

// exitAfter returns a behaviour that exits with code after d.
func exitAfter(d time.Duration, code int) func(string, int, *fakeProc) {
	return func(instance string, run int, p *fakeProc) {
		p.Print("run " + strconv.Itoa(run))
		time.Sleep(d)
		p.Exit(code)
	}
}

// byInstance picks a behaviour per instance; others serve.
func byInstance(m map[string]func(string, int, *fakeProc)) func(string, int, *fakeProc) {
	return func(instance string, run int, p *fakeProc) {
		if b, ok := m[instance]; ok {
			b(instance, run, p)
			return
		}
		serve(instance, run, p)
	}
}

func dep(name, condition string, required bool) compose.Dependency {
	return compose.Dependency{Service: name, Condition: condition, Required: required}
}

// everyStartedStopped: no instance is left behind.
func everyStartedStopped(t *testing.T, ev []string) {
	t.Helper()
	for _, e := range ev {
		if name, ok := strings.CutPrefix(e, "start "); ok && count(ev, "stop "+name) < count(ev, e) {
			t.Errorf("instance %s started but not stopped: %v", name, ev)
		}
	}
}

func TestServiceActorPanicTakesStackDown(t *testing.T) {
	crashService = "boom"
	t.Cleanup(func() { crashService = "" })
	rt := newFakeRuntime(byInstance(map[string]func(string, int, *fakeProc){
		"p.boom.1": func(instance string, run int, p *fakeProc) {
			// Nobody is left to signal it; the real instance stop kills it.
			select {
			case <-p.signals:
			case <-time.After(time.Second):
			}
			p.Exit(137)
		},
	}))
	st, _, errb := startStack(t, rt, svc("db"), svc("boom", "db"), svc("web", "boom"))
	if code := waitDone(t, st); code != 1 {
		t.Errorf("exit code %d after a crash, want 1", code)
	}
	ev := rt.Events()
	if count(ev, "stop p.boom.1") != 1 || count(ev, "stop p.db.1") != 1 {
		t.Errorf("instances of the crashed actor and of its dependency not stopped once: %v", ev)
	}
	everyStartedStopped(t, ev)
	for _, want := range []string{
		"sstack: internal error in boom-1, handling *actors.processStarted: panic: injected crash of boom-1",
		"goroutine ", "sstack/actors.injectCrash", // the stack trace of the panic
		"boom-1: stopping instance p.boom.1 and the stack",
		"Instance p.boom.1  Stopped",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
}

func TestAbortOnContainerExit(t *testing.T) {
	tests := []struct {
		name    string
		cfg     StackConfig
		job     compose.Service
		jobExit int
		want    int
		jobRuns int
	}{
		{"abort on exit returns the code of the exit", StackConfig{UpOptions: UpOptions{Exit: policy.Exit{AbortOnExit: true}}}, svc("job"), 3, 3, 1},
		{"abort on exit with exit 0", StackConfig{UpOptions: UpOptions{Exit: policy.Exit{AbortOnExit: true}}}, svc("job"), 0, 0, 1},
		{"abort on exit even when the policy restarts", StackConfig{UpOptions: UpOptions{Exit: policy.Exit{AbortOnExit: true}}}, withRestart(svc("job"), "restart", "always"), 3, 3, 1},
		{"abort on failure", StackConfig{UpOptions: UpOptions{Exit: policy.Exit{AbortOnFailure: true}}}, svc("job"), 4, 4, 1},
		{"exit-code-from the service that exited", StackConfig{UpOptions: UpOptions{Exit: policy.Exit{AbortOnExit: true, ExitCodeFrom: "job"}}}, svc("job"), 5, 5, 1},
		// docker compose returns the code of the stopped service (137 in
		// its e2e test "Exit code from", 143 when SIGTERM ends it).
		{"exit-code-from a service the abort stopped", StackConfig{UpOptions: UpOptions{Exit: policy.Exit{AbortOnExit: true, ExitCodeFrom: "app"}}}, svc("job"), 5, 143, 1},
		{"exit-code-from implies abort on exit", StackConfig{UpOptions: UpOptions{Exit: policy.Exit{ExitCodeFrom: "app"}}}, svc("job"), 0, 143, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := newFakeRuntime(byInstance(map[string]func(string, int, *fakeProc){
				"p.job.1": exitAfter(50*time.Millisecond, tc.jobExit),
				"p.app.1": func(instance string, run int, p *fakeProc) { <-p.signals; p.Exit(143) },
			}))
			tc.cfg.Runtime = rt
			st, _, errb := startWith(t, tc.cfg, tc.job, svc("app"))
			if code := waitDone(t, st); code != tc.want {
				t.Errorf("exit code %d, want %d", code, tc.want)
			}
			if !strings.Contains(errb.String(), "Aborting on container exit...") {
				t.Errorf("no abort line:\n%s", errb.String())
			}
			ev := rt.Events()
			if n := count(ev, "exec p.job.1"); n != tc.jobRuns {
				t.Errorf("job ran %d times, want %d: %v", n, tc.jobRuns, ev)
			}
			everyStartedStopped(t, ev)
		})
	}
}

func withRestart(s compose.Service, source, condition string) compose.Service {
	s.Restart = compose.RestartPolicy{Source: source, Condition: condition}
	return s
}

// --abort-on-container-failure ignores exits with 0, and with
// --exit-code-from too a stack that ends by itself returns that service's
// code.
func TestAbortOnFailureIgnoresSuccess(t *testing.T) {
	rt := newFakeRuntime(byInstance(map[string]func(string, int, *fakeProc){
		"p.ok.1":  exitAfter(10*time.Millisecond, 0),
		"p.bad.1": exitAfter(300*time.Millisecond, 6),
	}))
	st, _, errb := startWith(t, StackConfig{Runtime: rt, UpOptions: UpOptions{Exit: policy.Exit{AbortOnFailure: true}}}, svc("ok"), svc("bad"), svc("app"))
	if code := waitDone(t, st); code != 6 {
		t.Errorf("exit code %d, want 6", code)
	}
	errs := errb.String()
	if i, j := strings.Index(errs, "bad-1 exited with code 6"), strings.Index(errs, "Aborting on container exit..."); i < 0 || j < i {
		t.Errorf("abort not after the failure:\n%s", errs)
	}
	if strings.Count(errs, "Aborting") != 1 {
		t.Errorf("aborted more than once, or on ok's exit 0:\n%s", errs)
	}
}

func TestAllExitedEndsWithExitCodeFrom(t *testing.T) {
	rt := newFakeRuntime(byInstance(map[string]func(string, int, *fakeProc){
		"p.a.1": exitAfter(10*time.Millisecond, 0),
		"p.b.1": exitAfter(100*time.Millisecond, 0),
	}))
	st, _, _ := startWith(t, StackConfig{Runtime: rt, UpOptions: UpOptions{Exit: policy.Exit{AbortOnFailure: true, ExitCodeFrom: "a"}}}, svc("a"), svc("b"))
	if code := waitDone(t, st); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestDependencyFailureNamesTheChain(t *testing.T) {
	rt := newFakeRuntime(byInstance(map[string]func(string, int, *fakeProc){
		"p.db.1": exitAfter(10*time.Millisecond, 1),
	}))
	api := svc("api")
	api.DependsOn = []compose.Dependency{dep("db", compose.ConditionCompletedSuccessfully, true)}
	st, _, errb := startStack(t, rt, svc("db"), api, svc("web", "api"), svc("other"))
	if code := waitDone(t, st); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	want := `web-1 cannot start: dependency "api" failed: dependency "db" did not complete successfully: exit 1`
	if !strings.Contains(errb.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errb.String())
	}
	ev := rt.Events()
	if index(ev, "start p.api.1") >= 0 || index(ev, "start p.web.1") >= 0 {
		t.Errorf("a dependent was started: %v", ev)
	}
	everyStartedStopped(t, ev)
}

func TestOptionalDependencyFailureWarns(t *testing.T) {
	rt := newFakeRuntime(byInstance(map[string]func(string, int, *fakeProc){
		"p.migrate.1": exitAfter(10*time.Millisecond, 2),
	}))
	app := svc("app")
	app.DependsOn = []compose.Dependency{dep("migrate", compose.ConditionCompletedSuccessfully, false)}
	st, _, errb := startStack(t, rt, svc("migrate"), app)
	waitFor(t, func() bool { return count(rt.Events(), "exec p.app.1") == 1 })
	st.TearDown("")
	if code := waitDone(t, st); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	want := `app-1: optional dependency "migrate" did not complete successfully: exit 2; starting without it (required: false)`
	if strings.Count(errb.String(), want) != 1 {
		t.Errorf("want the warning %q once:\n%s", want, errb.String())
	}
}

func TestHealthyCondition(t *testing.T) {
	rt := newProbeRuntime(failFirst(2))
	db := svc("db")
	db.Healthcheck = &compose.Healthcheck{Test: []string{"check"}, Interval: 20 * time.Millisecond, Timeout: time.Second, Retries: 3}
	app := svc("app")
	app.DependsOn = []compose.Dependency{dep("db", compose.ConditionHealthy, true)}
	st, _, errb := startWith(t, StackConfig{Runtime: rt}, db, app)
	waitFor(t, func() bool { return count(rt.Events(), "exec p.app.1") == 1 })
	st.TearDown("")
	waitDone(t, st)
	ev := rt.Events()
	probes := 0
	for i, e := range ev {
		if e == "probe p.db.1" {
			probes++
			if probes == 3 && index(ev, "start p.app.1") < i {
				t.Errorf("app created before db's third (first passing) probe: %v", ev)
			}
		}
	}
	errs := errb.String()
	if i, j := strings.Index(errs, "db-1 is healthy"), strings.Index(errs, "Instance p.app.1  Creating"); i < 0 || j < i {
		t.Errorf("app not created after db became healthy:\n%s", errs)
	}
	if strings.Contains(errs, "unhealthy") {
		t.Errorf("two failures with retries 3 made it unhealthy:\n%s", errs)
	}
}

func TestUnhealthyDependencyFails(t *testing.T) {
	rt := newProbeRuntime(func(string, int) int { return 1 })
	db := svc("db")
	db.Healthcheck = &compose.Healthcheck{Test: []string{"check"}, Interval: 10 * time.Millisecond, Timeout: time.Second, Retries: 2}
	app := svc("app")
	app.DependsOn = []compose.Dependency{dep("db", compose.ConditionHealthy, true)}
	st, _, errb := startWith(t, StackConfig{Runtime: rt}, db, app)
	if code := waitDone(t, st); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{"db-1 is unhealthy: probe 2 exit 1", `app-1 cannot start: dependency "db" is unhealthy`} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	if n := count(rt.Events(), "probe p.db.1"); n != 2 {
		t.Errorf("%d probes, want 2 (retries)", n)
	}
	everyStartedStopped(t, rt.Events())
}

// A healthcheck that fails inside start_period does not count.
func TestHealthStartPeriod(t *testing.T) {
	rt := newProbeRuntime(failFirst(4))
	db := svc("db")
	db.Healthcheck = &compose.Healthcheck{Test: []string{"check"}, Interval: time.Hour, Timeout: time.Second, Retries: 1,
		StartPeriod: 400 * time.Millisecond, StartInterval: 20 * time.Millisecond}
	st, _, errb := startWith(t, StackConfig{Runtime: rt}, db)
	waitFor(t, func() bool { return strings.Contains(errb.String(), "db-1 is healthy") })
	st.TearDown("")
	waitDone(t, st)
	if strings.Contains(errb.String(), "unhealthy") {
		t.Errorf("a failure inside start_period counted:\n%s", errb.String())
	}
}

func TestRestartReusesOrRecreatesInstance(t *testing.T) {
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprintf("instance gone %v", gone), func(t *testing.T) {
			var rt *fakeRuntime
			rt = newFakeRuntime(func(instance string, run int, p *fakeProc) {
				if run > 1 {
					serve(instance, run, p)
					return
				}
				if gone { // `apptainer instance stop` from outside
					rt.mu.Lock()
					delete(rt.instances, instance)
					rt.mu.Unlock()
				}
				p.Exit(137)
			})
			st, _, errb := startStack(t, rt, withRestart(svc("x"), "restart", "always"))
			waitFor(t, func() bool { return count(rt.Events(), "exec p.x.1") == 2 })
			st.TearDown("")
			waitDone(t, st)
			ev := rt.Events()
			wantStarts, wantLine := 1, "x-1: restarting the process in instance p.x.1"
			if gone {
				wantStarts, wantLine = 2, "x-1: instance p.x.1 is gone, recreating it"
			}
			if n := count(ev, "start p.x.1"); n != wantStarts {
				t.Errorf("instance started %d times, want %d: %v", n, wantStarts, ev)
			}
			if !strings.Contains(errb.String(), "x-1 exited with code 137, restarting in 100ms (attempt 1)") || !strings.Contains(errb.String(), wantLine) {
				t.Errorf("status lines:\n%s", errb.String())
			}
		})
	}
}

// A stop during a crash loop is never followed by a restart.
func TestTeardownCancelsRestart(t *testing.T) {
	rt := newFakeRuntime(exitAfter(0, 1))
	s := svc("loop")
	s.Restart = compose.RestartPolicy{Source: "deploy", Condition: "any", Delay: 200 * time.Millisecond}
	st, _, _ := startStack(t, rt, s)
	waitFor(t, func() bool { return count(rt.Events(), "exec p.loop.1") == 2 })
	st.TearDown("")
	if code := waitDone(t, st); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	time.Sleep(300 * time.Millisecond)
	if n := count(rt.Events(), "exec p.loop.1"); n != 2 {
		t.Errorf("restarted after the stop: %v", rt.Events())
	}
}

func TestDependsOnRestartFollowsDependency(t *testing.T) {
	rt := newFakeRuntime(byInstance(map[string]func(string, int, *fakeProc){
		"p.db.1": func(instance string, run int, p *fakeProc) {
			if run == 1 {
				exitAfter(100*time.Millisecond, 1)(instance, run, p)
				return
			}
			serve(instance, run, p)
		},
	}))
	app := svc("app")
	app.DependsOn = []compose.Dependency{{Service: "db", Condition: compose.ConditionStarted, Required: true, Restart: true}}
	st, _, errb := startStack(t, rt, withRestart(svc("db"), "restart", "on-failure"), app, svc("other", "db"))
	waitFor(t, func() bool { return count(rt.Events(), "exec p.app.1") == 2 })
	st.TearDown("")
	if code := waitDone(t, st); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	ev := rt.Events()
	if count(ev, "exec p.other.1") != 1 {
		t.Errorf("a dependent without depends_on.restart was restarted: %v", ev)
	}
	if !strings.Contains(errb.String(), "app-1 restarting because its dependency db restarted") {
		t.Errorf("status lines:\n%s", errb.String())
	}
}

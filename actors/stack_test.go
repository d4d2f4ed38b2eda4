package actors

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"sstack/compose"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

func startStack(t *testing.T, rt *fakeRuntime, services ...compose.Service) (*Stack, *syncBuffer, *syncBuffer) {
	t.Helper()
	out, errb := &syncBuffer{}, &syncBuffer{}
	st := Start(StackConfig{
		Plan:    &compose.Plan{Project: "p", Services: services},
		Runtime: rt,
		Format:  LogFormat{Prefix: true},
		Stdout:  out,
		Stderr:  errb,
	})
	return st, out, errb
}

func waitDone(t *testing.T, st *Stack) int {
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
	st.Stop("")
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
	st.Stop("")
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
	st.Stop("")
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

package main

// Restart policies, as docker compose's engine applies them: on-failure
// with max_attempts gives up after so many restarts, condition none never
// restarts, always backs off from 100ms, doubling. A restart runs the
// process again in the same instance, and creates the instance again when
// it was stopped from outside. A panic in sstack's own actor of a service
// takes the stack down. Most tests run in parallel: each has its own
// project, and most of their time is spent waiting for instances to stop.

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A crash loop under restart_policy: on-failure with max_attempts 3 runs
// 1 + 3 times, then gives up; condition none runs once, whatever its exit
// code. Every service has then exited for good and up ends with 0.
func TestRestartPolicyEndsCrashLoop(t *testing.T) {
	for _, tc := range []struct {
		service, policy string
		runs            int
		// want is what stderr holds, notWant what it does not.
		want    func(p *project) []string
		notWant string
	}{
		{"crash", "{condition: on-failure, max_attempts: 3}", 4, func(p *project) []string {
			return []string{
				"crash-1 exited with code 3, restarting now (attempt 1 of 3)",
				"crash-1 exited with code 3, restarting now (attempt 3 of 3)",
				"crash-1 exited with code 3, giving up after 3 attempts",
				"crash-1: restarting the process in instance " + p.name + ".crash.1",
			}
		}, ""},
		{"once", "{condition: none}", 1, func(*project) []string { return []string{"once-1 exited with code 3\n"} }, "restarting"},
	} {
		t.Run(tc.service, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, oneService(tc.service, `["sh", "-c", "echo run; exit 3"]`, "deploy: {restart_policy: "+tc.policy+"}"))
			code, out, errs := p.run()
			if code != 0 {
				t.Errorf("exit code %d, want 0 (every service exited and none restarts)", code)
			}
			if n := countLines(out, tc.service+"-1", "run"); n != tc.runs {
				t.Errorf("ran %d times, want %d:\n%s", n, tc.runs, out)
			}
			contains(t, "stderr", errs, tc.want(p)...)
			if tc.notWant != "" && strings.Contains(errs, tc.notWant) {
				t.Errorf("stderr has %q:\n%s", tc.notWant, errs)
			}
			p.assertNothingLeft()
		})
	}
}

// restart: always follows the engine's backoff: 100ms, doubling. Not
// parallel: it measures time.
func TestRestartAlwaysBacksOff(t *testing.T) {
	p := newProject(t, oneService("always", `["sh", "-c", "echo run"]`, "restart: always"))
	r := p.up("--timestamps")
	const runs = 6
	r.waitUntil(t, 60*time.Second, fmt.Sprintf("%d runs", runs), func() bool {
		return strings.Count(r.stdout.String(), " run\n") >= runs
	})
	r.ctrlC(t)
	var at []time.Time
	for _, l := range lines(r.stdout.String(), "always-1") {
		ts, text, _ := strings.Cut(l, " ")
		if text != "run" {
			continue
		}
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		at = append(at, tm)
	}
	var gaps []time.Duration
	for i := 1; i < runs; i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	t.Logf("gaps between runs: %v", gaps)
	// Each gap is at least its backoff, which doubles (a loaded machine
	// only makes gaps longer, so no upper bound is asserted); the
	// decisions themselves are in the status lines below.
	for i, g := range gaps {
		if min := 100 * time.Millisecond << i; g < min {
			t.Errorf("gap %d is %v, shorter than the backoff %v", i+1, g, min)
		}
	}
	if !strings.Contains(r.stderr.String(), "always-1 exited with code 0, restarting in 100ms (attempt 1)") ||
		!strings.Contains(r.stderr.String(), "always-1 exited with code 0, restarting in 200ms (attempt 2)") {
		t.Errorf("status lines:\n%s", r.stderr)
	}
	p.assertNothingLeft()
}

// A restart runs the process again in the same instance; when the
// instance was stopped from outside, it is created again first.
func TestRestartReusesOrRecreatesInstance(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("app", `["sh", "-c", "if [ -f /tmp/marker ]; then echo same instance; exec sleep 1000; fi; touch /tmp/marker; echo fresh instance; exit 1"]`, "restart: always"))
	inst := p.name + ".app.1"
	r := p.up()
	r.waitStdout(t, "app-1 | same instance")
	r.waitStderr(t, "app-1: restarting the process in instance "+inst)
	if out, err := exec.Command("apptainer", "-s", "instance", "stop", inst).CombinedOutput(); err != nil {
		t.Fatalf("instance stop: %v: %s", err, out)
	}
	r.waitStderr(t, "app-1: instance "+inst+" is gone, recreating it")
	// The recreated instance has a fresh /tmp: its first run says so,
	// the restart after it runs in that same instance again. (A restart
	// may also exec into the old instance while it is still going away;
	// such a run says "same instance" and is killed.)
	r.waitUntil(t, 60*time.Second, "a second run in the recreated instance", func() bool {
		runs := lines(r.stdout.String(), "app-1")
		return countLines(r.stdout.String(), "app-1", "fresh instance") == 2 && runs[len(runs)-1] == "same instance"
	})
	if runs := lines(r.stdout.String(), "app-1"); runs[0] != "fresh instance" || runs[1] != "same instance" {
		t.Errorf("runs: %q", runs)
	}
	p.ctrlCLeavesNothing(r)
}

var crashBin struct {
	once sync.Once
	path string
	err  error
}

// crashBinary is sstack built with the test hook that makes the actor of
// service "boom" panic once its process has started.
func crashBinary(t *testing.T) string {
	t.Helper()
	integration(t)
	crashBin.once.Do(func() {
		crashBin.path = filepath.Join(filepath.Dir(sstackBin), "sstack-crash")
		out, err := exec.Command("go", "build", "-race", "-ldflags", "-X sstack/actors.crashService=boom", "-o", crashBin.path, ".").CombinedOutput()
		if err != nil {
			crashBin.err = fmt.Errorf("%v: %s", err, out)
		}
	})
	if crashBin.err != nil {
		t.Fatalf("building sstack with the crash hook: %v", crashBin.err)
	}
	return crashBin.path
}

// A panic in a service actor: printed with its stack trace, the actor's
// instance and the rest of the stack taken down, exit code 1.
func TestPanicInServiceActorStopsStack(t *testing.T) {
	t.Parallel()
	bin := crashBinary(t)
	p := newProject(t, services(
		service("db", `["sleep", "1000"]`),
		service("boom", `["sh", "-c", "echo boom running; exec sleep 1000"]`, `depends_on: ["db"]`),
	))
	r := p.launch(bin, nil)
	if code := r.wait(t, 2*time.Minute); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	errs := r.stderr.String()
	contains(t, "stderr", errs,
		"sstack: internal error in boom-1, handling *actors.processStarted: panic: injected crash of boom-1",
		"goroutine ", "sstack/actors.injectCrash(",
		"boom-1: stopping instance "+p.name+".boom.1 and the stack",
		"Instance "+p.name+".boom.1  Stopped",
		"Instance "+p.name+".db.1  Stopped",
	)
	p.assertNothingLeft()
}

package main

// Integration tests of supervision (issue 3): restart policies,
// healthchecks, depends_on conditions, the exit behaviour of up, and
// crashes of sstack's own actors, against real Apptainer instances. Most
// run in parallel: each has its own project, and most of their time is
// spent waiting for instances to stop.

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"sstack/internal/testimg"
)

// lines returns the stdout lines of a replica, without their prefix.
func lines(stdout, replica string) []string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(replica) + ` *\| (.*)$`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(stdout, -1) {
		out = append(out, m[1])
	}
	return out
}

func countLines(stdout, replica, text string) int {
	n := 0
	for _, l := range lines(stdout, replica) {
		if l == text {
			n++
		}
	}
	return n
}

// before asserts that a occurs in s, and before b.
func before(t *testing.T, s, a, b string) {
	t.Helper()
	i, j := strings.Index(s, a), strings.Index(s, b)
	if i < 0 || j < 0 || i > j {
		t.Errorf("want %q before %q in:\n%s", a, b, s)
	}
}

// A crash loop with on-failure and max_attempts 3 runs 1 + 3 times, then
// gives up; every service has then exited for good and up ends with 0.
func TestCrashLoopGivesUp(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  crash:
    image: `+img+`
    command: ["sh", "-c", "echo run; exit 3"]
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 3
`)
	code, out, errs := p.run()
	if code != 0 {
		t.Errorf("exit code %d, want 0 (every service exited and none restarts)", code)
	}
	if n := countLines(out, "crash-1", "run"); n != 4 {
		t.Errorf("ran %d times, want 4:\n%s", n, out)
	}
	for _, want := range []string{
		"crash-1 exited with code 3, restarting now (attempt 1 of 3)",
		"crash-1 exited with code 3, restarting now (attempt 3 of 3)",
		"crash-1 exited with code 3, giving up after 3 attempts",
		"crash-1: restarting the process in instance " + p.name + ".crash.1",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	assertNothingLeft(t, p.name)
}

func TestRestartConditionNone(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  once:
    image: `+img+`
    command: ["sh", "-c", "echo run; exit 3"]
    deploy:
      restart_policy:
        condition: none
`)
	code, out, errs := p.run()
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if n := countLines(out, "once-1", "run"); n != 1 {
		t.Errorf("ran %d times, want 1:\n%s", n, out)
	}
	if !strings.Contains(errs, "once-1 exited with code 3\n") || strings.Contains(errs, "restarting") {
		t.Errorf("want one exit line and no restart:\n%s", errs)
	}
	assertNothingLeft(t, p.name)
}

// restart: always follows the engine's backoff: 100ms, doubling. Not
// parallel: it measures time.
func TestRestartAlwaysBacksOff(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  always:
    image: `+img+`
    command: ["sh", "-c", "echo run"]
    restart: always
`)
	r := p.up("--timestamps")
	const runs = 6
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(r.stdout.String(), " run\n") < runs {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d runs:\n%s", runs, r.stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
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
	for i, g := range gaps {
		if min := 100 * time.Millisecond << i; g < min {
			t.Errorf("gap %d is %v, shorter than the backoff %v", i+1, g, min)
		}
		// Each delay doubles: 100ms more at the least; allow some jitter.
		if i > 0 && g < gaps[i-1]+50*time.Millisecond {
			t.Errorf("gap %d (%v) does not grow from gap %d (%v)", i+1, g, i, gaps[i-1])
		}
	}
	if gaps[len(gaps)-1] < gaps[0]+time.Second {
		t.Errorf("delays do not grow: %v", gaps)
	}
	if !strings.Contains(r.stderr.String(), "always-1 exited with code 0, restarting in 100ms (attempt 1)") ||
		!strings.Contains(r.stderr.String(), "always-1 exited with code 0, restarting in 200ms (attempt 2)") {
		t.Errorf("status lines:\n%s", r.stderr)
	}
	assertNothingLeft(t, p.name)
}

// web starts only once db's healthcheck (CMD-SHELL, run inside db's
// instance with db's environment) passes; start_interval paces the probes
// inside start_period, long before the 30s interval.
func TestServiceHealthyCondition(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  db:
    image: `+img+`
    environment:
      READY_FILE: /tmp/ready
    command: ["sh", "-c", "sleep 1.5; touch /tmp/ready; echo db ready; exec sleep 1000"]
    healthcheck:
      test: ["CMD-SHELL", "test -f \"$$READY_FILE\""]
      interval: 30s
      timeout: 5s
      retries: 3
      start_period: 20s
      start_interval: 200ms
  web:
    image: `+img+`
    depends_on:
      db:
        condition: service_healthy
    command: ["sh", "-c", "echo web up; exec sleep 1000"]
`)
	start := time.Now()
	r := p.up()
	r.waitStdout(t, "web-1 | web up")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("web took %v to start: start_interval not used", d)
	}
	errs := r.stderr.String()
	before(t, errs, "db-1 is healthy", "Instance "+p.name+".web.1  Creating")
	if strings.Contains(errs, "unhealthy") {
		t.Errorf("failures inside start_period counted:\n%s", errs)
	}
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
	assertNothingLeft(t, p.name)
}

// A dependency that turns unhealthy can never satisfy service_healthy.
func TestUnhealthyDependencyStopsStack(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  db:
    image: `+img+`
    command: ["sleep", "1000"]
    healthcheck:
      test: ["CMD", "sh", "-c", "echo not ready; exit 1"]
      interval: 100ms
      retries: 2
  web:
    image: `+img+`
    depends_on:
      db:
        condition: service_healthy
    command: ["sleep", "1000"]
`)
	code, _, errs := p.run()
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{"db-1 is unhealthy: not ready", `web-1 cannot start: dependency "db" is unhealthy`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, p.name+".web.1  Creating") {
		t.Errorf("web was created:\n%s", errs)
	}
	assertNothingLeft(t, p.name)
}

// A migration must complete successfully before the app starts.
func TestCompletedSuccessfullyCondition(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  migrate:
    image: `+img+`
    command: ["sh", "-c", "echo migrating; sleep 0.5; echo schema-v2 > /data/state"]
    volumes: ["./data:/data"]
  app:
    image: `+img+`
    depends_on:
      migrate:
        condition: service_completed_successfully
    command: ["sh", "-c", "echo \"app sees $$(cat /data/state)\"; exec sleep 1000"]
    volumes: ["./data:/data"]
`)
	r := p.up()
	r.waitStdout(t, "app-1     | app sees schema-v2")
	before(t, r.stderr.String(), "migrate-1 exited with code 0", "Instance "+p.name+".app.1  Creating")
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
	assertNothingLeft(t, p.name)
}

// A migration that fails: its dependents never start, the message names
// the chain, up takes down what runs and exits 1.
func TestFailedDependencyChain(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  db:
    image: `+img+`
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
  migrate:
    image: `+img+`
    depends_on: [db]
    command: ["sh", "-c", "echo migration failed; exit 1"]
  api:
    image: `+img+`
    depends_on:
      migrate:
        condition: service_completed_successfully
    command: ["sleep", "1000"]
  web:
    image: `+img+`
    depends_on: [api]
    command: ["sleep", "1000"]
`)
	code, out, errs := p.run()
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(out, "migrate-1 | migration failed") {
		t.Errorf("migration output lost:\n%s", out)
	}
	for _, want := range []string{
		`api-1 cannot start: dependency "migrate" did not complete successfully: exit 1`,
		`web-1 cannot start: dependency "api" failed: dependency "migrate" did not complete successfully: exit 1`,
		"Instance " + p.name + ".db.1  Stopped",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	for _, s := range []string{"api", "web"} {
		if strings.Contains(errs, p.name+"."+s+".1  Creating") {
			t.Errorf("%s was created:\n%s", s, errs)
		}
	}
	assertNothingLeft(t, p.name)
}

// required: false: a failed optional dependency only warns.
func TestOptionalDependencyWarns(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  cache:
    image: `+img+`
    command: ["sh", "-c", "exit 2"]
  web:
    image: `+img+`
    depends_on:
      cache:
        condition: service_completed_successfully
        required: false
    command: ["sh", "-c", "echo web up; exec sleep 1000"]
`)
	r := p.up()
	r.waitStdout(t, "web-1   | web up")
	want := `web-1: optional dependency "cache" did not complete successfully: exit 2; starting without it (required: false)`
	if !strings.Contains(r.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
	assertNothingLeft(t, p.name)
}

// The exit code of up with --abort-on-container-exit,
// --abort-on-container-failure and --exit-code-from, as docker compose.
func TestExitCodeFrom(t *testing.T) {
	img := testimg.Busybox(t)
	server := `
  server:
    image: ` + img + `
    command: ["sh", "-c", "trap 'echo server stopping; exit 42' TERM; echo serving; while true; do sleep 0.1; done"]`
	// job exits 3 once server runs.
	jobFails := "services:" + server + `
  job:
    image: ` + img + `
    depends_on: [server]
    command: ["sh", "-c", "sleep 1; exit 3"]
`
	// ok exits 0 at once, job 5 later.
	okThenFailure := "services:" + server + `
  ok:
    image: ` + img + `
    depends_on: [server]
    command: ["sh", "-c", "echo ok done"]
  job:
    image: ` + img + `
    depends_on: [server]
    command: ["sh", "-c", "sleep 2; exit 5"]
`
	// job runs until stopped; ok starts once job runs and exits 0.
	okWhileJobRuns := `
services:
  job:
    image: ` + img + `
    command: ["sleep", "1000"]
  ok:
    image: ` + img + `
    depends_on: [job]
    command: ["sh", "-c", "echo ok done"]
`
	tests := []struct {
		compose string
		args    []string
		want    int
	}{
		{jobFails, []string{"--abort-on-container-exit"}, 3},
		{jobFails, []string{"--exit-code-from", "job"}, 3},
		// server is stopped by the abort: its own exit code counts.
		{jobFails, []string{"--exit-code-from", "server"}, 42},
		// ok's exit 0 does not abort, job's exit 5 does.
		{okThenFailure, []string{"--abort-on-container-failure"}, 5},
		// --exit-code-from does not imply --abort-on-container-exit
		// when --abort-on-container-failure is given.
		{okThenFailure, []string{"--exit-code-from", "job", "--abort-on-container-failure"}, 5},
		// It does otherwise: ok's exit aborts, and job's code is the one
		// of its stop by SIGTERM (docker compose's e2e test expects 137
		// for one it had to kill).
		{okWhileJobRuns, []string{"--exit-code-from", "job"}, 143},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%d %s", i, strings.Join(tc.args, " ")), func(t *testing.T) {
			t.Parallel()
			p := newProject(t, tc.compose)
			code, _, errs := p.run(tc.args...)
			if code != tc.want {
				t.Errorf("exit code %d, want %d:\n%s", code, tc.want, errs)
			}
			if !strings.Contains(errs, "Aborting on container exit...") {
				t.Errorf("no abort line:\n%s", errs)
			}
			assertNothingLeft(t, p.name)
		})
	}
}

// A restart runs the process again in the same instance; when the
// instance was stopped from outside, it is created again first.
func TestRestartReusesOrRecreatesInstance(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  app:
    image: `+img+`
    restart: always
    command:
      - sh
      - -c
      - |
        if [ -f /tmp/marker ]; then echo "same instance"; exec sleep 1000; fi
        touch /tmp/marker; echo "fresh instance"; exit 1
`)
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
	deadline := time.Now().Add(60 * time.Second)
	for {
		runs := lines(r.stdout.String(), "app-1")
		if countLines(r.stdout.String(), "app-1", "fresh instance") == 2 && runs[len(runs)-1] == "same instance" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second run in the recreated instance:\n%s\n%s", r.stdout, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if runs := lines(r.stdout.String(), "app-1"); runs[0] != "fresh instance" || runs[1] != "same instance" {
		t.Errorf("runs: %q", runs)
	}
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
	assertNothingLeft(t, p.name)
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
func TestServiceActorCrash(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	bin := crashBinary(t)
	p := newProject(t, `
services:
  db:
    image: `+img+`
    command: ["sleep", "1000"]
  boom:
    image: `+img+`
    depends_on: [db]
    command: ["sh", "-c", "echo boom running; exec sleep 1000"]
`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.command()
	cmd.Path, cmd.Args[0] = bin, bin
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- cmd.Run() }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("sstack hung after a crash:\n%s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	errs := stderr.String()
	for _, want := range []string{
		"sstack: internal error in boom-1, handling *actors.processStarted: panic: injected crash of boom-1",
		"goroutine ", "sstack/actors.injectCrash(",
		"boom-1: stopping instance " + p.name + ".boom.1 and the stack",
		"Instance " + p.name + ".boom.1  Stopped",
		"Instance " + p.name + ".db.1  Stopped",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s", stdout.String())
	}

	assertNothingLeft(t, p.name)
}

// depends_on.restart: web's process is restarted when db's is.
func TestDependsOnRestart(t *testing.T) {
	t.Parallel()
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  db:
    image: `+img+`
    restart: on-failure
    command:
      - sh
      - -c
      - |
        if [ -f /tmp/ran ]; then echo "db again"; exec sleep 1000; fi
        touch /tmp/ran; echo "db first"; sleep 2; exit 1
  web:
    image: `+img+`
    depends_on:
      db:
        condition: service_started
        restart: true
    command: ["sh", "-c", "echo web run; exec sleep 1000"]
`)
	r := p.up()
	deadline := time.Now().Add(60 * time.Second)
	for countLines(r.stdout.String(), "web-1", "web run") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("web was not restarted:\n%s\n%s", r.stdout, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	errs := r.stderr.String()
	before(t, errs, "db-1 exited with code 1, restarting in 100ms (attempt 1)", "web-1 restarting because its dependency db restarted")
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
	assertNothingLeft(t, p.name)
}

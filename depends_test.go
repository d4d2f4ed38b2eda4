package main

// depends_on, as docker compose: a dependent starts only once its
// dependency meets the condition (service_started, service_healthy with
// the healthcheck run inside the dependency's instance,
// service_completed_successfully); a required dependency that can never
// meet it stops the stack with exit code 1, naming the chain, before the
// dependents are created; an optional one (required: false) only warns;
// restart: true restarts the dependent when its dependency restarts.

import (
	"strings"
	"testing"
	"time"
)

// web starts only once db's healthcheck (CMD-SHELL, run inside db's
// instance with db's environment) passes; start_interval paces the probes
// inside start_period, long before the 30s interval.
func TestServiceHealthyWaitsForHealthcheck(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "sleep 1.5; touch /tmp/ready; echo db ready; exec sleep 1000"]`, "environment: {READY_FILE: /tmp/ready}",
			`healthcheck: {test: ["CMD-SHELL", "test -f \"$$READY_FILE\""], interval: 30s, timeout: 5s, retries: 3, start_period: 20s, start_interval: 200ms}`),
		service("web", `["sh", "-c", "echo web up; exec sleep 1000"]`, "depends_on: {db: {condition: service_healthy}}"),
	))
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
	p.ctrlCLeavesNothing(r)
}

// A dependency that turns unhealthy can never satisfy service_healthy.
func TestUnhealthyDependencyStopsStack(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sleep", "1000"]`, `healthcheck: {test: ["CMD", "sh", "-c", "echo not ready; exit 1"], interval: 100ms, retries: 2}`),
		service("web", `["sleep", "1000"]`, "depends_on: {db: {condition: service_healthy}}"),
	))
	code, _, errs := p.run()
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	contains(t, "stderr", errs, "db-1 is unhealthy: not ready", `web-1 cannot start: dependency "db" is unhealthy`)
	if strings.Contains(errs, p.name+".web.1  Creating") {
		t.Errorf("web was created:\n%s", errs)
	}
	p.assertNothingLeft()
}

// A migration must complete successfully before the app starts.
func TestServiceCompletedSuccessfullyWaitsForExit0(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("migrate", `["sh", "-c", "echo migrating; sleep 0.5; echo schema-v2 > /data/state"]`, `volumes: ["./data:/data"]`),
		service("app", `["sh", "-c", "echo \"app sees $$(cat /data/state)\"; exec sleep 1000"]`, "depends_on: {migrate: {condition: service_completed_successfully}}", `volumes: ["./data:/data"]`),
	))
	r := p.up()
	r.waitStdout(t, "app-1     | app sees schema-v2")
	before(t, r.stderr.String(), "migrate-1 exited with code 0", "Instance "+p.name+".app.1  Creating")
	p.ctrlCLeavesNothing(r)
}

// A migration that fails: its dependents never start, the message names
// the chain, up takes down what runs and exits 1.
func TestFailedDependencyChainStopsStack(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]`),
		service("migrate", `["sh", "-c", "echo migration failed; exit 1"]`, `depends_on: ["db"]`),
		service("api", `["sleep", "1000"]`, "depends_on: {migrate: {condition: service_completed_successfully}}"),
		service("web", `["sleep", "1000"]`, `depends_on: ["api"]`),
	))
	code, out, errs := p.run()
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(out, "migrate-1 | migration failed") {
		t.Errorf("migration output lost:\n%s", out)
	}
	contains(t, "stderr", errs,
		`api-1 cannot start: dependency "migrate" did not complete successfully: exit 1`,
		`web-1 cannot start: dependency "api" failed: dependency "migrate" did not complete successfully: exit 1`,
		"Instance "+p.name+".db.1  Stopped",
	)
	for _, s := range []string{"api", "web"} {
		if strings.Contains(errs, p.name+"."+s+".1  Creating") {
			t.Errorf("%s was created:\n%s", s, errs)
		}
	}
	p.assertNothingLeft()
}

// required: false: a failed optional dependency only warns.
func TestOptionalDependencyWarns(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("cache", `["sh", "-c", "exit 2"]`),
		service("web", `["sh", "-c", "echo web up; exec sleep 1000"]`, "depends_on: {cache: {condition: service_completed_successfully, required: false}}"),
	))
	r := p.up()
	r.waitStdout(t, "web-1   | web up")
	want := `web-1: optional dependency "cache" did not complete successfully: exit 2; starting without it (required: false)`
	if !strings.Contains(r.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	p.ctrlCLeavesNothing(r)
}

// depends_on.restart: web's process is restarted when db's is.
func TestDependsOnRestartRestartsDependent(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "if [ -f /tmp/ran ]; then echo db again; exec sleep 1000; fi; touch /tmp/ran; echo db first; sleep 2; exit 1"]`, "restart: on-failure"),
		webFollowsDB,
	))
	r := p.up()
	r.waitUntil(t, 60*time.Second, "web to be restarted", func() bool {
		return countLines(r.stdout.String(), "web-1", "web run") >= 2
	})
	errs := r.stderr.String()
	before(t, errs, "db-1 exited with code 1, restarting in 100ms (attempt 1)", "web-1 restarting because its dependency db restarted")
	p.ctrlCLeavesNothing(r)
}

package main

// Taking a stack down: Ctrl-C stops the services in reverse dependency
// order, each by its stop signal within its grace period, and up exits 0;
// a second Ctrl-C kills at once; instances left by a killed sstack are
// refused by up, which names `sstack down`, and `sstack down` removes
// them. Nothing is left behind in any case.

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
)

// Ctrl-C stops web before db is asked to stop; db's stop signal handler
// runs; a last line printed without newline is flushed when its process
// ends; up exits 0 and leaves nothing.
func TestCtrlCStopsServicesInReverseOrder(t *testing.T) {
	p := newProject(t, `
services:
  db:
    image: busybox
    command: ["sh", "-c", "trap 'echo db got TERM; exit 0' TERM; echo db ready; while true; do sleep 0.1; done"]
    stop_grace_period: 5s
  web:
    image: busybox
    depends_on: [db]
    command: ["sh", "-c", "echo web up; printf 'no newline at the end'; exec sleep 1000"]
`)
	r := p.up()
	r.waitStdout(t, "web-1 | web up")
	r.ctrlC(t)
	out := r.stdout.String()
	if !strings.Contains(out, "db-1  | db got TERM\n") {
		t.Errorf("db's stop_signal handler did not run:\n%s", out)
	}
	if !strings.Contains(out, "web-1 | no newline at the end\n") {
		t.Errorf("last line without newline lost:\n%s", out)
	}
	before(t, r.stderr.String(), "Instance "+p.name+".web.1  Stopped", "Instance "+p.name+".db.1  Stopping")
	assertNothingLeft(t, p.name)
}

// A service that ignores its stop signal is killed at once by a second
// Ctrl-C instead of after its grace period.
func TestSecondCtrlCKillsAtOnce(t *testing.T) {
	p := newProject(t, `
services:
  stubborn:
    image: busybox
    command: ["sh", "-c", "trap '' TERM INT; echo up; while true; do sleep 0.1; done"]
    stop_grace_period: 5m
`)
	r := p.up()
	r.waitStdout(t, "stubborn-1 | up")
	_ = r.cmd.Process.Signal(os.Interrupt)
	r.waitStderr(t, "Stopping")
	start := time.Now()
	if code := r.interrupt(t); code != 0 {
		t.Logf("exit code after forced stop: %d", code)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("second Ctrl-C did not kill at once")
	}
	assertNothingLeft(t, p.name)
}

// Instances of the project already exist (a killed sstack): up refuses,
// naming them and `sstack down`, which then removes them.
func TestNameClashRefusedAndDownRemovesIt(t *testing.T) {
	p := newProject(t, oneService("app", `["sleep", "100"]`))
	leftover := p.name + ".app.1"
	if out, err := exec.Command("apptainer", "-s", "instance", "start", testimg.Busybox(t), leftover).CombinedOutput(); err != nil {
		t.Fatalf("starting a leftover instance: %v: %s", err, out)
	}
	code, _, errs := p.run()
	if code == 0 {
		t.Fatal("exit code 0 despite a name clash")
	}
	if !strings.Contains(errs, leftover) || !strings.Contains(errs, "sstack down -n "+p.name) {
		t.Errorf("error does not name the instance and the fix:\n%s", errs)
	}
	down := p.command("down")
	if out, err := down.CombinedOutput(); err != nil {
		t.Fatalf("sstack down: %v: %s", err, out)
	}
	assertNothingLeft(t, p.name)
}

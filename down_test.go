package main

// Taking a stack down: Ctrl-C stops the services in reverse dependency
// order, each by its stop signal within its grace period, and up exits 0;
// a second Ctrl-C kills at once; instances left by a killed sstack are
// refused by up, which names `sstack down`, and `sstack down` removes
// them. Nothing is left behind in any case.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
)

// Ctrl-C stops web before db is asked to stop; db's stop signal handler
// runs; a last line printed without newline is flushed when its process
// ends; up exits 0 and leaves nothing.
func TestCtrlCStopsServicesInReverseOrder(t *testing.T) {
	p := newProject(t, services(
		service("db", `["sh", "-c", "trap 'echo db got TERM; exit 0' TERM; echo db ready; while true; do sleep 0.1; done"]`, "stop_grace_period: 5s"),
		service("web", `["sh", "-c", "echo web up; printf 'no newline at the end'; exec sleep 1000"]`, `depends_on: ["db"]`),
	))
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
	p.assertNothingLeft()
}

// A service that ignores its stop signal is killed at once by a second
// Ctrl-C instead of after its grace period.
func TestSecondCtrlCKillsAtOnce(t *testing.T) {
	p := newProject(t, oneService("stubborn", `["sh", "-c", "trap '' TERM INT; echo up; while true; do sleep 0.1; done"]`, "stop_grace_period: 5m"))
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
	p.assertNothingLeft()
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
	p.assertNothingLeft()
}

// instanceLogFiles are the files Apptainer keeps for the project's
// instances in its per-user log directory (dir, from `instance list`).
func instanceLogFiles(t *testing.T, dir, project string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, project+".*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Apptainer keeps NAME.out and NAME.err of every instance and never
// removes them; sstack removes an instance's files once the instance is
// gone: after stop (which removes the instance) and after down.
func TestInstanceLogFilesRemoved(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sh", "-c", "echo up; exec sleep 1000"]`),
		service("db", `["sh", "-c", "echo up; exec sleep 1000"]`),
	))
	p.upDetached()
	list := instanceList(t, p.name, p.name+".web.1")
	if len(list) != 1 || list[0].LogOutPath == "" {
		t.Fatalf("instance list: %+v, want web-1 with its log path", list)
	}
	dir := filepath.Dir(list[0].LogOutPath)
	if got := instanceLogFiles(t, dir, p.name); len(got) != 4 {
		t.Fatalf("log files while running: %v, want .out and .err of 2 instances", got)
	}
	p.must("stop", "web")
	eventually(t, time.Minute, "web's log files removed after stop", func() bool {
		for _, f := range instanceLogFiles(t, dir, p.name) {
			if strings.Contains(f, ".web.") {
				return false
			}
		}
		return true
	})
	p.down()
	if got := instanceLogFiles(t, dir, p.name); len(got) != 0 {
		t.Errorf("log files left after down: %v", got)
	}
	p.assertNothingLeft()
}

// down SERVICE takes down that service and those that depend on it, and
// nothing else: their instances are gone and ps -a no longer lists them,
// the rest runs on; up SERVICE starts them anew. Without a supervisor it
// stops only their leftover instances.
func TestDownServiceAndItsDependents(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "echo db up; exec sleep 1000"]`),
		service("web", `["sh", "-c", "echo web up; exec sleep 1000"]`, `depends_on: ["db"]`),
		service("other", `["sh", "-c", "echo other up; exec sleep 1000"]`),
	))
	p.upDetached()
	before := row(p.ps(), "other-1").Pid
	p.must("down", "db")
	if got := statuses(p.ps("-a")); len(got) != 1 || got["other-1"] != "running" {
		t.Errorf("after down db, ps -a shows %v, want only other-1 running", got)
	}
	if got := instances(t, p.name); len(got) != 1 || got[0] != p.name+".other.1" {
		t.Errorf("after down db, instances %v, want only other's", got)
	}
	if r := row(p.ps(), "other-1"); r == nil || r.Pid != before {
		t.Errorf("other was disturbed: %+v (pid was %d)", r, before)
	}
	p.upDetached("web")
	p.waitRunning("db-1", "web-1", "other-1")
	if code, _, errs := p.sstack("down", "nosuch"); code != 1 || !strings.Contains(errs, "nosuch") {
		t.Errorf("down nosuch: exit code %d\n%s", code, errs)
	}
	p.downLeavesNothing()
}

// down -t N overrides the grace period: a service that ignores SIGTERM
// with a stop_grace_period of a minute is killed after N seconds.
func TestDownTimeout(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("stubborn", `["sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.1; done"]`, "stop_grace_period: 1m"))
	p.upDetached()
	p.waitLogs("stubborn-1 | up")
	start := time.Now()
	p.must("down", "-t", "1")
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("down -t 1 took %s, want the grace period of 1s, not stop_grace_period", took)
	}
	p.assertNothingLeft()
}

// down --rmi local removes the SIF built for a service without image:,
// --rmi all also those of registry images; an image: path is the user's
// and stays.
func TestDownRemovesImages(t *testing.T) {
	t.Parallel()
	p := newProject(t, `
services:
  app:
    build:
      context: .
      dockerfile: app.def
    command: ["sleep", "1000"]
  cache:
    image: example.org/cache:1
    command: ["sleep", "1000"]
  web:
    image: busybox
    command: ["sleep", "1000"]
`)
	p.write("app.def", "Bootstrap: localimage\nFrom: /nonexistent.sif\n")
	built := filepath.Join(p.dir, "images", p.name+"-app+latest.sif")
	pulled := filepath.Join(p.dir, "images", "example.org%cache+1.sif")
	for _, f := range []string{built, pulled} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(testimg.Busybox(t), f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.upDetached()
	errs := func() string { _, _, e := p.sstack("down", "--rmi", "local"); return e }()
	contains(t, "down --rmi local", errs, "Image ./images/"+p.name+"-app+latest.sif  Removed")
	if _, err := os.Stat(built); err == nil {
		t.Error("down --rmi local left the built image")
	}
	if _, err := os.Stat(pulled); err != nil {
		t.Errorf("down --rmi local removed the registry image: %v", err)
	}
	p.assertNothingLeft()
	p.must("down", "--rmi", "all")
	if _, err := os.Stat(pulled); err == nil {
		t.Error("down --rmi all left the registry image")
	}
	if _, err := os.Stat(testimg.Busybox(t)); err != nil {
		t.Errorf("the image: path was removed: %v", err)
	}
	if code, _, _ := p.sstack("down", "--rmi", "some"); code != 2 {
		t.Errorf("down --rmi some: exit code %d, want 2", code)
	}
}

// down leaves the instances of services the compose file no longer has
// (orphans) and says so, as docker compose does; --remove-orphans
// removes them too.
func TestDownLeavesOrphans(t *testing.T) {
	t.Parallel()
	both := services(
		service("kept", `["sleep", "1000"]`),
		service("dropped", `["sleep", "1000"]`),
	)
	p := newProject(t, both)
	p.upDetached()
	p.write("docker-compose.yml", strings.ReplaceAll(oneService("kept", `["sleep", "1000"]`), busyboxImage, "image: "+testimg.Busybox(t)+"\n"))
	code, _, errs := p.sstack("down")
	if code != 0 {
		t.Fatalf("down: exit code %d\n%s", code, errs)
	}
	contains(t, "down's stderr", errs, "WARN Found orphan instances ("+p.name+".dropped.1) for this project", "--remove-orphans")
	if got := instances(t, p.name); len(got) != 1 || got[0] != p.name+".dropped.1" {
		t.Errorf("after down, instances %v, want the orphan only", got)
	}
	if got := statuses(p.ps()); len(got) != 1 || got["dropped-1"] != "running" {
		t.Errorf("after down, ps shows %v, want dropped-1 running", got)
	}
	p.must("down", "--remove-orphans")
	p.assertNothingLeft()
	assertNotRunning(t, p)
}

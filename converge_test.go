package main

// up on a running stack brings it to the edited compose file, as docker
// compose up does: changed services are recreated, new ones created,
// unchanged ones left running, orphans warned about (removed with
// --remove-orphans), and a broken file changes nothing.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// convergeFile: a runs `sleep` with a marker in its command line, b runs
// unchanged, c (when given) is new.
func convergeFile(marker string, withC bool, extra ...string) string {
	s := "\nservices:\n" +
		"  a:\n    " + busyboxImage + "    command: [\"sh\", \"-c\", \"echo a-" + marker + "; exec sleep 600\"]\n" +
		"  b:\n    " + busyboxImage + "    command: [\"sleep\", \"600\"]\n"
	if withC {
		s += "  c:\n    " + busyboxImage + "    command: [\"sleep\", \"600\"]\n"
	}
	for _, e := range extra {
		s += e
	}
	return s
}

// pids maps each running replica to its process id.
func pids(rows []replicaRow) map[string]int {
	m := map[string]int{}
	for _, r := range rows {
		if r.State == "running" {
			m[r.Name] = r.Pid
		}
	}
	return m
}

func (p *project) rewrite(compose string) {
	p.t.Helper()
	p.write("docker-compose.yml", p.withImages(compose))
}

// upPids runs up -d, which must succeed, and returns the process ids of
// replicas once every one of them runs.
func (p *project) upPids(replicas ...string) map[string]int {
	p.t.Helper()
	p.upDetached()
	return pids(p.waitRunning(replicas...))
}

// runningAB is a project of convergeFile("one", false) brought up (up
// -d), with the pids of a-1 and b-1 once both run.
func runningAB(t *testing.T) (*project, map[string]int) {
	t.Helper()
	p := newProject(t, convergeFile("one", false))
	return p, p.upPids("a-1", "b-1")
}

// update runs `sstack update -c FILE NAME` (singularity-stack's converge
// command) from another directory, as singularity-stack is used, and
// returns its exit code and stderr.
func (p *project) update() (int, string) {
	p.t.Helper()
	cmd := exec.Command(sstackBin, "update", "--metrics-addr", "", "-c", filepath.Join(p.dir, "docker-compose.yml"), p.name)
	cmd.Dir, cmd.Env = p.t.TempDir(), p.env
	code, _, errs := runCommand(p.t, asUserOf(p.name, cmd), 2*time.Minute)
	return code, errs
}

func TestUpConvergesRunningStack(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, convergeFile("one", false))
		before := p.upPids("a-1", "b-1")

		p.rewrite(convergeFile("two", true))
		errs := p.upDetached()
		contains(t, "up -d on the edited file", errs, "Recreate", "Running")
		after := pids(p.waitRunning("a-1", "b-1", "c-1"))
		if after["b-1"] != before["b-1"] {
			t.Errorf("b did not change, yet its process changed: pid %d, then %d\n%s", before["b-1"], after["b-1"], errs)
		}
		if after["a-1"] == before["a-1"] {
			t.Errorf("a's command changed, yet its process is the same (pid %d)\n%s", after["a-1"], errs)
		}
		p.waitLogs("a-two")

		// The same file again: nothing to do.
		errs = p.upDetached()
		again := pids(p.waitRunning("a-1", "b-1", "c-1"))
		for name, pid := range after {
			if again[name] != pid {
				t.Errorf("an unchanged file recreated %s (pid %d, then %d)\n%s", name, pid, again[name], errs)
			}
		}
		if strings.Contains(errs, "Recreate") {
			t.Errorf("an unchanged file: up said it recreates something:\n%s", errs)
		}
		p.downLeavesNothing()
	})
}

func TestUpRecreateFlags(t *testing.T) {
	p, first := runningAB(t)

	// --no-recreate: a changed, but stays as it runs.
	p.rewrite(convergeFile("two", false))
	p.upDetached("--no-recreate")
	if got := pids(p.waitRunning("a-1", "b-1")); got["a-1"] != first["a-1"] {
		t.Errorf("--no-recreate recreated a (pid %d, then %d)", first["a-1"], got["a-1"])
	}

	// --force-recreate: both are recreated, unchanged or not.
	p.upDetached("--force-recreate")
	forced := pids(p.waitRunning("a-1", "b-1"))
	for _, name := range []string{"a-1", "b-1"} {
		if forced[name] == first[name] {
			t.Errorf("--force-recreate left %s as it ran (pid %d)", name, forced[name])
		}
	}
	p.waitLogs("a-two")

	if code, _, errs := p.sstack("up", "-d", "--force-recreate", "--no-recreate"); code == 0 || !strings.Contains(errs, "cannot be combined") {
		t.Errorf("--force-recreate with --no-recreate: exit code %d, want a usage error\n%s", code, errs)
	}
	p.down()
}

func TestUpOrphans(t *testing.T) {
	p := newProject(t, convergeFile("one", true))
	p.upDetached()
	p.waitRunning("a-1", "b-1", "c-1")

	p.rewrite(convergeFile("one", false))
	errs := p.upDetached()
	contains(t, "up -d without c", errs, "Found orphan instances", p.name+".c.1", "--remove-orphans")
	if r := row(p.ps(), "c-1"); r == nil || r.State != "running" {
		t.Fatalf("the orphan c should run on until --remove-orphans: %+v", r)
	}

	p.upDetached("--remove-orphans")
	p.waitPs("c removed", func(rows []replicaRow) bool { return row(rows, "c-1") == nil })
	for _, i := range instances(t, p.name) {
		if strings.Contains(i, ".c.") {
			t.Errorf("instance %s of the removed orphan is left", i)
		}
	}
	// The orphan is gone from the stack: up does not bring it back.
	p.upDetached()
	if r := row(p.ps("-a"), "c-1"); r != nil {
		t.Errorf("up brought the removed orphan back: %+v", r)
	}
	p.down()
}

// What a service is made from beyond the compose file: an env file, a
// secret, the image file itself.
func TestUpRecreatesOnChangedFiles(t *testing.T) {
	p := newProject(t, "\nservices:\n  a:\n    "+busyboxImage+
		"    command: [\"sh\", \"-c\", \"echo v=$$V; cat /run/secrets/s; exec sleep 600\"]\n"+
		"    env_file: [a.env]\n    secrets: [s]\n"+
		"  b:\n    "+busyboxImage+"    command: [\"sleep\", \"600\"]\n"+
		"secrets:\n  s:\n    file: ./s.txt\n")
	p.write("a.env", "V=first\n")
	p.writeSecret("s.txt", "secret-one\n")
	start := p.upPids("a-1", "b-1")
	p.waitLogs("v=first", "secret-one")

	p.write("a.env", "V=second\n")
	afterEnv := p.upPids("a-1", "b-1")
	if afterEnv["a-1"] == start["a-1"] || afterEnv["b-1"] != start["b-1"] {
		t.Errorf("a changed env file: a's pid %d -> %d (want a new one), b's %d -> %d (want the same)", start["a-1"], afterEnv["a-1"], start["b-1"], afterEnv["b-1"])
	}
	p.waitLogs("v=second")

	p.writeSecret("s.txt", "secret-two\n")
	afterSecret := p.upPids("a-1")
	if afterSecret["a-1"] == afterEnv["a-1"] {
		t.Errorf("a changed secret file did not recreate a (pid %d)", afterSecret["a-1"])
	}
	p.waitLogs("secret-two")
	p.down()
}

// A new SIF file under the same name is a new image: its service is
// recreated, as docker compose recreates a container whose image changed.
func TestUpRecreatesOnNewImageFile(t *testing.T) {
	p := newProject(t, "")
	img := filepath.Join(p.dir, "app.sif")
	if err := copyFile(p.busybox, img, 0o644); err != nil {
		t.Fatal(err)
	}
	p.write("docker-compose.yml", "services:\n  a:\n    image: ./app.sif\n    command: [\"sleep\", \"600\"]\n  b:\n    image: "+p.busybox+"\n    command: [\"sleep\", \"600\"]\n")
	start := p.upPids("a-1", "b-1")
	// A rebuilt image: a new file put in place of the old one.
	if err := copyFile(p.busybox, img+".new", 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(img+".new", later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(img+".new", img); err != nil {
		t.Fatal(err)
	}
	now := p.upPids("a-1", "b-1")
	if now["a-1"] == start["a-1"] {
		t.Errorf("a new image file did not recreate a (pid %d)", now["a-1"])
	}
	if now["b-1"] != start["b-1"] {
		t.Errorf("b's image did not change, yet it was recreated (pid %d -> %d)", start["b-1"], now["b-1"])
	}
	p.down()
}

// A file that fails its checks changes nothing and says why.
func TestUpBrokenEditChangesNothing(t *testing.T) {
	p, start := runningAB(t)

	p.rewrite(convergeFile("two", true, "    depends_on: [nosuch]\n"))
	code, _, errs := p.sstack("up", "-d")
	if code == 0 {
		t.Fatalf("up -d with a broken file succeeded:\n%s", errs)
	}
	contains(t, "up -d with a broken file", errs, "nosuch")
	rows := p.ps("-a")
	if got := pids(rows); got["a-1"] != start["a-1"] || got["b-1"] != start["b-1"] {
		t.Errorf("a broken file changed the stack: pids %v, then %v", start, got)
	}
	if row(rows, "c-1") != nil {
		t.Errorf("a broken file created c: %+v", rows)
	}
	p.down()
}

// update NAME (singularity-stack's) converges a running stack.
func TestUpdateCommand(t *testing.T) {
	p, start := runningAB(t)
	p.rewrite(convergeFile("two", false))
	if code, errs := p.update(); code != 0 {
		t.Fatalf("update: exit code %d\n%s", code, errs)
	}
	if now := pids(p.waitRunning("a-1", "b-1")); now["a-1"] == start["a-1"] || now["b-1"] != start["b-1"] {
		t.Errorf("update: a %d -> %d (want new), b %d -> %d (want same)", start["a-1"], now["a-1"], start["b-1"], now["b-1"])
	}
	p.down()
	if code, errs := p.update(); code == 0 || !strings.Contains(errs, "not running") {
		t.Errorf("update of a stack that does not run: exit code %d, want an error saying so\n%s", code, errs)
	}
}

// rollingFile: web has three replicas that roll one at a time; mode
// decides what they print and whether their healthcheck passes.
func rollingFile(mode, action string) string {
	return "\nservices:\n  web:\n    " + busyboxImage +
		"    command: [\"sh\", \"-c\", \"echo web-mode-$$MODE; exec sleep 600\"]\n" +
		"    environment: {MODE: " + mode + "}\n" +
		"    healthcheck:\n      test: [\"CMD-SHELL\", \"test $$MODE != bad\"]\n      interval: 500ms\n      timeout: 2s\n      retries: 1\n      start_period: 0s\n" +
		"    deploy:\n      replicas: 3\n      update_config: {parallelism: 1, delay: 1s, monitor: 2s, failure_action: " + action + "}\n"
}

// A rolling update: one replica at a time, each after the previous one
// is healthy and the delay has passed.
func TestRollingUpdateInOrder(t *testing.T) {
	p := newProject(t, rollingFile("one", "pause"))
	p.upDetached("--wait")
	p.rewrite(rollingFile("two", "pause"))
	errs := p.upDetached()
	contains(t, "rolling update", errs, "web-1 updated 1/3", "web-2 updated 2/3", "web-3 updated 3/3", "update of web completed")
	before(t, errs, "web-1 updated 1/3", "Instance "+p.name+".web.2  Recreate")
	before(t, errs, "web-2 updated 2/3", "Instance "+p.name+".web.3  Recreate")
	for _, r := range p.waitStatus(map[string]string{"web-1": "running (healthy)", "web-2": "running (healthy)", "web-3": "running (healthy)"}) {
		if r.Restarts != 0 {
			t.Errorf("%s: %d restarts after the update, want 0", r.Name, r.Restarts)
		}
	}
	logs := p.waitLogs("web-mode-two")
	if n := strings.Count(logs, "web-mode-two"); n != 3 {
		t.Errorf("%d replicas print the new mode, want 3:\n%s", n, logs)
	}
	p.down()
}

// failure_action: rollback: the new version turns unhealthy, and every
// replica updated so far gets the previous configuration back; up exits 1.
func TestRollingUpdateRollsBack(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, rollingFile("good", "rollback"))
		p.upDetached("--wait")
		p.rewrite(rollingFile("bad", "rollback"))
		code, _, errs := p.sstack("up", "-d")
		if code == 0 {
			t.Fatalf("an update rolled back: up -d exit code 0, want 1\n%s", errs)
		}
		contains(t, "rolled back update", errs, "rolling web back: replica 1 is unhealthy", "web rolled back")
		if strings.Contains(errs, "web-2 updated") {
			t.Errorf("the update went on past the failed replica:\n%s", errs)
		}
		p.waitStatus(map[string]string{"web-1": "running (healthy)", "web-2": "running (healthy)", "web-3": "running (healthy)"})
		// The previous configuration is the stack's again: a second up of
		// the bad file tries again, the good one changes nothing.
		p.rewrite(rollingFile("good", "rollback"))
		if errs := p.upDetached(); strings.Contains(errs, "Recreate") {
			t.Errorf("after the rollback, the good file should be what runs; up recreated:\n%s", errs)
		}
		p.downLeavesNothing()
	})
}

// A recreated service publishes the ports of its new configuration: the
// old one stops answering, the new one reaches the new replica.
func TestUpRepublishesChangedPorts(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		oldPort, newPort := freePort(t), freePort(t)
		p := newP(t, httpd("web", "first", `ports: ["127.0.0.1:`+oldPort+`:80"]`))
		p.upDetached()
		if got := get(t, "http://127.0.0.1:"+oldPort+"/"); !strings.Contains(got, "first") {
			t.Fatalf("before the change: %q", got)
		}
		p.rewrite(httpd("web", "second", `ports: ["127.0.0.1:`+newPort+`:80"]`))
		p.upDetached()
		if got := get(t, "http://127.0.0.1:"+newPort+"/"); !strings.Contains(got, "second") {
			t.Errorf("the new port: %q, want the new replica's page", got)
		}
		if !unreachable("127.0.0.1:" + oldPort) {
			t.Errorf("the old port %s still answers after the service dropped it", oldPort)
		}
		if out := p.must("port", "web", "80"); !strings.Contains(out, newPort) {
			t.Errorf("port web 80 = %q, want the new port %s", out, newPort)
		}
		p.downLeavesNothing()
	})
}

// depends_on.restart: true: a dependent restarts once its dependency was
// recreated; one without it runs on.
func TestUpRestartsDependentsOfRecreated(t *testing.T) {
	file := func(marker string) string {
		return "\nservices:\n" +
			"  db:\n    " + busyboxImage + "    command: [\"sh\", \"-c\", \"echo db-" + marker + "; exec sleep 600\"]\n" +
			"  follows:\n    " + busyboxImage + "    command: [\"sleep\", \"600\"]\n    depends_on:\n      db: {condition: service_started, restart: true}\n" +
			"  stays:\n    " + busyboxImage + "    command: [\"sleep\", \"600\"]\n    depends_on: [db]\n"
	}
	p := newProject(t, file("one"))
	start := p.upPids("db-1", "follows-1", "stays-1")
	p.rewrite(file("two"))
	p.upDetached()
	var now map[string]int
	p.waitPs("follows restarted", func(rows []replicaRow) bool {
		now = pids(rows)
		return now["follows-1"] != 0 && now["follows-1"] != start["follows-1"] && now["db-1"] != start["db-1"]
	})
	if now["stays-1"] != start["stays-1"] {
		t.Errorf("stays (depends_on without restart) was restarted: pid %d -> %d", start["stays-1"], now["stays-1"])
	}
	p.down()
}

// up --no-start creates the replicas only: ps shows them created, start
// runs them; on a running stack a new service is created and waits.
func TestUpNoStart(t *testing.T) {
	p := newProject(t, convergeFile("one", false))
	p.upDetached("--no-start")
	rows := p.ps("-a")
	for _, name := range []string{"a-1", "b-1"} {
		if r := row(rows, name); r == nil || r.State != "created" {
			t.Errorf("after up --no-start, %s: %+v, want created", name, r)
		}
	}
	if n := len(instances(t, p.name)); n != 0 {
		t.Errorf("up --no-start made %d instances, want none", n)
	}
	p.must("start")
	start := pids(p.waitRunning("a-1", "b-1"))

	p.rewrite(convergeFile("two", true))
	p.upDetached("--no-start")
	rows = p.ps("-a")
	if r := row(rows, "c-1"); r == nil || r.State != "created" {
		t.Errorf("a new service with --no-start: %+v, want created", r)
	}
	if r := row(rows, "a-1"); r == nil || r.State != "created" {
		t.Errorf("a changed service with --no-start: %+v, want recreated and created only", r)
	}
	if got := pids(rows)["b-1"]; got != start["b-1"] {
		t.Errorf("the unchanged b: pid %d -> %d", start["b-1"], got)
	}
	p.upDetached()
	p.waitRunning("a-1", "b-1", "c-1")
	p.waitLogs("a-two")
	p.downLeavesNothing()
}

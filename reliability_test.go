package main

// Reliability: large stacks come up and go down cleanly, a run's processes
// end with it, an sstack killed during start-up leaves nothing that `down`
// does not find, and the state tree is private to its user.

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// processesWithArgs counts host processes whose command line is exactly
// args (joined by spaces).
func processesWithArgs(args string) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")) == args {
			n++
		}
	}
	return n
}

// numbered is a compose file of n services, s0 to sN-1, that run command.
func numbered(n int, command string) string {
	each := make([]string, n)
	for i := range each {
		each[i] = service("s"+strconv.Itoa(i), command)
	}
	return services(each...)
}

// TestLargeStackUpAndDown: 200 services on a small machine come up and go
// down with nothing left, starts and stops bounded by --parallel.
func TestLargeStackUpAndDown(t *testing.T) {
	p := newProject(t, numbered(200, `["sh", "-c", "trap 'exit 0' TERM; echo up; while true; do sleep 1; done"]`))
	r := p.up()
	r.waitUntil(t, 5*time.Minute, "200 services started", func() bool {
		return strings.Count(r.stderr.String(), "  Started\n") >= 200
	})
	if n := len(instances(t, p.name)); n != 200 {
		t.Errorf("%d instances run, want 200", n)
	}
	r.ctrlC(t)
	if strings.Contains(r.stderr.String(), "could not be started") || strings.Contains(r.stderr.String(), "still listed") {
		t.Errorf("a start or stop reported as failed:\n%s", r.stderr)
	}
	p.assertNothingLeft()
}

// TestRunEndsWithItsProcess: what a service process leaves running in its
// instance (a forked daemon) ends when it exits, before the next run, and
// with restart: no nothing runs after the exit.
func TestRunEndsWithItsProcess(t *testing.T) {
	t.Parallel()
	daemon := fmt.Sprintf("sleep %d", 100000+rand.Intn(800000))
	p := newProject(t, services(
		service("forker", `["sh", "-c", "`+daemon+` & echo forked; sleep 0.3; exit 1"]`, "restart: on-failure:3"),
		service("once", `["sh", "-c", "`+daemon+`0 & echo once forked; sleep 0.3"]`),
		service("keeper", `["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]`),
	))
	r := p.up()
	r.waitStderr(t, "forker-1 exited with code 1, giving up after 3 attempts")
	r.waitStderr(t, "once-1 exited with code 0")
	if got := countLines(r.stdout.String(), "forker-1", "forked"); got != 4 {
		t.Errorf("forker ran %d times, want 4", got)
	}
	if n := processesWithArgs(daemon); n != 0 {
		t.Errorf("%d daemons of forker still run after 4 runs, want 0", n)
	}
	if n := processesWithArgs(daemon + "0"); n != 0 {
		t.Errorf("the daemon of a restart: no service still runs after its exit")
	}
	p.ctrlCLeavesNothing(r)
}

// TestStateIsPrivate: the state tree (logs, hosts files, volumes, the
// control socket) is readable by its user only, and a directory an earlier
// version made 0755 is tightened.
func TestStateIsPrivate(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(service("web", `["sh", "-c", "echo hello; trap 'exit 0' TERM; while true; do sleep 0.1; done"]`, `volumes: ["data:/data"]`))+`volumes:
  data:
`)
	dir := filepath.Join(p.stateDir, p.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := p.up()
	r.waitStdout(t, "web-1 | hello")
	check := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			return
		}
		if got := fi.Mode().Perm(); got&0o077 != 0 || got&want != want {
			t.Errorf("%s: mode %#o, want %#o", path, got, want)
		}
	}
	check(p.stateDir, 0o700)
	check(dir, 0o700)
	check(filepath.Join(dir, "logs"), 0o700)
	check(filepath.Join(dir, "logs", "web-1.log"), 0o600)
	check(filepath.Join(dir, "hosts"), 0o700)
	check(filepath.Join(dir, "hosts", "web"), 0o600)
	check(filepath.Join(dir, "lock"), 0o600)
	check(filepath.Join(dir, "control.sock"), 0o600)
	p.ctrlCLeavesNothing(r)
}

// TestDownAfterKillDuringStart: an sstack SIGKILLed at any point of its
// start-up leaves `instance start` clients behind; `down` at once waits for
// them, removes their instances, and nothing appears afterwards.
func TestDownAfterKillDuringStart(t *testing.T) {
	p := newProject(t, numbered(6, `["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]`))
	for round := 0; round < 6; round++ {
		r := p.up()
		time.Sleep(time.Duration(rand.Intn(1500)) * time.Millisecond)
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		r.wait(t, 30*time.Second)
		if out, err := p.command("down").CombinedOutput(); err != nil {
			t.Fatalf("round %d: down: %v\n%s", round, err, out)
		}
		if names := instances(t, p.name); len(names) > 0 {
			t.Fatalf("round %d: instances right after down: %v", round, names)
		}
		time.Sleep(2 * time.Second) // a start still in flight would show by now
		if names := instances(t, p.name); len(names) > 0 {
			t.Fatalf("round %d: instances appeared after down: %v", round, names)
		}
	}
	p.assertNothingLeft()
}

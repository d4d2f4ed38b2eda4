package main

// `sstack logs` reads what up printed from the project's state directory,
// while the stack runs and after it stopped: every replica merged, a
// service filter, --tail, -t, --no-log-prefix, and -f, which follows until
// the stack stops.

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// logsCommand is `sstack -n NAME logs args...` in the project directory.
func (p *project) logsCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(sstackBin, append([]string{"-n", p.name, "logs"}, args...)...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	return cmd
}

func (p *project) logs(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.logsCommand(args...).Output()
	if err != nil {
		t.Fatalf("sstack logs %v: %v", args, err)
	}
	return string(out)
}

// `sstack logs` shows what up printed, while the stack runs and after it
// stopped, with --tail, -t, --no-log-prefix, a service filter and -f.
func TestLogsCommand(t *testing.T) {
	p := newProject(t, `
services:
  alpha:
    image: busybox
    command: ["sh", "-c", "for i in 1 2 3 4 5; do echo alpha $$i; done; sleep 0.5; echo oops >&2; trap 'exit 0' TERM; while true; do sleep 0.1; done"]
  beta:
    image: busybox
    command: ["sh", "-c", "echo beta 1; trap 'echo beta bye; exit 0' TERM; while true; do sleep 0.1; done"]
`)
	r := p.up()
	r.waitStdout(t, "alpha-1 | oops")
	r.waitStdout(t, "beta-1  | beta 1")

	all := p.logs(t)
	for _, want := range []string{"alpha-1 | alpha 1\n", "alpha-1 | alpha 5\n", "alpha-1 | oops\n", "beta-1  | beta 1\n"} {
		if !strings.Contains(all, want) {
			t.Errorf("logs lack %q:\n%s", want, all)
		}
	}
	if got := p.logs(t, "--tail", "2", "alpha"); got != "alpha-1 | alpha 5\nalpha-1 | oops\n" {
		t.Errorf("--tail 2 alpha gave %q", got)
	}
	if got := p.logs(t, "--no-log-prefix", "beta"); got != "beta 1\n" {
		t.Errorf("--no-log-prefix beta gave %q", got)
	}
	stamped := p.logs(t, "-t", "beta")
	if !regexp.MustCompile(`^beta-1 \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.?\d*Z beta 1\n$`).MatchString(stamped) {
		t.Errorf("-t gave %q", stamped)
	}

	// -f follows until the stack stops, and ends by itself then.
	follow := p.logsCommand("-f", "beta")
	var fout lockedBuffer
	follow.Stdout = &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followDone := make(chan error, 1)
	go func() { followDone <- follow.Wait() }()
	time.Sleep(500 * time.Millisecond)
	r.ctrlC(t)
	select {
	case err := <-followDone:
		if err != nil {
			t.Errorf("logs -f: %v", err)
		}
	case <-time.After(15 * time.Second):
		_ = follow.Process.Kill()
		t.Fatal("logs -f did not end after the stack stopped")
	}
	if !strings.Contains(fout.String(), "beta-1 | beta bye\n") {
		t.Errorf("logs -f did not show the line printed while stopping: %q", fout.String())
	}

	// After the stack stopped the logs are still there.
	after := p.logs(t, "beta")
	if !strings.Contains(after, "beta-1 | beta 1\n") || !strings.Contains(after, "beta-1 | beta bye\n") {
		t.Errorf("logs after stop: %q", after)
	}
	assertNothingLeft(t, p.name)
}

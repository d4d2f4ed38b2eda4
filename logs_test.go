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

// backgroundLogs is `sstack logs` running in the background, its stdout
// kept.
type backgroundLogs struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan error
}

func (p *project) startLogs(t *testing.T, args ...string) *backgroundLogs {
	t.Helper()
	l := &backgroundLogs{cmd: p.logsCommand(args...), done: make(chan error, 1)}
	l.cmd.Stdout = &l.out
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	return l
}

// endsWithStack checks that l (what, in the messages) ends without error
// once the stack has stopped.
func (l *backgroundLogs) endsWithStack(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-l.done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(15 * time.Second):
		_ = l.cmd.Process.Kill()
		t.Fatalf("%s did not end after the stack stopped", what)
	}
}

// `sstack logs` shows what up printed, while the stack runs and after it
// stopped, with --tail, -t, --no-log-prefix, a service filter and -f.
func TestLogsCommand(t *testing.T) {
	p := newProject(t, services(
		service("alpha", `["sh", "-c", "for i in 1 2 3 4 5; do echo alpha $$i; done; sleep 0.5; echo oops >&2; trap 'exit 0' TERM; while true; do sleep 0.1; done"]`),
		service("beta", `["sh", "-c", "echo beta 1; trap 'echo beta bye; exit 0' TERM; while true; do sleep 0.1; done"]`),
		service("gamma", `["sh", "-c", "echo gamma hi; trap 'exit 0' TERM; while true; do sleep 0.1; done"]`, "deploy: {replicas: 2}"),
		service("quiet", `["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]`),
	))
	r := p.up()
	r.waitStdout(t, "alpha-1 | oops")
	r.waitStdout(t, "beta-1  | beta 1")
	r.waitStdout(t, "gamma-2 | gamma hi")

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

	p.logsFilters(t)

	// A service of the file that printed nothing shows nothing, as
	// docker compose's logs; a name the file lacks is an error.
	if got := p.logs(t, "quiet"); got != "" {
		t.Errorf("logs of a silent service gave %q", got)
	}
	if out, err := p.logsCommand("no-such-service").CombinedOutput(); err == nil || !strings.Contains(string(out), `no logs for service "no-such-service"`) {
		t.Errorf("logs of a service the file lacks: %v %q", err, out)
	}

	// -f --until a past time prints the history up to it and ends at
	// once, while the stack runs.
	betaAt := lineTime(t, p.logs(t, "-t", "beta"), "beta 1")
	untilPast := p.logsCommand("-f", "--until", betaAt.Add(50*time.Millisecond).Format(time.RFC3339Nano), "beta")
	untilDone := make(chan string, 1)
	go func() { out, _ := untilPast.Output(); untilDone <- string(out) }()
	select {
	case got := <-untilDone:
		if got != "beta-1 | beta 1\n" {
			t.Errorf("-f --until (past) gave %q", got)
		}
	case <-time.After(10 * time.Second):
		_ = untilPast.Process.Kill()
		t.Error("logs -f --until (past) did not end while the stack runs")
	}

	// -f follows until the stack stops, and ends by itself then.
	follow := p.startLogs(t, "-f", "beta")
	// The line filters apply to what -f prints too.
	filtered := p.startLogs(t, "-f", "-x", "beta 1", "beta")
	time.Sleep(500 * time.Millisecond)
	r.ctrlC(t)
	follow.endsWithStack(t, "logs -f")
	if !strings.Contains(follow.out.String(), "beta-1 | beta bye\n") {
		t.Errorf("logs -f did not show the line printed while stopping: %q", follow.out.String())
	}
	filtered.endsWithStack(t, "logs -f -x")
	if got := filtered.out.String(); got != "beta-1 | beta bye\n" {
		t.Errorf("logs -f -x 'beta 1' gave %q, want only the line printed while stopping", got)
	}

	// After the stack stopped the logs are still there.
	after := p.logs(t, "beta")
	if !strings.Contains(after, "beta-1 | beta 1\n") || !strings.Contains(after, "beta-1 | beta bye\n") {
		t.Errorf("logs after stop: %q", after)
	}
	assertNothingLeft(t, p.name)
}

// logsFilters checks --index, --until, --since, the line filters and
// --stdout/--stderr against a running stack.
func (p *project) logsFilters(t *testing.T) {
	t.Helper()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--index", "2", "gamma"}, "gamma-2 | gamma hi\n"},
		{[]string{"--index", "1", "gamma"}, "gamma-1 | gamma hi\n"},
		{[]string{"--index", "2", "--no-log-prefix"}, "gamma hi\n"}, // only gamma has a second replica
		{[]string{"--include", "alpha [24]", "alpha"}, "alpha-1 | alpha 2\nalpha-1 | alpha 4\n"},
		{[]string{"-i", "alpha", "-i", "[35]", "alpha"}, "alpha-1 | alpha 3\nalpha-1 | alpha 5\n"},
		{[]string{"-x", "[0-9]", "alpha"}, "alpha-1 | oops\n"},
		{[]string{"--include", "alpha", "--exclude", "[1-3]", "alpha"}, "alpha-1 | alpha 4\nalpha-1 | alpha 5\n"},
		{[]string{"--stderr"}, "alpha-1 | oops\n"},
		{[]string{"--stdout", "alpha"}, "alpha-1 | alpha 1\nalpha-1 | alpha 2\nalpha-1 | alpha 3\nalpha-1 | alpha 4\nalpha-1 | alpha 5\n"},
		{[]string{"--stdout", "--stderr", "--tail", "1", "alpha"}, "alpha-1 | oops\n"},
		// Filters come before --tail: the last line that matches.
		{[]string{"--stdout", "--tail", "1", "alpha"}, "alpha-1 | alpha 5\n"},
	} {
		if got := p.logs(t, c.args...); got != c.want {
			t.Errorf("logs %s gave %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}

	// alpha sleeps 0.5 s between "alpha 5" and "oops": split there.
	at := lineTime(t, p.logs(t, "-t", "alpha"), "alpha 5").Add(250 * time.Millisecond).Format(time.RFC3339Nano)
	if got, want := p.logs(t, "--until", at, "alpha"), "alpha-1 | alpha 1\nalpha-1 | alpha 2\nalpha-1 | alpha 3\nalpha-1 | alpha 4\nalpha-1 | alpha 5\n"; got != want {
		t.Errorf("--until %s gave %q, want %q", at, got, want)
	}
	if got := p.logs(t, "--since", at, "alpha"); got != "alpha-1 | oops\n" {
		t.Errorf("--since %s gave %q", at, got)
	}
	if got := p.logs(t, "--until", "1h", "alpha"); got != "" {
		t.Errorf("--until 1h (before the stack started) gave %q", got)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--include", "("}, `sstack: --include "(": not a regular expression`},
		{[]string{"-x", "a[b"}, `sstack: --exclude "a[b": not a regular expression`},
		{[]string{"--until", "soon"}, `sstack: --until "soon"`},
		{[]string{"--index", "3", "gamma"}, `sstack: --index 3: service "gamma" has no logs of replica 3`},
	} {
		out, err := p.logsCommand(c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("logs %s: %v, %q; want an error with %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
}

// lineTime is the time -t printed for the line with text in logs output.
func lineTime(t *testing.T, out, text string) time.Time {
	t.Helper()
	m := regexp.MustCompile(`(?m)\| (\S+) ` + regexp.QuoteMeta(text) + `$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line %q in %q", text, out)
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatal(err)
	}
	return at
}

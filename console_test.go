package main

// The console never holds the stack hostage: when whoever reads sstack's
// stdout stops reading, Ctrl-C still ends sstack within the grace period
// (a second Ctrl-C at once), its status lines still reach stderr, and
// every line is in the log store; the lines the console could not take
// are counted and reported.

import (
	"bufio"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// flood prints numbered lines as fast as a shell can, one write per line
// (so no line is ever torn), until it is stopped; ignoreTerm makes it
// ignore the stop signal, so that only SIGKILL ends it.
func flood(ignoreTerm bool) string {
	trap := `trap 'exit 0' TERM`
	if ignoreTerm {
		trap = `trap '' TERM`
	}
	return `["sh", "-c", "` + trap + `; i=0; while true; do i=$$((i+1)); echo $$i; done"]`
}

// readNumbered reads at least n lines "svc-1 | N" from br and checks that
// they count from 1 without gap.
func readNumbered(t *testing.T, br *bufio.Reader, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading line %d of stdout: %v", i, err)
		}
		if want := "svc-1 | " + strconv.Itoa(i) + "\n"; l != want {
			t.Fatalf("stdout line %d = %q, want %q", i, l, want)
		}
	}
}

// stalled gives the pipes time to fill up behind a reader that stopped.
const stalled = 2 * time.Second

// ctrlCExits sends sstack a Ctrl-C (what names which one) and waits for it
// to exit within bound, while the test does not read its stdout; it logs
// how long that took.
func ctrlCExits(t *testing.T, r *running, bound time.Duration, what string) {
	t.Helper()
	start := time.Now()
	_ = r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-r.done:
	case <-time.After(bound):
		t.Fatalf("sstack did not exit within %v of %s while its stdout was not read", bound, what)
	}
	t.Logf("sstack exited %v after %s with its stdout not read", time.Since(start).Round(time.Millisecond), what)
}

// rest reads what sstack wrote to stdout before it exited, and counts the
// whole lines "svc-1 | N" in it, which must follow on from first.
func rest(t *testing.T, br *bufio.Reader, pr *os.File, first int) int {
	t.Helper()
	_ = pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("stdout is still open 10 s after sstack exited")
	} else if err != nil {
		t.Fatalf("reading the rest of stdout: %v", err)
	}
	whole := strings.Count(string(data), "\n")
	for i, l := range strings.SplitN(string(data), "\n", whole+1)[:whole] {
		if want := "svc-1 | " + strconv.Itoa(first+i); l != want {
			t.Fatalf("stdout line %d = %q, want %q", first+i, l, want)
		}
	}
	return first - 1 + whole
}

var notShownRe = regexp.MustCompile(`(?m)^(\d+) lines? not shown on the console; see sstack logs -n (\S+)$`)

// notShown returns the count of the report of lines not shown, which must
// name the project.
func notShown(t *testing.T, stderr, project string) int {
	t.Helper()
	m := notShownRe.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr does not report the lines not shown on the console:\n%s", stderr)
	}
	if m[2] != project {
		t.Errorf("the report names project %q, want %q", m[2], project)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// storedLines checks that `sstack logs` has lines 1..S of svc-1 without
// gap or repeat, and returns S.
func storedLines(t *testing.T, p *project) int {
	t.Helper()
	out, err := p.command("logs").Output()
	if err != nil {
		t.Fatalf("sstack logs: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	for i, l := range lines {
		if want := "svc-1 | " + strconv.Itoa(i+1); l != want {
			t.Fatalf("sstack logs line %d = %q, want %q (of %d lines)", i+1, l, want, len(lines))
		}
	}
	return len(lines)
}

// accounted checks that every stored line was either shown on the
// console or counted as not shown.
func accounted(t *testing.T, stored, shown, hidden int) {
	t.Helper()
	if shown > stored {
		t.Errorf("%d lines on the console but %d in the store", shown, stored)
	}
	if shown+hidden < stored {
		t.Errorf("%d lines in the store, %d shown and %d reported not shown: %d silently not shown", stored, shown, hidden, stored-shown-hidden)
	}
	if hidden > stored-shown {
		t.Errorf("%d lines reported not shown, but only %d of the %d stored were not shown", hidden, stored-shown, stored)
	}
}

// A service floods stdout; the reader of sstack's stdout reads a little,
// then stops reading. Ctrl-C: sstack stops the stack, prints its status
// lines and the count of lines it could not show, and exits, while the
// reader still reads nothing; the store has every line.
func TestConsoleStoppedReaderDoesNotHoldCtrlC(t *testing.T) {
	p := newProject(t, oneService("svc", flood(false)))
	r, pr := upPiped(t, p, "")
	br := bufio.NewReader(pr)
	readNumbered(t, br, 1000)
	time.Sleep(stalled)

	ctrlCExits(t, r, 30*time.Second, "Ctrl-C")
	if r.code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", r.code)
	}
	errs := r.stderr.String()
	contains(t, "stderr", errs, "Gracefully stopping...", "Instance "+p.name+".svc.1  Stopping", "Instance "+p.name+".svc.1  Stopped")
	before(t, errs, "Stopped", "lines not shown on the console")
	accountedAfterStop(t, p, errs, br, pr)
}

// A second Ctrl-C while the reader of stdout is stopped and the service
// ignores its stop signal: sstack kills it and exits at once, long before
// the grace period is over.
func TestConsoleStoppedReaderSecondCtrlCAtOnce(t *testing.T) {
	p := newProject(t, oneService("svc", flood(true)))
	r, pr := upPiped(t, p, "", "-t", "120")
	br := bufio.NewReader(pr)
	readNumbered(t, br, 1000)
	time.Sleep(stalled)

	_ = r.cmd.Process.Signal(syscall.SIGINT)
	r.waitStderr(t, "Gracefully stopping...")
	time.Sleep(time.Second)
	r.stillRunning(t, "after one Ctrl-C with a 120 s grace period")
	ctrlCExits(t, r, 20*time.Second, "the second Ctrl-C")
	errs := r.stderr.String()
	contains(t, "stderr", errs, "Killing...")
	accountedAfterStop(t, p, errs, br, pr)
}

// The stack ends by itself while the reader of stdout is stopped: sstack
// waits for the reader (a lagging one gets every line), until Ctrl-C,
// which ends the wait.
func TestConsoleStoppedReaderCtrlCEndsWaitAtEnd(t *testing.T) {
	// seq's 49 KB fit in the service's own pipe (64 KiB), so it ends by
	// itself however little sstack relays; formatted (129 KB) they do not
	// fit in sstack's stdout pipe, so sstack is left waiting for the reader.
	const n = 10_000
	p := newProject(t, oneService("svc", `["seq", "1", "`+strconv.Itoa(n)+`"]`))
	r, pr := upPiped(t, p, "")
	br := bufio.NewReader(pr)
	readNumbered(t, br, 1000)
	r.waitStderr(t, "Instance "+p.name+".svc.1  Stopped")
	time.Sleep(stalled)
	r.stillRunning(t, "before its stdout was read")
	ctrlCExits(t, r, 30*time.Second, "Ctrl-C")
	hidden := notShown(t, r.stderr.String(), p.name)
	shown := rest(t, br, pr, 1001)
	stored := storedLines(t, p)
	if stored != n {
		t.Errorf("%d lines stored, want %d", stored, n)
	}
	t.Logf("%d lines stored, %d shown, %d reported not shown", stored, shown, hidden)
	accounted(t, stored, shown, hidden)
	assertNothingLeft(t, p.name)
}

// Whose output up shows, as docker compose: up SERVICE shows that service
// only (its dependencies with --attach-dependencies), --attach only the
// services named, --no-attach all but those; every line is in the log
// store all the same.
func TestUpAttachSelectsOutput(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "echo db line; exec sleep 1000"]`),
		service("web", `["sh", "-c", "echo web line; exec sleep 1000"]`, "depends_on: [db]"),
		service("other", `["sh", "-c", "echo other line; exec sleep 1000"]`),
	))
	for _, c := range []struct {
		args       []string
		wait       string // the last line to wait for
		shown, not []string
		attaching  string
	}{
		{[]string{"web"}, "| web line", []string{"web"}, []string{"db", "other"}, "Attaching to web-1\n"},
		{[]string{"--attach-dependencies", "web"}, "| web line", []string{"db", "web"}, []string{"other"}, "Attaching to db-1, web-1\n"},
		{[]string{"--no-attach", "other"}, "| web line", []string{"db", "web"}, []string{"other"}, "Attaching to db-1, web-1\n"},
		{[]string{"--attach", "other"}, "| other line", []string{"other"}, []string{"db", "web"}, "Attaching to other-1\n"},
	} {
		r := p.up(append([]string{"up"}, c.args...)...)
		r.waitStdout(t, c.wait)
		if c.args[0] != "--attach" {
			p.waitLogs("db-1 ", "web-1 ") // stored, shown or not
		}
		r.ctrlC(t)
		out, what := r.stdout.String(), strings.Join(c.args, " ")
		for _, s := range c.shown {
			if !strings.Contains(out, s+"-1 ") {
				t.Errorf("up %s: %s's output not shown:\n%s", what, s, out)
			}
		}
		for _, s := range c.not {
			if strings.Contains(out, s+"-1 ") {
				t.Errorf("up %s: %s's output shown:\n%s", what, s, out)
			}
		}
		contains(t, "up "+what+" stderr", r.stderr.String(), c.attaching)
		assertNothingLeft(t, p.name)
	}
	if code, _, errs := p.sstack("up", "--attach", "nosuch"); code != 1 || !strings.Contains(errs, "no such service: nosuch") {
		t.Errorf("--attach nosuch: exit code %d\n%s", code, errs)
	}
}

// accountedAfterStop checks, once sstack has exited with its stdout's
// reader stopped, that every stored line was shown or reported not shown
// (errs is its stderr; the reader resumes at line 1001), and that nothing
// of the stack is left.
func accountedAfterStop(t *testing.T, p *project, errs string, br *bufio.Reader, pr *os.File) {
	t.Helper()
	hidden := notShown(t, errs, p.name)
	shown := rest(t, br, pr, 1001)
	stored := storedLines(t, p)
	t.Logf("%d lines stored, %d shown, %d reported not shown", stored, shown, hidden)
	accounted(t, stored, shown, hidden)
	assertNothingLeft(t, p.name)
}

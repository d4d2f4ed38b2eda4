package main

// Looking into a running stack: ps lists its replicas (a table, JSON,
// instance names, service names; -a adds those that exited or were
// stopped) with docker compose's statuses, against a detached stack and
// a foreground up alike. exec runs a command in a replica's instance with
// the service's environment, never the host's, and returns its exit code;
// top shows the processes of each instance; events streams what happens;
// wait returns the exit code of the first exit.

import (
	"bufio"
	"encoding/json"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ps shows web's two replicas running, a healthy service and, with -a, a
// job that exited with 3; as a table, JSON, instance names or services.
func TestPsShowsReplicasAndStatuses(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sleep", "1000"]`, "deploy: {replicas: 2}"),
		service("db", `["sleep", "1000"]`, `healthcheck: {test: ["CMD", "true"], interval: 200ms}`),
		service("job", `["sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit 3"]`),
	))
	p.upDetached()
	p.must("exec", "-T", "job", "touch", "/tmp/go")
	rows := p.waitStatus(map[string]string{"web-1": "running", "web-2": "running", "db-1": "running (healthy)", "job-1": "exited (3)"})
	if len(rows) != 4 {
		t.Errorf("ps -a: %d rows, want 4: %v", len(rows), statuses(rows))
	}
	for _, r := range rows {
		if !r.Supervised || r.Instance != p.name+"."+r.Service+"."+strconv.Itoa(r.Replica) || r.Name != r.Service+"-"+strconv.Itoa(r.Replica) {
			t.Errorf("ps -a row %+v: want supervised, instance %s.SERVICE.N, name SERVICE-N", r, p.name)
		}
		if running := strings.HasPrefix(r.Status, "running"); running != (r.Pid > 0) {
			t.Errorf("%s is %s with pid %d: a running replica has a pid, another none", r.Name, r.Status, r.Pid)
		}
	}
	if job := row(rows, "job-1"); job == nil || job.State != "exited" || job.ExitCode != 3 {
		t.Errorf("job-1 in ps -a: %+v, want state exited, exit code 3", job)
	}
	if db := row(rows, "db-1"); db == nil || db.State != "running" || db.Health != "healthy" {
		t.Errorf("db-1 in ps -a: %+v, want state running, health healthy", db)
	}

	// Without -a, only the replicas that run.
	active := p.ps()
	if got := statuses(active); len(got) != 3 || got["job-1"] != "" {
		t.Errorf("ps: %v, want web-1, web-2 and db-1 only", got)
	}
	table := p.must("ps")
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^NAME +SERVICE +STATUS\b`).MatchString(lines[0]) {
		t.Errorf("ps: want a header and 3 rows:\n%s", table)
	}
	for _, want := range []string{`(?m)^web-1 +web +running `, `(?m)^web-2 +web +running `, `(?m)^db-1 +db +running \(healthy\) `} {
		if !regexp.MustCompile(want).MatchString(table) {
			t.Errorf("ps lacks a row matching %s:\n%s", want, table)
		}
	}
	if all := p.must("ps", "-a"); !regexp.MustCompile(`(?m)^job-1 +job +exited \(3\) `).MatchString(all) {
		t.Errorf("ps -a lacks job-1 exited (3):\n%s", all)
	}
	if got := sortedLines(p.must("ps", "-q")); strings.Join(got, " ") != strings.Join([]string{p.name + ".db.1", p.name + ".web.1", p.name + ".web.2"}, " ") {
		t.Errorf("ps -q: %v, want the instances of db-1, web-1 and web-2", got)
	}
	if got := sortedLines(p.must("ps", "-a", "--services")); strings.Join(got, " ") != "db job web" {
		t.Errorf("ps -a --services: %v, want db, job and web once each", got)
	}
	if got := statuses(p.ps("web")); len(got) != 2 || got["web-1"] != "running" || got["web-2"] != "running" {
		t.Errorf("ps web: %v, want web-1 and web-2", got)
	}
	p.downLeavesNothing()
}

func sortedLines(s string) []string {
	l := strings.Fields(s)
	sort.Strings(l)
	return l
}

// ps, ls and exec work against a foreground up too, from another process.
func TestPsAgainstForegroundUp(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("web", `["sh", "-c", "echo web up; exec sleep 1000"]`))
	r := p.up()
	r.waitStdout(t, "web-1 | web up")
	if got := statuses(p.ps()); len(got) != 1 || got["web-1"] != "running" {
		t.Errorf("ps: %v, want web-1 running", got)
	}
	ls := p.must("ls")
	if !regexp.MustCompile(`(?m)^` + p.name + ` +running\(1\) +pid ` + strconv.Itoa(r.cmd.Process.Pid) + ` +/`).MatchString(ls) {
		t.Errorf("ls lacks %s running(1) supervised by pid %d, not detached:\n%s", p.name, r.cmd.Process.Pid, ls)
	}
	if out := p.must("exec", "-T", "web", "echo", "exec works"); out != "exec works\n" {
		t.Errorf("exec output %q", out)
	}
	p.ctrlCLeavesNothing(r)
	assertNotRunning(t, p)
}

// exec runs in the replica's instance with the service's environment (not
// the host's: a variable set only in sstack's environment is not there)
// and working directory; -e adds variables, -w sets the directory,
// --index picks the replica; sstack's exit code is the command's.
func TestExecRunsInServiceEnvironment(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("web", `["sleep", "1000"]`, `environment: {GREETING: hello, SLOT: "{{.Task.Slot}}"}`, "working_dir: /srv", "deploy: {replicas: 2}"))
	p.env = append(p.env, "HOST_ONLY=leaked")
	p.upDetached()
	if out := p.must("exec", "-T", "web", "sh", "-c", `echo "greeting=$GREETING slot=$SLOT host=${HOST_ONLY:-none} pwd=$(pwd)"`); out != "greeting=hello slot=1 host=none pwd=/srv\n" {
		t.Errorf("exec web: %q, want the service's environment and working directory", out)
	}
	if out := p.must("exec", "-T", "--index", "2", "web", "sh", "-c", `echo "slot=$SLOT"`); out != "slot=2\n" {
		t.Errorf("exec --index 2 web: %q, want replica 2's environment", out)
	}
	if out := p.must("exec", "-T", "-e", "EXTRA=more", "-e", "GREETING=overridden", "-w", "/tmp", "web", "sh", "-c", `echo "$EXTRA $GREETING $(pwd)"`); out != "more overridden /tmp\n" {
		t.Errorf("exec -e -w: %q, want \"more overridden /tmp\"", out)
	}
	// The command's own flags are its own, after the service.
	if out := p.must("exec", "-T", "web", "ls", "-d", "/srv"); out != "/srv\n" {
		t.Errorf("exec web ls -d /srv: %q", out)
	}
	if code, _, errs := p.sstack("exec", "-T", "web", "sh", "-c", "echo failing >&2; exit 7"); code != 7 || errs != "failing\n" {
		t.Errorf("exec of a command that exits 7: exit code %d, stderr %q; want 7 and the command's stderr", code, errs)
	}
	p.downLeavesNothing()
}

// exec into a service that does not exist lists those that do; into a
// replica that does not run, it says what state it is in.
func TestExecIntoMissingOrStoppedReplica(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sleep", "1000"]`),
		service("job", `["sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit 3"]`),
	))
	p.upDetached()
	p.must("exec", "-T", "job", "touch", "/tmp/go")
	p.waitStatus(map[string]string{"web-1": "running", "job-1": "exited (3)"})
	code, _, errs := p.sstack("exec", "-T", "nosuch", "true")
	if code != 1 {
		t.Errorf("exec nosuch: exit code %d, want 1", code)
	}
	contains(t, "exec nosuch", errs, "nosuch", "job", "web")
	code, _, errs = p.sstack("exec", "-T", "job", "true")
	if code != 1 {
		t.Errorf("exec into an exited replica: exit code %d, want 1", code)
	}
	contains(t, "exec job", errs, "job-1", "exited (3)", "not running")
	code, _, errs = p.sstack("exec", "-T", "--index", "2", "web", "true")
	if code != 1 {
		t.Errorf("exec --index 2 of a service with one replica: exit code %d, want 1", code)
	}
	contains(t, "exec --index 2 web", errs, "web", "2")
	p.must("stop", "web")
	code, _, errs = p.sstack("exec", "-T", "web", "true")
	if code != 1 {
		t.Errorf("exec into a stopped replica: exit code %d, want 1", code)
	}
	contains(t, "exec web after stop", errs, "web-1", "stopped", "sstack start web")
	p.downLeavesNothing()
}

// top shows each replica's processes, the service's own among them.
func TestTopShowsServiceProcess(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sleep", "1234"]`),
		service("db", `["sleep", "4321"]`),
	))
	p.upDetached()
	out := p.must("top", "web")
	if !regexp.MustCompile(`(?m)^web-1$`).MatchString(out) || !regexp.MustCompile(`(?m)^UID +PID +PPID +CMD$`).MatchString(out) {
		t.Errorf("top web: want a web-1 section with a UID PID PPID CMD header:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^0 +[0-9]+ +[0-9]+ +(\S*/)?sleep 1234$`).MatchString(out) {
		t.Errorf("top web lacks web's process, sleep 1234:\n%s", out)
	}
	if strings.Contains(out, "4321") || strings.Contains(out, "db-1") {
		t.Errorf("top web shows db:\n%s", out)
	}
	if all := p.must("top"); !strings.Contains(all, "sleep 1234") || !strings.Contains(all, "sleep 4321") {
		t.Errorf("top lacks a service's process:\n%s", all)
	}
	p.downLeavesNothing()
}

// eventStream is a running `sstack events`: its output, read as it comes,
// and a way to end it as Ctrl-C does.
type eventStream struct {
	*running
	out *lockedBuffer
}

func (p *project) events(args ...string) *eventStream {
	p.t.Helper()
	out := &lockedBuffer{}
	return &eventStream{running: p.launch("", out, append([]string{"events"}, args...)...), out: out}
}

// interrupt ends the stream as Ctrl-C does; it must exit 0.
func (s *eventStream) interrupt(t *testing.T) {
	t.Helper()
	if code := s.running.interrupt(t); code != 0 {
		t.Errorf("events: exit code %d after Ctrl-C, want 0:\n%s%s", code, s.out, s.stderr)
	}
}

type jsonEvent struct {
	Action   string `json:"action"`
	Project  string `json:"project"`
	Service  string `json:"service"`
	Name     string `json:"name"`
	Instance string `json:"instance"`
	ExitCode int    `json:"exitCode"`
	Signal   string `json:"signal"`
}

func parseEvents(t *testing.T, s string) []jsonEvent {
	t.Helper()
	var evs []jsonEvent
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var ev jsonEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events --json: line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// events --json streams a service's restart by its policy as die (with
// the exit code), restart and start, in that order; without --json, as
// docker compose events lines.
func TestEventsStreamRestart(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sh", "-c", "trap 'echo usr1' USR1; echo ready; while [ ! -f /tmp/die ]; do sleep 0.1; done; rm /tmp/die; exit 3"]`, "restart: on-failure"),
		service("db", `["sleep", "1000"]`),
	))
	p.upDetached()
	p.waitLogs("web-1 | ready")
	asJSON := p.events("--json", "web")
	asText := p.events()
	// The streams are subscribed once they show an event: a signal the
	// service ignores, sent until both have seen one.
	eventually(t, time.Minute, "both event streams to show a kill event", func() bool {
		p.must("kill", "-s", "SIGUSR1", "web")
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(asJSON.out.String(), `"action":"kill"`) && strings.Contains(asText.out.String(), " container kill "+p.name+".web.1") {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	})
	p.must("exec", "-T", "web", "touch", "/tmp/die")
	eventually(t, time.Minute, "web's restart in the event stream", func() bool {
		evs := parseEvents(t, asJSON.out.String())
		return len(evs) > 0 && evs[len(evs)-1].Action == "start"
	})
	asJSON.interrupt(t)
	asText.interrupt(t)

	evs := parseEvents(t, asJSON.out.String())
	var actions []string
	for _, ev := range evs {
		if ev.Service != "web" || ev.Name != "web-1" || ev.Instance != p.name+".web.1" || ev.Project != p.name {
			t.Errorf("events --json web: event %+v is not web-1's", ev)
		}
		if ev.Action != "kill" {
			actions = append(actions, ev.Action)
		}
	}
	if got := strings.Join(actions, " "); got != "die restart start" {
		t.Errorf("events --json web after the kills: %q, want \"die restart start\":\n%s", got, asJSON.out)
	}
	for _, ev := range evs {
		if ev.Action == "die" && ev.ExitCode != 3 {
			t.Errorf("die event with exit code %d, want 3", ev.ExitCode)
		}
		if ev.Action == "kill" && ev.Signal != "SIGUSR1" {
			t.Errorf("kill event with signal %q, want SIGUSR1", ev.Signal)
		}
	}
	text := asText.out.String()
	for _, re := range []string{
		` container kill ` + p.name + `\.web\.1 \(name=web-1, service=web, signal=SIGUSR1\)`,
		` container die ` + p.name + `\.web\.1 \(name=web-1, service=web, exitCode=3\)`,
		` container restart ` + p.name + `\.web\.1 \(name=web-1, service=web\)`,
		` container start ` + p.name + `\.web\.1 \(name=web-1, service=web\)`,
	} {
		if !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}` + re + `$`).MatchString(text) {
			t.Errorf("events lacks a line matching %s:\n%s", re, text)
		}
	}
	if logs := p.must("logs", "web"); !strings.Contains(logs, "web-1 | usr1") {
		t.Errorf("web's trap did not see SIGUSR1:\n%s", logs)
	}
	p.downLeavesNothing()
}

// wait blocks until a process of the services named exits and returns
// the first one's exit code; an exit that is over already counts.
func TestWaitReturnsExitCodeOfFirstExit(t *testing.T) {
	t.Parallel()
	exitOn := func(code int) string {
		return `["sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit ` + strconv.Itoa(code) + `"]`
	}
	p := newProject(t, services(service("first", exitOn(4)), service("second", exitOn(5))))
	p.upDetached()
	cmd := p.command("wait", "first", "second")
	waited := make(chan struct{})
	var code int
	var out, errs string
	go func() {
		code, out, errs = runCommand(t, cmd, 2*time.Minute)
		close(waited)
	}()
	p.must("exec", "-T", "second", "touch", "/tmp/go")
	select {
	case <-waited:
	case <-time.After(2 * time.Minute):
		t.Fatal("wait did not return")
	}
	if code != 5 || out != "5\n" {
		t.Errorf("wait first second: exit code %d, stdout %q, want 5 (second's exit); stderr:\n%s", code, out, errs)
	}
	p.waitStatus(map[string]string{"second-1": "exited (5)"})
	if got := statuses(p.ps("-a")); got["first-1"] != "running" {
		t.Errorf("first-1 is %q, want running: wait only waits", got["first-1"])
	}
	// second has exited already: wait returns its code at once.
	if code, out, _ := p.sstack("wait", "second"); code != 5 || out != "5\n" {
		t.Errorf("wait second after its exit: exit code %d, stdout %q, want 5", code, out)
	}
	p.must("exec", "-T", "first", "touch", "/tmp/go")
	if code, out, _ := p.sstack("wait", "first"); code != 4 || out != "4\n" {
		t.Errorf("wait first: exit code %d, stdout %q, want 4", code, out)
	}
	p.downLeavesNothing()
}

// ps --format takes a Go template, as docker compose's: one line per
// replica, {{json .}} one object each, "table TEMPLATE" with a header;
// a template that does not parse is a usage error (exit 2).
func TestPsFormatTemplate(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sh", "-c", "echo up; exec sleep 1000"]`, "scale: 2"),
		service("job", `["sh", "-c", "exit 3"]`),
	))
	p.upDetached()
	p.waitStatus(map[string]string{"web-1": "running", "web-2": "running", "job-1": "exited (3)"})
	if got := p.must("ps", "--format", "{{.Name}}"); got != "web-1\nweb-2\n" {
		t.Errorf("{{.Name}}: %q", got)
	}
	if got := p.must("ps", "-a", "--format", "{{.Service}} {{.State}} {{.ExitCode}}"); !strings.Contains(got, "job exited 3\n") || !strings.Contains(got, "web running 0\n") {
		t.Errorf("{{.Service}} {{.State}} {{.ExitCode}}: %q", got)
	}
	out := p.must("ps", "--format", "{{json .}}")
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r replicaRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("{{json .}}: %v: %q", err, line)
		}
		if r.Status != "running" || r.Instance != p.name+"."+r.Service+"."+strconv.Itoa(r.Replica) {
			t.Errorf("{{json .}}: %+v", r)
		}
		names = append(names, r.Name)
	}
	if strings.Join(names, " ") != "web-1 web-2" {
		t.Errorf("{{json .}}: %q", out)
	}
	table := p.must("ps", "-a", "--format", `table {{.Name}}\t{{.ExitCode}}\t{{.ID}}`)
	if !regexp.MustCompile(`^NAME +EXIT CODE +INSTANCE\njob-1 +3 +` + p.name + `\.job\.1\n`).MatchString(table) {
		t.Errorf("table template:\n%s", table)
	}
	if code, _, errs := p.sstack("ps", "--format", "{{.Name"); code != 2 || !strings.Contains(errs, "--format") {
		t.Errorf("a template that does not parse: exit code %d, want 2\n%s", code, errs)
	}
	p.downLeavesNothing()
}

// After a stack has ended, ps -a still lists its replicas with their last
// state and exit code, as docker lists exited containers, until down; ps
// without -a lists none.
func TestPsAfterStackEnded(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("job", `["sh", "-c", "exit 3"]`),
		service("done", `["true"]`),
	))
	if code, _, errs := p.run(); code != 0 {
		t.Fatalf("up: exit code %d\n%s", code, errs)
	}
	if got := statuses(p.ps("-a")); len(got) != 2 || got["job-1"] != "exited (3)" || got["done-1"] != "exited (0)" {
		t.Errorf("ps -a after the stack ended: %v, want job-1 exited (3) and done-1 exited (0)", got)
	}
	if got := p.ps(); len(got) != 0 {
		t.Errorf("ps after the stack ended: %v, want none", statuses(got))
	}
	if got := p.must("ps", "-a", "--format", "{{.Name}} {{.ExitCode}}"); !strings.Contains(got, "job-1 3\n") {
		t.Errorf("ps -a --format: %q", got)
	}
	p.down()
	if got := p.ps("-a"); len(got) != 0 {
		t.Errorf("ps -a after down: %v, want none", statuses(got))
	}
	p.assertNothingLeft()
}

package main

// A detached stack (`up -d`): the command returns once every service has
// started (with --wait, once those with a healthcheck are healthy, within
// --wait-timeout), and the supervisor goes on in the background, in its
// own session, so that the hangup of the shell that launched it does not
// end it. `down` asks it for the graceful teardown Ctrl-C does and returns
// once it is gone, leaving nothing. A stack that cannot start makes up -d
// exit 1 with the reason and nothing left. `ls` lists the project with its
// supervisor; singularity-stack's deploy/list/rm are aliases of up -d, ls
// and down. Only the user who runs a stack may control it, and a command
// for a project that does not run says so and how to start it.

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sstack/internal/statedir"
	"sstack/internal/testimg"
)

// A db that prints when its stop signal arrives, and a web that depends
// on it.
var dbAndWeb = services(
	service("db", `["sh", "-c", "trap 'echo db got TERM; exit 0' TERM; echo db ready; while true; do sleep 0.1; done"]`, "stop_grace_period: 10s"),
	service("web", `["sh", "-c", "echo web up; exec sleep 1000"]`, `depends_on: ["db"]`),
)

// lsRow is one project of `sstack ls --format json`.
type lsRow struct {
	Name        string   `json:"Name"`
	Status      string   `json:"Status"`
	ConfigFiles []string `json:"ConfigFiles"`
	Pid         int      `json:"Pid"`
	Supervised  bool     `json:"Supervised"`
	Detached    bool     `json:"Detached"`
}

// lsProject is the project's row of `sstack ls --format json`, or nil.
func (p *project) lsProject() *lsRow {
	p.t.Helper()
	out := p.must("ls", "--format", "json")
	var rows []lsRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		p.t.Fatalf("ls --format json: %v:\n%s", err, out)
	}
	for i := range rows {
		if rows[i].Name == p.name {
			return &rows[i]
		}
	}
	return nil
}

// pidGone: no process pid, or only its zombie or its end (a detached
// supervisor is reaped by init, which may take its time).
func pidGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// assertNotRunning checks that ps says the project does not run and how
// to start it.
func assertNotRunning(t *testing.T, p *project) {
	t.Helper()
	if rows := p.ps(); len(rows) != 0 {
		t.Errorf("ps of a stack that is gone: %v, want no replicas", statuses(rows))
	}
	code, out, errs := p.sstack("top")
	if code != 1 {
		t.Errorf("top of a stack that is gone: exit code %d, want 1\n%s%s", code, out, errs)
	}
	contains(t, "top's stderr", errs, `project "`+p.name+`" is not running`, "up -d")
}

// up -d returns once every service has started, with their status lines;
// the services then run with nobody attached. down runs their stop signal
// handlers (db's TERM trap prints, as `logs -f` shows until the stack is
// gone), waits for the supervisor to go and leaves nothing.
func TestDetachedUpThenDownStopsGracefully(t *testing.T) {
	t.Parallel()
	p := newProject(t, dbAndWeb)
	errs := p.upDetached()
	contains(t, "up -d's stderr", errs, "Instance "+p.name+".db.1  Started", "Instance "+p.name+".web.1  Started")
	// Every service has started by the time up -d returns: no waiting.
	if got := statuses(p.ps()); got["db-1"] != "running" || got["web-1"] != "running" {
		t.Errorf("right after up -d, ps shows %v, want db-1 and web-1 running", got)
	}
	sup := p.lsProject()
	if sup == nil || sup.Pid <= 0 {
		t.Fatalf("ls does not show the project with its supervisor: %+v", sup)
	}
	// Follow the logs through the teardown: down removes them after.
	follow := p.command("logs", "-f")
	var followed lockedBuffer
	follow.Stdout, follow.Stderr = &followed, &followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followDone := make(chan struct{})
	go func() { _ = follow.Wait(); close(followDone) }()
	t.Cleanup(func() { _ = follow.Process.Kill(); <-followDone })
	// db's trap is set once it says it is ready.
	eventually(t, time.Minute, "logs -f to show db ready and web up", func() bool {
		return strings.Contains(followed.String(), "db-1  | db ready") && strings.Contains(followed.String(), "web-1 | web up")
	})

	p.down()
	select {
	case <-followDone:
	case <-time.After(time.Minute):
		t.Fatalf("logs -f did not end with the stack:\n%s", followed.String())
	}
	contains(t, "logs -f", followed.String(), "db-1  | db got TERM\n")
	p.assertNothingLeft()
	eventually(t, time.Minute, "the supervisor to be gone", func() bool { return pidGone(sup.Pid) })
	if _, err := os.Stat(filepath.Join(p.stateDir, p.name)); !os.IsNotExist(err) {
		t.Errorf("the project's state directory is left after down (%v)", err)
	}
	assertNotRunning(t, p)
}

// --wait returns only once the service with a healthcheck is healthy.
func TestDetachedWaitReturnsOnceHealthy(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "sleep 1.5; touch /tmp/ready; exec sleep 1000"]`, `healthcheck: {test: ["CMD", "test", "-f", "/tmp/ready"], interval: 200ms, retries: 100}`),
		service("web", `["sleep", "1000"]`),
	))
	p.upDetached("--wait")
	if got := statuses(p.ps()); got["db-1"] != "running (healthy)" || got["web-1"] != "running" {
		t.Errorf("right after up --wait, ps shows %v, want db-1 running (healthy), web-1 running", got)
	}
	p.downLeavesNothing()
}

// --wait-timeout: a service that is not healthy in time makes up exit 1,
// saying so; the stack goes on running, as docker compose's does, until
// down.
func TestDetachedWaitTimeoutLeavesStackRunning(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("db", `["sleep", "1000"]`, `healthcheck: {test: ["CMD", "false"], interval: 200ms, retries: 3, start_period: 5m}`))
	code, _, errs := p.sstack("up", "-d", "--wait", "--wait-timeout", "2")
	if code != 1 {
		t.Errorf("exit code %d, want 1\n%s", code, errs)
	}
	contains(t, "stderr", errs, "--wait-timeout", "what started goes on running", "sstack -n "+p.name+" down")
	if got := statuses(p.ps()); got["db-1"] != "running (starting)" {
		t.Errorf("after the timeout, ps shows %v, want db-1 still running", got)
	}
	p.downLeavesNothing()
	assertNotRunning(t, p)
}

// The hangup of the shell that ran up -d (a logout) goes to its process
// group; the detached stack is not in it and goes on.
func TestDetachedSurvivesHangupOfLaunchingShell(t *testing.T) {
	t.Parallel()
	p := newProject(t, dbAndWeb)
	up := p.command("up", "-d")
	shell := exec.Command("sh", append([]string{"-c", `"$@"; kill -HUP 0`, "sh"}, up.Args...)...)
	shell.Dir, shell.Env = up.Dir, up.Env
	shell.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	_, _, errs := runCommand(t, shell, 2*time.Minute)
	if !strings.Contains(errs, "Instance "+p.name+".web.1  Started") {
		t.Fatalf("up -d did not start the stack:\n%s", errs)
	}
	// The shell's kill has been delivered when it returned; the stack is
	// asked afterwards. A teardown would show the replicas stopping.
	for _, r := range p.ps("-a") {
		if r.State != "running" {
			t.Errorf("after the hangup, %s is %s, want running", r.Name, r.State)
		}
	}
	if got := statuses(p.ps()); got["db-1"] != "running" || got["web-1"] != "running" {
		t.Errorf("after the hangup, ps shows %v, want db-1 and web-1 running", got)
	}
	// The supervisor is in a session of its own, not the shell's.
	sup := p.lsProject()
	if sup == nil || sup.Pid <= 0 {
		t.Fatalf("ls does not show the project with its supervisor: %+v", sup)
	}
	if sid := sessionOf(t, sup.Pid); sid == shell.Process.Pid {
		t.Errorf("the supervisor (pid %d) is in the session of the shell that launched it (%d)", sup.Pid, sid)
	}
	p.downLeavesNothing()
}

// sessionOf is the session id of process pid, from /proc/PID/stat.
func sessionOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state ppid pgrp session ...
	if len(f) < 4 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return sid
}

// up -d of a stack that cannot all start exits 1 and says why; what
// started goes on running, as docker compose up -d leaves its containers,
// and ps -a shows what did not; down ends it.
func TestDetachedBrokenStackExitsOneAndLeavesWhatStarted(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		want    []string          // in up -d's stderr
		ps      map[string]string // ps -a afterwards
	}{
		{"command that does not exist", services(
			service("ok", `["sleep", "1000"]`),
			service("broken", `["/no/such/program"]`),
		), []string{"broken-1", "/no/such/program"}, map[string]string{"ok-1": "running"}},
		{"failed dependency", services(
			service("migrate", `["sh", "-c", "echo migration failed; exit 1"]`),
			service("app", `["sleep", "1000"]`, "depends_on: {migrate: {condition: service_completed_successfully}}"),
			service("other", `["sleep", "1000"]`),
		), []string{`app-1 cannot start: dependency "migrate" did not complete successfully: exit 1`}, map[string]string{"migrate-1": "exited (1)", "app-1": "failed", "other-1": "running"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, tc.compose)
			code, _, errs := p.sstack("up", "-d")
			if code != 1 {
				t.Errorf("exit code %d, want 1\n%s", code, errs)
			}
			contains(t, "stderr", errs, append(tc.want, "what started goes on running")...)
			p.waitStatus(tc.ps)
			p.downLeavesNothing()
			assertNotRunning(t, p)
		})
	}
}

// `ls` lists a running project with its status, its supervisor (pid,
// detached or not) and its compose file.
func TestLsShowsProjectWithSupervisor(t *testing.T) {
	t.Parallel()
	p := newProject(t, dbAndWeb)
	p.upDetached()
	row := p.lsProject()
	if row == nil {
		t.Fatalf("ls --format json lacks project %s", p.name)
	}
	if row.Status != "running(2)" || !row.Supervised || !row.Detached || row.Pid <= 0 {
		t.Errorf("ls row %+v, want status running(2), supervised and detached, with a pid", row)
	}
	compose := filepath.Join(p.dir, "docker-compose.yml")
	if len(row.ConfigFiles) != 1 || row.ConfigFiles[0] != compose {
		t.Errorf("ls config files %v, want [%s]", row.ConfigFiles, compose)
	}
	// The pid is the detached supervisor's: an sstack up -d of this project.
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(row.Pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), p.name) || !strings.Contains(string(cmdline), "up") {
		t.Errorf("pid %d of ls is not the project's supervisor: %q (%v)", row.Pid, cmdline, err)
	}
	table := p.must("ls")
	re := regexp.MustCompile(`(?m)^` + p.name + ` +running\(2\) +pid ` + strconv.Itoa(row.Pid) + ` \(detached\) +` + regexp.QuoteMeta(compose) + `$`)
	if !re.MatchString(table) {
		t.Errorf("ls table lacks %s running(2) with its detached supervisor and compose file:\n%s", p.name, table)
	}
	if q := p.must("ls", "-q"); !regexp.MustCompile(`(?m)^` + p.name + `$`).MatchString(q) {
		t.Errorf("ls -q lacks %s:\n%s", p.name, q)
	}
	p.downLeavesNothing()
	if row := p.lsProject(); row != nil {
		t.Errorf("ls still lists %s after down: %+v", p.name, row)
	}
}

// singularity-stack's commands: deploy -c FILE NAME starts the stack
// detached, list lists it, rm NAME takes it down; run from another
// directory, with a compose file that has no default name.
func TestDeployListRmAliases(t *testing.T) {
	t.Parallel()
	p := newProject(t, "")
	file := p.write("stack.yml", strings.ReplaceAll(dbAndWeb, busyboxImage, "image: "+testimg.Busybox(t)+"\n"))
	alias := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(sstackBin, args...)
		cmd.Dir, cmd.Env = t.TempDir(), p.env
		code, out, errs := runCommand(t, cmd, 2*time.Minute)
		if code == -1 {
			t.Fatalf("sstack %s: %s", strings.Join(args, " "), errs)
		}
		return code, out, errs
	}
	if code, _, errs := alias("deploy", "--metrics-addr", "", "-c", file, p.name); code != 0 {
		t.Fatalf("deploy: exit code %d\n%s", code, errs)
	}
	if got := statuses(p.ps()); got["db-1"] != "running" || got["web-1"] != "running" {
		t.Errorf("after deploy, ps shows %v, want db-1 and web-1 running", got)
	}
	_, out, _ := alias("list")
	if !regexp.MustCompile(`(?m)^` + p.name + ` +running\(2\) +pid [0-9]+ \(detached\) +` + regexp.QuoteMeta(file) + `$`).MatchString(out) {
		t.Errorf("list lacks %s running(2), detached, from %s:\n%s", p.name, file, out)
	}
	if code, _, errs := alias("rm", p.name); code != 0 {
		t.Fatalf("rm: exit code %d\n%s", code, errs)
	}
	p.assertNothingLeft()
	if _, out, _ := alias("list"); strings.Contains(out, p.name) {
		t.Errorf("list still shows %s after rm:\n%s", p.name, out)
	}
}

// Another user is refused, with a message that says who may control the
// stack: when the state directory is closed to them, and when its modes
// are opened (the server checks each peer's uid).
func TestOtherUserIsRefused(t *testing.T) {
	t.Parallel()
	const nobody = 65534
	p := newProject(t, dbAndWeb)
	p.upDetached()
	// The other user may reach the parent of the state directory (as
	// another user's home), not the state directory itself (sstack keeps
	// it 0700), and runs a copy of sstack.
	if err := os.Chmod(filepath.Dir(p.stateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	binDir, err := os.MkdirTemp("", "sstack-other-user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	bin := filepath.Join(binDir, "sstack")
	if err := copyFile(sstackBin, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(what string) {
		t.Helper()
		cmd := exec.Command(bin, "-n", p.name, "ps")
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "SSTACK_STATE_DIR=" + p.stateDir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		code, out, errs := runCommand(t, cmd, time.Minute)
		if code != 1 {
			t.Errorf("%s: ps as uid %d: exit code %d, want 1\n%s%s", what, nobody, code, out, errs)
		}
		if !strings.Contains(errs, "only that user may control it") || !strings.Contains(errs, "root") {
			t.Errorf("%s: ps as uid %d does not say that only root may control the stack:\n%s", what, nobody, errs)
		}
	}
	asNobody("state directory closed")
	// Opened to everyone, the socket still answers only its owner.
	for _, d := range []string{p.stateDir, filepath.Join(p.stateDir, p.name)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(statedir.Socket(filepath.Join(p.stateDir, p.name)), 0o777); err != nil {
		t.Fatal(err)
	}
	asNobody("socket open to all")
	// The owner is not disturbed.
	if got := statuses(p.ps()); got["db-1"] != "running" || got["web-1"] != "running" {
		t.Errorf("ps of the owner shows %v, want db-1 and web-1 running", got)
	}
	p.downLeavesNothing()
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Every command that needs a running stack, given a project that does not
// run, says so and how to start it, and exits 1. ps and ls, which only
// look, show nothing (a table's header) and exit 0, as docker compose's.
func TestCommandsAgainstProjectNotRunning(t *testing.T) {
	t.Parallel()
	p := newProject(t, dbAndWeb)
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"ps"}, "header"},
		{[]string{"ps", "-a"}, "header"},
		{[]string{"ps", "-a", "--format", "json"}, "[]\n"},
		{[]string{"ps", "-q"}, ""},
		{[]string{"ps", "--services"}, ""},
		{[]string{"ps", "--format", "{{.Name}}"}, ""},
		{[]string{"ls", "-q"}, ""},
	} {
		code, out, errs := p.sstack(c.args...)
		if c.args[0] == "ls" {
			// Other tests' projects may run: only this one must be absent.
			out = strings.Join(slices.DeleteFunc(strings.Split(out, "\n"), func(l string) bool { return l != p.name }), "")
		}
		if c.out == "header" && strings.HasPrefix(out, "NAME   SERVICE   STATUS") && strings.Count(out, "\n") == 1 {
			out = c.out // the table's header alone
		}
		if code != 0 || out != c.out {
			t.Errorf("%s: exit code %d, stdout %q, want 0 and %q\n%s", strings.Join(c.args, " "), code, out, c.out, errs)
		}
	}
	for _, args := range [][]string{
		{"exec", "-T", "web", "true"}, {"stop"}, {"start"}, {"restart"}, {"kill"},
		{"scale", "web=2"}, {"events"}, {"wait", "web"}, {"top"},
	} {
		code, out, errs := p.sstack(args...)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		if !strings.Contains(errs, `project "`+p.name+`" is not running`) || !strings.Contains(errs, "sstack up -d -n "+p.name) {
			t.Errorf("%s: stderr does not say that the project does not run and how to start it:\n%s", strings.Join(args, " "), errs)
		}
	}
	p.assertNothingLeft()
}

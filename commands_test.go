package main

// Operating the services of a running stack: stop holds a service against
// its restart policy until start; restart runs it again and its
// depends_on restart: true dependents follow; kill sends a signal to the
// process itself; scale adds and removes replicas live, and up --scale
// starts with as many; up SERVICE starts that service and its
// dependencies, --no-deps that service alone. A service name that is not
// in the project is refused with the list of those that are.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// stays checks that cond holds for the whole of d: what a restart policy
// would undo within its first delay (100ms) has long been undone by then.
func stays(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if !cond() {
			t.Errorf("%s no longer holds", what)
			return
		}
	}
}

// serviceInstances are the Apptainer instances of a project's service.
func serviceInstances(t *testing.T, p *project, service string) []string {
	var out []string
	for _, name := range instances(t, p.name) {
		if strings.HasPrefix(name, p.name+"."+service+".") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// stop runs web's stop signal handler and removes its instance; restart:
// always does not bring it back, ps -a shows it stopped, and start does.
func TestStopHoldsServiceUntilStart(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sh", "-c", "trap 'echo web got TERM; exit 0' TERM; echo web up; while true; do sleep 0.1; done"]`, "restart: always"),
		service("db", `["sleep", "1000"]`),
	))
	p.upDetached()
	p.waitLogs("web-1 | web up")
	p.must("stop", "web")
	// stop returns once web has stopped.
	if got := statuses(p.ps("-a")); got["web-1"] != "stopped" || got["db-1"] != "running" {
		t.Errorf("after stop web, ps -a shows %v, want web-1 stopped, db-1 running", got)
	}
	if got := statuses(p.ps()); got["web-1"] != "" {
		t.Errorf("ps without -a shows the stopped web-1: %v", got)
	}
	if got := serviceInstances(t, p, "web"); len(got) != 0 {
		t.Errorf("web's instance is left after stop: %v", got)
	}
	stays(t, 2*time.Second, "web-1 stopped", func() bool { return statuses(p.ps("-a"))["web-1"] == "stopped" })
	if logs := p.must("logs", "web"); !strings.Contains(logs, "web-1 | web got TERM") {
		t.Errorf("web's stop signal handler did not run:\n%s", logs)
	}

	p.must("start", "web")
	if got := statuses(p.ps()); got["web-1"] != "running" {
		t.Errorf("after start web, ps shows %v, want web-1 running", got)
	}
	if got := serviceInstances(t, p, "web"); len(got) != 1 {
		t.Errorf("web's instances after start: %v, want one", got)
	}
	eventually(t, time.Minute, "web's second run in the logs", func() bool {
		return countLines(p.must("logs", "web"), "web-1", "web up") == 2
	})
	p.downLeavesNothing()
}

// dbRuns says "db run" at each start; webFollowsDB says "web run" and
// follows db's restarts (depends_on with restart: true).
var (
	dbRuns       = service("db", `["sh", "-c", "echo db run; exec sleep 1000"]`)
	webFollowsDB = service("web", `["sh", "-c", "echo web run; exec sleep 1000"]`, "depends_on: {db: {condition: service_started, restart: true}}")
)

// restart runs db's process again; web, which depends on it with
// restart: true, follows; api, which depends on it without, does not.
func TestRestartRestartsDependentsThatFollow(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		dbRuns, webFollowsDB,
		service("api", `["sh", "-c", "echo api run; exec sleep 1000"]`, "depends_on: {db: {condition: service_started}}"),
	))
	p.upDetached()
	p.waitLogs("db-1  | db run", "web-1 | web run", "api-1 | api run")
	before := p.ps()
	p.must("restart", "db")
	runs := func(service string) int {
		return countLines(p.must("logs", service), service+"-1", service+" run")
	}
	eventually(t, time.Minute, "db and web to run again", func() bool { return runs("db") == 2 && runs("web") == 2 })
	after := p.waitRunning("db-1", "web-1", "api-1")
	for _, name := range []string{"db-1", "web-1"} {
		if row(after, name).Pid == row(before, name).Pid {
			t.Errorf("%s has the same process (pid %d) after the restart", name, row(after, name).Pid)
		}
	}
	if n := runs("api"); n != 1 || row(after, "api-1").Pid != row(before, "api-1").Pid {
		t.Errorf("api, which does not follow db's restarts, was restarted (%d runs)", n)
	}
	p.downLeavesNothing()
}

// kill -s SIGUSR1 reaches the service's process, which handles it and
// goes on running; kill (SIGKILL) ends it.
func TestKillSendsSignalToProcess(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("web", `["sh", "-c", "trap 'echo got USR1' USR1; echo web up; while true; do sleep 0.1; done"]`))
	p.upDetached()
	p.waitLogs("web-1 | web up")
	before := row(p.ps(), "web-1")
	p.must("kill", "-s", "SIGUSR1", "web")
	eventually(t, time.Minute, "web's trap to print", func() bool {
		return strings.Contains(p.must("logs", "web"), "web-1 | got USR1")
	})
	after := row(p.ps(), "web-1")
	if after == nil || after.Status != "running" || after.Pid != before.Pid || after.Restarts != 0 {
		t.Errorf("after SIGUSR1, web-1 is %+v, want the same process (pid %d) running", after, before.Pid)
	}
	p.must("kill", "web")
	p.waitStatus(map[string]string{"web-1": "exited (137)"})
	p.downLeavesNothing()
}

// scale web=3 adds two replicas with their own instances; scale web=1
// takes them away again, instances and ps rows; singularity-stack's
// `scale SERVICE N` does the same.
func TestScaleAddsAndRemovesReplicas(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sleep", "1000"]`),
		service("db", `["sleep", "1000"]`),
	))
	p.upDetached()
	p.must("scale", "web=3")
	want := []string{p.name + ".web.1", p.name + ".web.2", p.name + ".web.3"}
	if got := serviceInstances(t, p, "web"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("instances after scale web=3: %v, want %v", got, want)
	}
	if got := statuses(p.ps("web")); len(got) != 3 || got["web-1"] != "running" || got["web-2"] != "running" || got["web-3"] != "running" {
		t.Errorf("ps web after scale web=3: %v, want web-1..3 running", got)
	}
	p.must("scale", "web=1")
	if got := serviceInstances(t, p, "web"); len(got) != 1 || got[0] != p.name+".web.1" {
		t.Errorf("instances after scale web=1: %v, want only %s.web.1", got, p.name)
	}
	if got := statuses(p.ps("-a", "web")); len(got) != 1 || got["web-1"] != "running" {
		t.Errorf("ps -a web after scale web=1: %v, want one row, web-1 running", got)
	}
	p.must("scale", "web", "2")
	if got := statuses(p.ps("web")); len(got) != 2 || got["web-2"] != "running" {
		t.Errorf("ps web after scale web 2: %v, want web-1 and web-2 running", got)
	}
	if got := statuses(p.ps("db")); len(got) != 1 || got["db-1"] != "running" {
		t.Errorf("db after scaling web: %v, want db-1 alone, running", got)
	}
	p.downLeavesNothing()
}

// up --scale web=2 starts web with two replicas.
func TestUpScaleStartsReplicas(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("web", `["sleep", "1000"]`))
	p.upDetached("--scale", "web=2")
	if got := statuses(p.ps()); len(got) != 2 || got["web-1"] != "running" || got["web-2"] != "running" {
		t.Errorf("ps after up --scale web=2: %v, want web-1 and web-2 running", got)
	}
	if got := serviceInstances(t, p, "web"); len(got) != 2 {
		t.Errorf("instances after up --scale web=2: %v, want two", got)
	}
	p.downLeavesNothing()
}

// A stack where web depends on db, and cache on nothing.
var webDbCache = services(
	service("db", `["sleep", "1000"]`),
	service("web", `["sleep", "1000"]`, `depends_on: ["db"]`),
	service("cache", `["sleep", "1000"]`),
)

// names are the replicas ps -a lists, sorted.
func names(rows []replicaRow) string {
	var n []string
	for _, r := range rows {
		n = append(n, r.Name)
	}
	sort.Strings(n)
	return strings.Join(n, " ")
}

// up SERVICE starts the service and its dependencies, nothing else;
// --no-deps only the service.
func TestUpServiceStartsItsDependenciesOnly(t *testing.T) {
	t.Parallel()
	t.Run("with dependencies", func(t *testing.T) {
		t.Parallel()
		p := newProject(t, webDbCache)
		p.upDetached("web")
		if got := names(p.ps("-a")); got != "db-1 web-1" {
			t.Errorf("ps -a after up web: %s, want db-1 web-1", got)
		}
		if got := serviceInstances(t, p, "cache"); len(got) != 0 {
			t.Errorf("cache was started: %v", got)
		}
		p.downLeavesNothing()
	})
	t.Run("no deps", func(t *testing.T) {
		t.Parallel()
		p := newProject(t, webDbCache)
		p.upDetached("--no-deps", "web")
		if got := names(p.ps("-a")); got != "web-1" {
			t.Errorf("ps -a after up --no-deps web: %s, want web-1", got)
		}
		if got := statuses(p.ps()); got["web-1"] != "running" {
			t.Errorf("web-1 is %q, want running: --no-deps does not wait for db", got["web-1"])
		}
		if got := serviceInstances(t, p, "db"); len(got) != 0 {
			t.Errorf("db was started: %v", got)
		}
		p.downLeavesNothing()
	})
}

// up SERVICE against a running stack starts that service (and its
// dependencies unless --no-deps) in it, as docker compose up does for a
// project that runs.
func TestUpServiceJoinsRunningStack(t *testing.T) {
	t.Parallel()
	p := newProject(t, webDbCache)
	p.upDetached("cache")
	if got := names(p.ps("-a")); got != "cache-1" {
		t.Fatalf("ps -a after up cache: %s, want cache-1", got)
	}
	cachePid := row(p.ps(), "cache-1").Pid
	if code, _, errs := p.sstack("up", "-d", "--no-deps", "web"); code != 0 {
		t.Errorf("up -d --no-deps web on the running stack: exit code %d\n%s", code, errs)
	}
	if got := names(p.ps("-a")); got != "cache-1 web-1" {
		t.Errorf("ps -a after up --no-deps web: %s, want cache-1 web-1", got)
	}
	if code, _, errs := p.sstack("up", "-d", "web"); code != 0 {
		t.Errorf("up -d web on the running stack: exit code %d\n%s", code, errs)
	}
	rows := p.ps()
	if got := statuses(rows); len(got) != 3 || got["db-1"] != "running" || got["web-1"] != "running" || got["cache-1"] != "running" {
		t.Errorf("ps after up web: %v, want db-1, web-1 and cache-1 running", got)
	}
	if r := row(rows, "cache-1"); r == nil || r.Pid != cachePid {
		t.Errorf("cache-1 was restarted by up web: %+v, was pid %d", r, cachePid)
	}
	if ls := p.lsProject(); ls == nil || !ls.Detached {
		t.Errorf("the project is not run by its one detached supervisor any more: %+v", ls)
	}
	p.downLeavesNothing()
}

// A service name that is not in the project is refused by every command
// that takes one, with the names of those that are; nothing changes.
func TestUnknownServiceListsKnownOnes(t *testing.T) {
	t.Parallel()
	p := newProject(t, webDbCache)
	p.upDetached()
	for _, args := range [][]string{
		{"ps", "nosuch"}, {"exec", "-T", "nosuch", "true"}, {"stop", "nosuch"}, {"start", "nosuch"},
		{"restart", "nosuch"}, {"kill", "nosuch"}, {"scale", "nosuch=2"}, {"events", "nosuch"},
		{"wait", "nosuch"}, {"top", "nosuch"}, {"up", "-d", "nosuch"},
	} {
		what := strings.Join(args, " ")
		code, _, errs := p.sstack(args...)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1\n%s", what, code, errs)
		}
		if !regexp.MustCompile(`nosuch\b.*\bcache, db, web\b`).MatchString(errs) {
			t.Errorf("%s: stderr does not name nosuch and list cache, db, web:\n%s", what, errs)
		}
	}
	if got := statuses(p.ps()); len(got) != 3 {
		t.Errorf("after the refused commands ps shows %v, want the three services running", got)
	}
	p.downLeavesNothing()
}

// An invalid project name is reported with the flag the user gave it with
// (-n, -p, --project-name, --project; NAME for rm), both where the compose
// file is loaded (config) and where only the name is needed (ps).
func TestInvalidProjectNameNamesTheFlagGiven(t *testing.T) {
	integration(t)
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  a:\n    image: ./a.sif\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "My App", "config", "-q"}, `-n "My App": invalid project name`},
		{[]string{"config", "-q", "--project-name=My App"}, `--project-name "My App": invalid project name`},
		{[]string{"-p", "My App", "config", "-q"}, `-p "My App": invalid project name`},
		{[]string{"-n", "a.b", "ps"}, `-n "a.b": not a project name`},
		{[]string{"ps", "-p", "a.b"}, `-p "a.b": not a project name`},
		{[]string{"--project", "a.b", "ps"}, `--project "a.b": not a project name`},
		{[]string{"rm", "a.b"}, `NAME "a.b": not a project name`},
	} {
		cmd := exec.Command(sstackBin, c.args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SSTACK_STATE_DIR="+t.TempDir())
		code, _, errs := runCommand(t, cmd, time.Minute)
		if code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("sstack %s: exit code %d, want 1 and %q:\n%s", strings.Join(c.args, " "), code, c.want, errs)
		}
	}
}

// restart returns once the service runs again, as docker compose's does:
// ps right after it shows the new process running, not restarting, for
// the service and for a dependent that follows it (restart: true), here
// one that takes a second to stop.
func TestRestartReturnsOnceRunningAgain(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "trap 'exit 0' TERM; echo db run; while true; do sleep 0.1; done"]`),
		service("web", `["sh", "-c", "trap 'sleep 1; exit 0' TERM; echo web run; while true; do sleep 0.1; done"]`, "depends_on: {db: {condition: service_started, restart: true}}"),
	))
	p.upDetached()
	p.waitLogs("db-1  | db run", "web-1 | web run")
	for i := 0; i < 3; i++ {
		before := p.ps()
		p.must("restart", "db")
		after := p.ps()
		for _, name := range []string{"db-1", "web-1"} {
			if r := row(after, name); r == nil || r.Status != "running" || r.Pid == row(before, name).Pid {
				t.Errorf("restart %d: right after restart returned, %s is %+v, want running with a new process (was pid %d)", i+1, name, r, row(before, name).Pid)
			}
		}
	}
	p.downLeavesNothing()
}

// Naming a service on the command line enables the profiles it is in, as
// docker compose does: up -d debug starts it (and only what it needs),
// build debug and pull debug know it.
func TestNamingServiceEnablesItsProfiles(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["sleep", "1000"]`),
		service("debug", `["sleep", "1000"]`, `profiles: ["dev"]`),
	))
	p.upDetached("debug")
	if got := statuses(p.ps()); len(got) != 1 || got["debug-1"] != "running" {
		t.Errorf("up -d debug: ps shows %v, want debug-1 running alone", got)
	}
	p.down()
	for _, args := range [][]string{{"pull", "debug"}, {"build", "debug"}, {"config", "-q"}} {
		if code, _, errs := p.sstack(args...); code != 0 {
			t.Errorf("%s: exit code %d\n%s", strings.Join(args, " "), code, errs)
		}
	}
	p.assertNothingLeft()
}

// up SERVICE checks and prepares only that service and its dependencies,
// as docker compose creates only their containers: another service's
// missing bind source does not stop it, and the bind sources of services
// not started are not created until they start. Starting such a service
// later reports its problem then.
func TestUpServiceChecksAndPreparesOnlySelection(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("a", `["sleep", "1000"]`, `volumes: ["./adata:/data"]`),
		service("broken", `["sleep", "1000"]`, "volumes: [{type: bind, source: ./missing, target: /m, bind: {create_host_path: false}}]"),
		service("later", `["sh", "-c", "ls -d /data && exec sleep 1000"]`, `volumes: ["./laterdata:/data"]`),
	))
	p.upDetached("a")
	if got := statuses(p.ps()); len(got) != 1 || got["a-1"] != "running" {
		t.Errorf("up -d a: ps shows %v, want a-1 running alone", got)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "adata")); err != nil {
		t.Errorf("a's bind source was not created: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "laterdata")); err == nil {
		t.Error("the bind source of a service not started was created")
	}
	code, _, errs := p.sstack("up", "-d", "broken")
	if code != 1 || !strings.Contains(errs, `service "broken": volumes: bind source ./missing`) {
		t.Errorf("up -d broken: exit code %d, want 1 and the missing bind source\n%s", code, errs)
	}
	p.upDetached("later")
	p.waitLogs("later-1 | /data")
	if _, err := os.Stat(filepath.Join(p.dir, "laterdata")); err != nil {
		t.Errorf("later's bind source was not created when it started: %v", err)
	}
	if code, _, errs := p.sstack("config", "-q"); code != 1 || !strings.Contains(errs, "./missing") {
		t.Errorf("config of the whole file: exit code %d, want 1\n%s", code, errs)
	}
	p.downLeavesNothing()
}

// restart --no-deps restarts the service alone: a dependent that follows
// its restarts (restart: true) keeps its process.
func TestRestartNoDeps(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		dbRuns, webFollowsDB,
	))
	p.upDetached()
	p.waitLogs("db-1  | db run", "web-1 | web run")
	before := p.ps()
	p.must("restart", "--no-deps", "db")
	stays(t, 2*time.Second, "web's process", func() bool {
		r := row(p.ps(), "web-1")
		return r != nil && r.Pid == row(before, "web-1").Pid && r.Status == "running"
	})
	if r := row(p.ps(), "db-1"); r == nil || r.Pid == row(before, "db-1").Pid || r.Status != "running" {
		t.Errorf("db after restart --no-deps: %+v, want running with a new process", r)
	}
	p.downLeavesNothing()
}

// start --wait returns once the service is healthy, as docker compose's.
func TestStartWaitReturnsOnceHealthy(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("db", `["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 1000"]`,
		"healthcheck:", "  test: [\"CMD\", \"test\", \"-f\", \"/tmp/ok\"]", "  interval: 200ms", "  start_period: 30s"))
	p.upDetached("--wait")
	p.must("stop", "db")
	p.must("start", "--wait", "db")
	if got := statuses(p.ps()); got["db-1"] != "running (healthy)" {
		t.Errorf("right after start --wait, ps shows %v, want db-1 running (healthy)", got)
	}
	p.must("stop", "db")
	if code, _, errs := p.sstack("start", "--wait-timeout", "1", "db"); code != 1 || !strings.Contains(errs, "--wait-timeout 1s") {
		t.Errorf("start --wait-timeout 1 of a service healthy after 1s+: exit code %d\n%s", code, errs)
	}
	p.downLeavesNothing()
}

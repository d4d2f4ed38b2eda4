package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
	"sstack/internal/logformat"
	"sstack/internal/testutil"
)

// fakeStack is an api.Stack that records what the CLI asks of it: the
// commands' flags and arguments become the contract's options, tested
// without a supervisor (the integration tests run the real one).
type fakeStack struct {
	calls []any
	rows  []api.Replica
	code  int // what Wait returns
	tops  []api.TopReplica
	lines []api.LogLine // what Logs gives, after registering their names
	info  api.ProjectInfo
	err   error
}

func (f *fakeStack) record(opts any) error { f.calls = append(f.calls, opts); return f.err }

func (f *fakeStack) Info(context.Context) (api.ProjectInfo, error) {
	info := f.info
	info.Name = "proj"
	return info, f.err
}
func (f *fakeStack) Ps(_ context.Context, o api.PsOptions) ([]api.Replica, error) {
	return f.rows, f.record(o)
}
func (f *fakeStack) Up(_ context.Context, o api.UpOptions) error           { return f.record(o) }
func (f *fakeStack) Stop(_ context.Context, o api.StopOptions) error       { return f.record(o) }
func (f *fakeStack) Start(_ context.Context, o api.StartOptions) error     { return f.record(o) }
func (f *fakeStack) Restart(_ context.Context, o api.RestartOptions) error { return f.record(o) }
func (f *fakeStack) Kill(_ context.Context, o api.KillOptions) error       { return f.record(o) }
func (f *fakeStack) Scale(_ context.Context, o api.ScaleOptions) error     { return f.record(o) }
func (f *fakeStack) Events(_ context.Context, o api.EventsOptions, fn func(api.Event) error) error {
	return f.record(o)
}
func (f *fakeStack) Wait(_ context.Context, o api.WaitOptions) (int, error) {
	return f.code, f.record(o)
}
func (f *fakeStack) Top(_ context.Context, o api.TopOptions) ([]api.TopReplica, error) {
	return f.tops, f.record(o)
}
func (f *fakeStack) Stats(_ context.Context, o api.StatsOptions) ([]api.ReplicaStats, error) {
	return nil, f.record(o)
}
func (f *fakeStack) ExecTarget(_ context.Context, o api.ExecOptions) (api.ExecTarget, error) {
	return api.ExecTarget{}, f.record(o)
}
func (f *fakeStack) Down(_ context.Context, o api.DownOptions) error { return f.record(o) }
func (f *fakeStack) Logs(_ context.Context, o api.LogsOptions, c api.LogConsumer) error {
	for _, l := range f.lines {
		c.Register(l.Name)
	}
	for _, l := range f.lines {
		c.Log(l)
	}
	if o.Follow {
		c.Status("", api.LogsStopped)
	}
	return f.record(o)
}

// runFake runs the command line against st (nil: no supervisor runs) and
// returns the exit code and output.
func runFake(t *testing.T, st *fakeStack, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	var out, errs bytes.Buffer
	o := &options{stdout: &out, stderr: &errs, dial: func(string) (api.Stack, func(), error) {
		if st == nil {
			return nil, nil, api.ErrNotRunning
		}
		return st, func() {}, nil
	}}
	code := execute(o, append([]string{"-n", "proj"}, args...))
	return code, out.String(), errs.String()
}

func seconds(n int) *time.Duration { d := time.Duration(n) * time.Second; return &d }

// Each command's flags and arguments reach the contract as docker
// compose's would.
func TestCommandsAskTheContract(t *testing.T) {
	for _, c := range []struct {
		args []string
		want any
	}{
		{[]string{"stop", "web", "db"}, api.StopOptions{Services: []string{"web", "db"}}},
		{[]string{"stop", "-t", "5", "web"}, api.StopOptions{Services: []string{"web"}, Timeout: seconds(5)}},
		{[]string{"start", "web"}, api.StartOptions{Services: []string{"web"}}},
		{[]string{"start", "--wait", "web"}, api.StartOptions{Services: []string{"web"}, Wait: true}},
		{[]string{"restart", "--no-deps", "-t", "3", "web"}, api.RestartOptions{Services: []string{"web"}, Timeout: seconds(3), NoDeps: true}},
		{[]string{"kill", "-s", "SIGHUP", "web"}, api.KillOptions{Services: []string{"web"}, Signal: "SIGHUP"}},
		{[]string{"scale", "web=3", "db=0"}, api.ScaleOptions{Replicas: map[string]int{"web": 3, "db": 0}}},
		{[]string{"scale", "web", "2"}, api.ScaleOptions{Replicas: map[string]int{"web": 2}}},
		{[]string{"top", "web"}, api.TopOptions{Services: []string{"web"}}},
		{[]string{"ps", "-a", "web"}, api.PsOptions{All: true, Services: []string{"web"}}},
	} {
		st := &fakeStack{}
		code, _, errs := runFake(t, st, c.args...)
		if code != 0 {
			t.Errorf("%v: exit code %d: %s", c.args, code, errs)
			continue
		}
		if len(st.calls) != 1 || !reflect.DeepEqual(st.calls[0], c.want) {
			t.Errorf("%v: asked %#v, want %#v", c.args, st.calls, c.want)
		}
	}
}

// A command line the contract is not asked about: usage errors exit 2.
func TestBadCommandLinesAskNothing(t *testing.T) {
	for _, args := range [][]string{
		{"scale", "web=-1"},
		{"scale", "web"},
		{"stop", "--no-such-flag"},
		{"stats", "--format", "yaml"},
		{"ls", "--format", "xml"},
		{"images", "--format", "xml"},
		{"config", "--format", "table"},
	} {
		st := &fakeStack{}
		if code, _, _ := runFake(t, st, args...); code != 2 || len(st.calls) != 0 {
			t.Errorf("%v: exit code %d, calls %v; want 2 and none", args, code, st.calls)
		}
	}
}

// wait returns the exit code the stack gives; an error of the stack
// exits 1 with it.
func TestWaitAndErrorsFromTheContract(t *testing.T) {
	if code, _, _ := runFake(t, &fakeStack{code: 7}, "wait", "job"); code != 7 {
		t.Errorf("wait: exit code %d, want 7", code)
	}
	st := &fakeStack{err: fmt.Errorf("stopping: %w", &api.NoServiceError{Name: "wbe", Known: []string{"web"}})}
	code, _, errs := runFake(t, st, "stop", "wbe")
	if code != 1 || !strings.Contains(errs, "no such service: wbe (services: web)") {
		t.Errorf("stop of an unknown service: %d %q", code, errs)
	}
}

// ps prints the contract's rows as docker compose does.
func TestPsPrintsTheRows(t *testing.T) {
	rows := []api.Replica{
		{Project: "proj", Service: "web", Replica: 1, Name: "web-1", Instance: "proj.web.1", State: api.StateRunning, Health: api.HealthHealthy},
		{Project: "proj", Service: "db", Replica: 1, Name: "db-1", Instance: "proj.db.1", State: api.StateExited, ExitCode: 3},
	}
	_, out, _ := runFake(t, &fakeStack{rows: rows}, "ps", "--format", "{{.Name}} {{.Service}}")
	if out != "web-1 web\ndb-1 db\n" {
		t.Errorf("ps --format template: %q", out)
	}
	_, out, _ = runFake(t, &fakeStack{rows: rows}, "ps", "--format", "json")
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 || got[0]["Name"] != "web-1" {
		t.Errorf("ps --format json: %v %q", err, out)
	}
}

// Without a supervisor, a command that needs one says so and how to
// start it; nothing is asked.
func TestNotRunningSaysHowToStart(t *testing.T) {
	code, _, errs := runFake(t, nil, "stop", "web")
	if code != 1 || !strings.Contains(errs, `project "proj" is not running`) || !strings.Contains(errs, "sstack up -d -n proj") {
		t.Errorf("stop without a supervisor: %d %q", code, errs)
	}
	if !errors.Is(notRunning("proj"), api.ErrNotRunning) {
		t.Error("the not-running error loses api.ErrNotRunning")
	}
}

// logs asks the contract with its flags and prints the lines it is given
// as docker compose logs does: prefixes padded to the longest name.
func TestLogsAsksTheContractAndPrints(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &fakeStack{lines: []api.LogLine{
		{Service: "web", Replica: 1, Name: "web-1", Stream: "stdout", Time: t0, Text: []byte("hello")},
		{Service: "db", Replica: 12, Name: "db-12", Stream: "stderr", Time: t0, Text: []byte("oops")},
	}}
	code, out, errs := runFake(t, st, "logs", "--tail", "5", "-f", "--index", "2", "-i", "a", "--stdout", "web")
	if code != 0 {
		t.Fatalf("logs: exit code %d: %s", code, errs)
	}
	want := api.LogsOptions{Services: []string{"web"}, Tail: "5", Follow: true, Index: 2, Include: []string{"a"}, Stdout: true}
	if len(st.calls) != 1 || !reflect.DeepEqual(st.calls[0], want) {
		t.Errorf("logs asked %#v, want %#v", st.calls, want)
	}
	if out != "web-1 | hello\ndb-12 | oops\n" {
		t.Errorf("logs printed %q", out)
	}
	_, out, _ = runFake(t, &fakeStack{lines: st.lines}, "logs", "--no-log-prefix")
	if out != "hello\noops\n" {
		t.Errorf("logs --no-log-prefix printed %q", out)
	}
	st = &fakeStack{err: errors.New("no logs for service \"x\" in project \"proj\"")}
	if code, _, errs := runFake(t, st, "logs", "x"); code != 1 || !strings.Contains(errs, `no logs for service "x"`) {
		t.Errorf("logs of an unknown service: %d %q", code, errs)
	}
}

// down asks the contract for the whole teardown with -v and -t; with a
// supervisor it says it waits for it.
func TestDownAsksTheContract(t *testing.T) {
	st := &fakeStack{info: api.ProjectInfo{Supervised: true, Pid: 42}}
	code, _, errs := runFake(t, st, "down", "-v", "-t", "3")
	if code != 0 {
		t.Fatalf("down: exit code %d: %s", code, errs)
	}
	want := api.DownOptions{Volumes: true, Timeout: seconds(3)}
	if len(st.calls) != 1 || !reflect.DeepEqual(st.calls[0], want) {
		t.Errorf("down asked %#v, want %#v", st.calls, want)
	}
	if !strings.Contains(errs, "Waiting for the supervisor of proj (pid 42) to take the stack down") {
		t.Errorf("down's stderr: %q", errs)
	}
	// Without a supervisor, the same call, without the wait.
	st = &fakeStack{}
	if code, _, errs := runFake(t, st, "down"); code != 0 || errs != "" || len(st.calls) != 1 || !reflect.DeepEqual(st.calls[0], api.DownOptions{}) {
		t.Errorf("down without a supervisor: %d %q %#v", code, errs, st.calls)
	}
	// An error of the teardown is down's.
	st = &fakeStack{err: errors.New("stopping proj.web.1: boom")}
	if code, _, errs := runFake(t, st, "down"); code != 1 || !strings.Contains(errs, "boom") {
		t.Errorf("down that fails: %d %q", code, errs)
	}
}

// down SERVICE, with a compose file, asks for those services alone; naming
// every service is the whole stack.
func TestDownServicesAsksForThoseAlone(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	compose := "name: proj\nservices:\n  db: {image: ./db.sif}\n  web: {image: ./web.sif, depends_on: [db]}\n  other: {image: ./other.sif}\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want api.DownOptions
	}{
		{[]string{"down", "db"}, api.DownOptions{Services: []string{"db"}}},
		{[]string{"down", "db", "other"}, api.DownOptions{}},
	} {
		st := &fakeStack{}
		code, _, errs := runFake(t, st, c.args...)
		if code != 0 || len(st.calls) == 0 || !reflect.DeepEqual(st.calls[len(st.calls)-1], c.want) {
			t.Errorf("%v: %d %q, asked %#v, want %#v", c.args, code, errs, st.calls, c.want)
		}
	}
	st := &fakeStack{}
	if code, _, errs := runFake(t, st, "down", "nosuch"); code != 1 || !strings.Contains(errs, "no such service: nosuch") {
		t.Errorf("down nosuch: %d %q", code, errs)
	}
}

// A line logs -f is given shows without waiting for the next ones; names
// registered before the first line set the prefix width.
func TestLogPrinterShowsFollowedLinesAtOnce(t *testing.T) {
	var out testutil.Buffer
	p := newLogPrinter(&out, logformat.Format{Prefix: true})
	p.Register("web-1")
	p.Register("db-123")
	p.Log(api.LogLine{Service: "web", Replica: 1, Name: "web-1", Stream: "stdout", Time: time.Now(), Text: []byte("hi")})
	deadline := time.Now().Add(2 * time.Second)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.String(); got != "web-1  | hi\n" {
		t.Errorf("printed %q", got)
	}
	p.flush()
}

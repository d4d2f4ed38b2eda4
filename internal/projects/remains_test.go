package projects

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
	"sstack/internal/control"
	"sstack/internal/logs/logstest"
	"sstack/singularity"
)

// Without a supervisor, Open gives what the stack left.
func TestOpenWithoutSupervisorIsRemains(t *testing.T) {
	dir := t.TempDir()
	st, closeFn, err := Open(dir, Remains{Project: "proj", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	r, ok := st.(*Remains)
	if !ok || r.Project != "proj" {
		t.Fatalf("Open without a supervisor gave %T %+v", st, st)
	}
	if info, err := st.Info(context.Background()); err != nil || info.Supervised || info.Name != "proj" {
		t.Errorf("Info: %+v %v", info, err)
	}
}

// The verbs that need a supervisor say the project is not running and
// how to start it.
func TestRemainsVerbsNeedASupervisor(t *testing.T) {
	r := &Remains{Project: "proj"}
	ctx := context.Background()
	_, waitErr := r.Wait(ctx, api.WaitOptions{})
	_, topErr := r.Top(ctx, api.TopOptions{})
	_, statsErr := r.Stats(ctx, api.StatsOptions{})
	_, execErr := r.ExecTarget(ctx, api.ExecOptions{})
	for _, err := range []error{
		r.Up(ctx, api.UpOptions{}), r.Stop(ctx, api.StopOptions{}), r.Start(ctx, api.StartOptions{}),
		r.Restart(ctx, api.RestartOptions{}), r.Kill(ctx, api.KillOptions{}), r.Scale(ctx, api.ScaleOptions{}),
		r.Events(ctx, api.EventsOptions{}, nil), waitErr, topErr, statsErr, execErr,
	} {
		if !errors.Is(err, api.ErrNotRunning) || !strings.Contains(fmtErr(err), "start it with 'sstack up -d -n proj'") {
			t.Errorf("got %v, want a not-running error that says how to start", err)
		}
	}
	custom := &NotRunningError{Project: "p", Remedy: "deploy it"}
	if custom.Error() != `project "p" is not running: no sstack supervises it; deploy it` {
		t.Errorf("remedy: %q", custom.Error())
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Ps and Down need the runtime: its error is theirs.
func TestRemainsNeedTheRuntime(t *testing.T) {
	noRuntime := errors.New("apptainer not found")
	r := &Remains{Project: "proj", StateDir: t.TempDir(), Runtime: func() (*singularity.Apptainer, error) { return nil, noRuntime }}
	if _, err := r.Ps(context.Background(), api.PsOptions{}); !errors.Is(err, noRuntime) {
		t.Errorf("Ps: %v", err)
	}
	if err := r.Down(context.Background(), api.DownOptions{}); !errors.Is(err, noRuntime) {
		t.Errorf("Down: %v", err)
	}
}

// Logs reads the store after the stack ended; following ends at once,
// as no sstack holds the project.
func TestRemainsLogs(t *testing.T) {
	dir := t.TempDir()
	logstest.Store(t, dir, logstest.Record{Name: "web-1", Stream: "stdout", Text: "a\nb\n"}, logstest.Record{Name: "db-1", Stream: "stdout", Text: "c\n"}).Close()
	r := &Remains{Project: "proj", StateDir: dir}
	got := &logstest.LogLines{}
	if err := r.Logs(context.Background(), api.LogsOptions{Tail: "1", Follow: true}, got); err != nil {
		t.Fatal(err)
	}
	if want := []string{"web-1 stdout b", "db-1 stdout c"}; !reflect.DeepEqual(got.Lines(), want) || len(got.Names()) != 2 || !reflect.DeepEqual(got.Said(), []string{api.LogsStopped}) {
		t.Errorf("Logs gave %q names %q status %q, want %q", got.Lines(), got.Names(), got.Said(), want)
	}
	if err := r.Logs(context.Background(), api.LogsOptions{Services: []string{"nosuch"}}, &logstest.LogLines{}); err == nil || !strings.Contains(err.Error(), `no logs for service "nosuch"`) {
		t.Errorf("Logs of an unknown service: %v", err)
	}
	if err := r.Logs(context.Background(), api.LogsOptions{Services: []string{"quiet"}, Known: []string{"quiet"}}, &logstest.LogLines{}); err != nil {
		t.Errorf("Logs of a known silent service: %v", err)
	}
}

// downOnly is a supervisor that only knows Down (the test calls nothing
// else).
type downOnly struct {
	api.Stack
	down func(api.DownOptions) error
}

func (d *downOnly) Down(_ context.Context, o api.DownOptions) error { return d.down(o) }

// With a supervisor, Down asks it for the teardown, waits until it is
// gone, then removes what is left; a supervisor that went meanwhile
// (not running) leaves the same removal to do.
func TestOpenDownThroughTheSupervisorThenWhatIsLeft(t *testing.T) {
	for _, gone := range []error{nil, fmt.Errorf("%w: its sstack is shutting down", api.ErrNotRunning)} {
		dir := filepath.Join(t.TempDir(), "proj")
		unlock, err := Lock(dir)
		if err != nil {
			t.Fatal(err)
		}
		var srv *control.Server
		var asked []api.DownOptions
		stack := &downOnly{down: func(o api.DownOptions) error {
			asked = append(asked, o)
			go func() { time.Sleep(100 * time.Millisecond); srv.Close(); unlock() }()
			return gone
		}}
		if srv, err = control.Serve(dir, stack); err != nil {
			t.Fatal(err)
		}
		left := errors.New("the removal of what is left was reached")
		st, closeFn, err := Open(dir, Remains{Project: "proj", StateDir: dir, Runtime: func() (*singularity.Apptainer, error) { return nil, left }})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := st.(*Remains); ok {
			t.Fatal("Open with a supervisor gave Remains")
		}
		err = st.Down(context.Background(), api.DownOptions{Volumes: true})
		closeFn()
		if !errors.Is(err, left) || len(asked) != 1 || !asked[0].Volumes {
			t.Errorf("Down (supervisor said %v): %v, asked %+v", gone, err, asked)
		}
		if Locked(dir) {
			t.Error("Down returned before the supervisor went")
		}
	}
}

package projects

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/control"
	"sstack/internal/logs"
	"sstack/singularity"
)

// Open is the api.Stack of the project whose state lives in stateDir: its
// supervisor's, through the control socket, when one answers (with a Down
// that also removes what the supervisor leaves: the state, instances it
// lost), else what its stack left (r). The func returned releases it.
func Open(stateDir string, r Remains) (api.Stack, func(), error) {
	c, err := control.Dial(stateDir)
	switch {
	case err == nil:
		return &supervised{Client: c, remains: &r}, func() { c.Close() }, nil
	case errors.Is(err, api.ErrNotRunning):
		return &r, func() {}, nil
	}
	return nil, nil, err
}

// supervised is a stack run by another sstack: the control client, whose
// Down is followed by the removal of what is left.
type supervised struct {
	*control.Client
	remains *Remains
}

// Down asks the supervisor for the teardown and, once it is gone (or has
// taken down the services named), removes what is left, as Remains.Down.
func (s *supervised) Down(ctx context.Context, opts api.DownOptions) error {
	// Not running: it went meanwhile (its teardown was under way), and
	// what it left is removed as for any project without a supervisor.
	if err := s.Client.Down(ctx, opts); err != nil && !errors.Is(err, api.ErrNotRunning) {
		return err
	}
	if len(opts.Services) == 0 {
		// The socket is closed just before the lock is released.
		for Locked(s.remains.StateDir) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return s.remains.Down(ctx, opts)
}

// Remains is a project that no sstack runs, as its stack left it: the
// api.Stack of a project whose stack has ended, or whose sstack was
// killed. Ps lists its instances (running without a supervisor) or else
// its replicas as the stack ended, Logs reads its log store, Down stops
// the instances left and removes the state; the other methods return a
// NotRunningError.
type Remains struct {
	Project  string
	StateDir string
	// Plan is the project's compose file, when the caller has it: down
	// SERVICE takes their dependents along.
	Plan *compose.Plan
	// Runtime finds Apptainer, when it is needed.
	Runtime func() (*singularity.Apptainer, error)
	// Progress gets Down's "Stopping"/"Stopped" lines.
	Progress io.Writer
}

var _ api.Stack = (*Remains)(nil)

// NotRunningError: no sstack supervises the project, and how to start
// one (Remedy; "" says up's). It wraps api.ErrNotRunning.
type NotRunningError struct{ Project, Remedy string }

func (e *NotRunningError) Error() string {
	remedy := e.Remedy
	if remedy == "" {
		remedy = fmt.Sprintf("start it with 'sstack up -d -n %s' (or 'sstack up' in the foreground) where its compose file is", e.Project)
	}
	return fmt.Sprintf("project %q is not running: no sstack supervises it; %s", e.Project, remedy)
}

func (e *NotRunningError) Unwrap() error { return api.ErrNotRunning }

func (r *Remains) notRunning() error { return &NotRunningError{Project: r.Project} }

// Info implements api.Stack: no supervisor.
func (r *Remains) Info(context.Context) (api.ProjectInfo, error) {
	return api.ProjectInfo{Name: r.Project, StateDir: r.StateDir}, nil
}

// Ps implements api.Stack: the project's instances on this host, running
// without a supervisor; when there are none, the replicas as the stack
// ended (until down), as docker lists exited containers.
func (r *Remains) Ps(ctx context.Context, opts api.PsOptions) ([]api.Replica, error) {
	rt, err := r.Runtime()
	if err != nil {
		return nil, err
	}
	rows, err := Unsupervised(ctx, rt, r.Project)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		rows = LastRows(r.StateDir)
	}
	return opts.Filter(rows), nil
}

// Logs implements api.Stack from the log store; following ends once no
// sstack holds the project (one may be starting it).
func (r *Remains) Logs(ctx context.Context, opts api.LogsOptions, consumer api.LogConsumer) error {
	return logs.Read(ctx, logs.Options{Project: r.Project, StateDir: r.StateDir, LogsOptions: opts,
		Running: func() bool { return Locked(r.StateDir) }}, consumer)
}

// defaultGrace is how long a leftover instance gets to stop without -t.
const defaultGrace = 10 * time.Second

// Down implements api.Stack: it stops the instances left (of the services
// named and their dependents, when given) and, for the whole project,
// removes its state (named volumes stay unless opts.Volumes).
func (r *Remains) Down(ctx context.Context, opts api.DownOptions) error {
	rt, err := r.Runtime()
	if err != nil {
		return err
	}
	grace := defaultGrace
	if opts.Timeout != nil {
		grace = *opts.Timeout
	}
	if len(opts.Services) > 0 {
		services := opts.Services
		if r.Plan != nil {
			services = r.Plan.WithDependents(services)
		}
		return RemoveServices(ctx, rt, r.Project, services, grace, r.progress())
	}
	return Remove(ctx, rt, r.Project, r.StateDir, opts.Volumes, grace, r.progress())
}

func (r *Remains) progress() io.Writer {
	if r.Progress == nil {
		return io.Discard
	}
	return r.Progress
}

// The verbs that need a supervisor.

func (r *Remains) Up(context.Context, api.UpOptions) error           { return r.notRunning() }
func (r *Remains) Stop(context.Context, api.StopOptions) error       { return r.notRunning() }
func (r *Remains) Start(context.Context, api.StartOptions) error     { return r.notRunning() }
func (r *Remains) Restart(context.Context, api.RestartOptions) error { return r.notRunning() }
func (r *Remains) Kill(context.Context, api.KillOptions) error       { return r.notRunning() }
func (r *Remains) Scale(context.Context, api.ScaleOptions) error     { return r.notRunning() }
func (r *Remains) Events(context.Context, api.EventsOptions, func(api.Event) error) error {
	return r.notRunning()
}
func (r *Remains) Wait(context.Context, api.WaitOptions) (int, error) { return 0, r.notRunning() }
func (r *Remains) Top(context.Context, api.TopOptions) ([]api.TopReplica, error) {
	return nil, r.notRunning()
}
func (r *Remains) Stats(context.Context, api.StatsOptions) ([]api.ReplicaStats, error) {
	return nil, r.notRunning()
}
func (r *Remains) ExecTarget(context.Context, api.ExecOptions) (api.ExecTarget, error) {
	return api.ExecTarget{}, r.notRunning()
}

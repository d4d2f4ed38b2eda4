package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/images"
	"sstack/internal/logs"
	"sstack/internal/projects"
)

// The api.Stack methods of the supervisor: each asks the stack actors and
// follows their events until what was asked for has happened.

// WaitStarted returns once every replica has started (running, or exited
// with 0 for a one-shot service), or, with healthy, once those with a
// healthcheck are healthy; an error says which replica did not.
func (s *Supervisor) WaitStarted(ctx context.Context, healthy bool) error {
	return s.waitStarted(ctx, nil, healthy)
}

// waitStarted is WaitStarted for the replicas of services (none: all),
// looked at again at every event.
func (s *Supervisor) waitStarted(ctx context.Context, services []string, healthy bool) error {
	ch := s.sys.Subscribe()
	defer s.sys.Unsubscribe(ch)
	for {
		rows, err := s.sys.Ps()
		if err != nil {
			return err
		}
		if len(services) > 0 {
			rows = api.PsOptions{All: true, Services: services}.Filter(rows)
		}
		done, err := startedAll(s.plan(), rows, healthy)
		if done || err != nil {
			return err
		}
		if _, open, err := next(ctx, ch); err != nil || !open {
			return cmp.Or(err, ErrStackStopped)
		}
	}
}

func startedAll(plan *compose.Plan, rows []api.Replica, healthy bool) (bool, error) {
	for _, r := range rows {
		switch r.State {
		case api.StateFailed:
			return false, fmt.Errorf("%s cannot start: %s", r.Name, r.Reason)
		case api.StateExited, api.StateRestarting:
			// Started and already over (a one-shot job, whatever its
			// code): started, as docker compose up -d sees it.
			if !r.Ran {
				return false, fmt.Errorf("%s exited with code %d before its command started", r.Name, r.ExitCode)
			}
		case api.StateCreated:
			// created only (up --no-start): what up was asked for
		case api.StateRunning:
			if healthy && plan.Service(r.Service).Healthcheck != nil && r.Health != api.HealthHealthy {
				if r.Health == api.HealthUnhealthy {
					return false, fmt.Errorf("%s is unhealthy", r.Name)
				}
				return false, nil
			}
		default:
			return false, nil
		}
	}
	return true, nil
}

// watch subscribes to the stack's events, then reads its rows: what
// happens after the rows is in the events. stop ends the subscription.
func (s *Supervisor) watch(ctx context.Context) (ch chan api.Event, rows []api.Replica, stop func(), err error) {
	if err := s.awaitStart(ctx); err != nil {
		return nil, nil, nil, err
	}
	ch = s.sys.Subscribe()
	if rows, err = s.sys.Ps(); err != nil {
		s.sys.Unsubscribe(ch)
		return nil, nil, nil, err
	}
	return ch, rows, func() { s.sys.Unsubscribe(ch) }, nil
}

// command sends a user command and waits until every replica it acts on
// has got where it was sent (done says when), following the events.
func (s *Supervisor) command(ctx context.Context, req *actors.CommandRequest, done func(api.Event) bool, already func(api.Replica) bool) error {
	ch := s.sys.Subscribe()
	defer s.sys.Unsubscribe(ch)
	before := map[string]api.Replica{}
	if already != nil {
		rows, err := s.sys.Ps()
		if err != nil {
			return err
		}
		for _, r := range rows {
			before[r.Name] = r
		}
	}
	names, err := s.sys.Command(req)
	if err != nil {
		return err
	}
	return s.await(ctx, ch, names, before, done, already)
}

func (s *Supervisor) await(ctx context.Context, ch chan api.Event, names []string, before map[string]api.Replica, done func(api.Event) bool, already func(api.Replica) bool) error {
	pending := map[string]bool{}
	for _, n := range names {
		if r, ok := before[n]; ok && already != nil && already(r) {
			continue
		}
		pending[n] = true
	}
	if done == nil {
		return nil
	}
	for len(pending) > 0 {
		ev, open, err := next(ctx, ch)
		if err != nil || !open {
			return err // !open: the stack is gone, nothing more will happen
		}
		if pending[ev.Name] && done(ev) {
			delete(pending, ev.Name)
		}
	}
	return nil
}

func isStopped(ev api.Event) bool { return ev.State == api.StateStopped }

// leftStart: a (re)start has come to a result.
func leftStart(ev api.Event) bool {
	switch ev.Kind {
	case api.EventStarted, api.EventFailed:
		return true
	case api.EventDied:
		return !ev.Restart
	}
	return false
}

func running(r api.Replica) bool { return r.State == api.StateRunning }

// Up implements api.Stack: start services of the running stack, or with
// opts.Project converge it to an edited compose file (converge.go).
func (s *Supervisor) Up(ctx context.Context, opts api.UpOptions) error {
	if opts.Project != nil {
		return s.converge(ctx, opts)
	}
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	if err := s.checkServices(opts.Services); err != nil {
		return err
	}
	// Services set aside when the stack started (up SVC) are checked now.
	toStart := s.plan().WithDependencies(opts.Services)
	if len(opts.Services) == 0 {
		toStart = s.plan().ServiceNames()
	}
	var problems []error
	for _, name := range toStart {
		problems = append(problems, s.plan().Service(name).Problems...)
	}
	if err := errors.Join(append(problems, images.Check(s.plan(), toStart))...); err != nil {
		return err
	}
	if len(opts.Scale) > 0 {
		if err := s.Scale(ctx, api.ScaleOptions{Replicas: opts.Scale}); err != nil {
			return err
		}
	}
	return s.command(ctx, &actors.CommandRequest{Op: actors.OpUp, Services: opts.Services, NoDeps: opts.NoDeps}, leftStart, running)
}

// Stop implements api.Stack.
func (s *Supervisor) Stop(ctx context.Context, opts api.StopOptions) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	return s.command(ctx, &actors.CommandRequest{Op: actors.OpStop, Services: opts.Services, Timeout: opts.Timeout},
		isStopped, func(r api.Replica) bool { return r.State == api.StateStopped })
}

// Start implements api.Stack.
func (s *Supervisor) Start(ctx context.Context, opts api.StartOptions) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	if err := s.command(ctx, &actors.CommandRequest{Op: actors.OpStart, Services: opts.Services}, leftStart, running); err != nil || !opts.Wait {
		return err
	}
	return s.waitServices(ctx, opts.Services)
}

// waitServices returns once the replicas of services (none: all) run,
// healthy where they have a healthcheck (start --wait), or says which
// cannot.
func (s *Supervisor) waitServices(ctx context.Context, services []string) error {
	return s.waitStarted(ctx, services, true)
}

// Restart implements api.Stack.
func (s *Supervisor) Restart(ctx context.Context, opts api.RestartOptions) error {
	ch, before, stop, err := s.watch(ctx)
	if err != nil {
		return err
	}
	defer stop()
	names, err := s.sys.Command(&actors.CommandRequest{Op: actors.OpRestart, Services: opts.Services, Timeout: opts.Timeout, NoDeps: opts.NoDeps})
	if err != nil {
		return err
	}
	// As docker compose restart: return once the services run again, and
	// the running dependents that follow them (depends_on restart: true).
	// A follower follows only a dependency that started again: when none
	// of the named did, nothing follows.
	pending, followers, started := map[string]bool{}, map[string]bool{}, false
	for _, n := range names {
		pending[n] = true
	}
	if !opts.NoDeps {
		for _, n := range followersOf(s.plan(), names, before) {
			followers[n] = true
		}
	}
	for len(pending)+len(followers) > 0 {
		if len(pending) == 0 && !started {
			return nil
		}
		ev, open, err := next(ctx, ch)
		if err != nil || !open {
			return err // !open: the stack is gone, nothing more will happen
		}
		if !restartDone(ev) {
			continue
		}
		if pending[ev.Name] {
			delete(pending, ev.Name)
			started = started || ev.Kind == api.EventStarted
		}
		delete(followers, ev.Name)
	}
	return nil
}

// restartDone: a replica asked to restart (or following one) has come
// to a result: its new run started, or it cannot run. The death of the
// run the restart stopped (Requested) is not one.
func restartDone(ev api.Event) bool {
	switch ev.Kind {
	case api.EventStarted, api.EventFailed:
		return true
	case api.EventDied:
		return !ev.Restart && !ev.Requested
	}
	return ev.State == api.StateStopped
}

// followersOf are the replicas, running in rows, that a restart of the
// replicas named will make run again: those of the services that follow
// theirs (compose's depends_on restart: true, down the chain).
func followersOf(plan *compose.Plan, names []string, rows []api.Replica) []string {
	named := map[string]bool{}
	for _, n := range names {
		named[n] = true
	}
	var restarted []string
	for _, r := range rows {
		if named[r.Name] {
			restarted = append(restarted, r.Service)
		}
	}
	follow := plan.RestartFollowers(restarted)
	var out []string
	for _, r := range rows {
		if !named[r.Name] && slices.Contains(follow, r.Service) && r.State == api.StateRunning {
			out = append(out, r.Name)
		}
	}
	return out
}

// Kill implements api.Stack.
func (s *Supervisor) Kill(ctx context.Context, opts api.KillOptions) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	sig := opts.Signal
	if sig == "" {
		sig = "SIGKILL"
	}
	_, err := s.sys.Command(&actors.CommandRequest{Op: actors.OpKill, Services: opts.Services, Signal: sig})
	return err
}

// Scale implements api.Stack: new replicas are waited for until they have
// started, removed ones until they are gone.
func (s *Supervisor) Scale(ctx context.Context, opts api.ScaleOptions) error {
	ch, before, stop, err := s.watch(ctx)
	if err != nil {
		return err
	}
	defer stop()
	existed := map[string]bool{}
	for _, r := range before {
		existed[r.Name] = true
	}
	names, err := s.sys.Scale(&actors.ScaleRequest{Replicas: opts.Replicas})
	if err != nil {
		return err
	}
	return s.await(ctx, ch, names, nil, func(ev api.Event) bool {
		if existed[ev.Name] {
			return isStopped(ev)
		}
		return leftStart(ev)
	}, nil)
}

// Events implements api.Stack.
func (s *Supervisor) Events(ctx context.Context, opts api.EventsOptions, fn func(api.Event) error) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	if err := s.checkServices(opts.Services); err != nil {
		return err
	}
	ch := s.sys.Subscribe()
	defer s.sys.Unsubscribe(ch)
	if opts.Subscribed != nil {
		opts.Subscribed()
	}
	for {
		ev, open, err := next(ctx, ch)
		if err != nil || !open {
			return err
		}
		if len(opts.Services) > 0 && !slices.Contains(opts.Services, ev.Service) {
			continue
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// Wait implements api.Stack: the first exit of a process of the services
// (an exit already over counts), as docker compose wait.
func (s *Supervisor) Wait(ctx context.Context, opts api.WaitOptions) (int, error) {
	if err := s.awaitStart(ctx); err != nil {
		return 0, err
	}
	if err := s.checkServices(opts.Services); err != nil {
		return 0, err
	}
	ch := s.sys.Subscribe()
	defer s.sys.Unsubscribe(ch)
	rows, err := s.sys.Ps()
	if err != nil {
		return 0, err
	}
	code, found := -1, false
	for _, r := range rows {
		if (len(opts.Services) == 0 || slices.Contains(opts.Services, r.Service)) && r.State == api.StateExited {
			code, found = r.ExitCode, true
			break
		}
	}
	for !found {
		ev, open, err := next(ctx, ch)
		switch {
		case err != nil:
			return 0, err
		case !open:
			return 0, fmt.Errorf("the stack stopped before the services exited: %w", api.ErrNotRunning)
		}
		if ev.Kind == api.EventDied && (len(opts.Services) == 0 || slices.Contains(opts.Services, ev.Service)) {
			code, found = ev.ExitCode, true
		}
	}
	if opts.DownProject {
		s.beginDown(nil) // the code is told now, the teardown goes on
	}
	return code, nil
}

// Down implements api.Stack: the same teardown as Ctrl-C; it returns
// once the teardown has finished (every replica is gone). Releasing the
// rest (the control socket, the lock) is the session's (Session), and
// the removal of the state is left to the caller, which waits for the
// supervisor to go (projects.Open's Down).
func (s *Supervisor) Down(ctx context.Context, opts api.DownOptions) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	if len(opts.Services) > 0 {
		if err := s.checkServices(opts.Services); err != nil {
			return err
		}
		if sel := s.plan().WithDependents(opts.Services); len(sel) < len(s.plan().Services) {
			// Part of the stack: stop and forget those services, in
			// one go; return once they are gone.
			return s.command(ctx, &actors.CommandRequest{Op: actors.OpRemove, Services: sel, Timeout: opts.Timeout},
				isStopped, func(r api.Replica) bool { return r.State == api.StateStopped })
		}
	}
	// Subscribed first: the stream closes when the teardown has finished
	// (at once if it has).
	ch := s.sys.Subscribe()
	defer s.sys.Unsubscribe(ch)
	s.beginDown(opts.Timeout)
	for {
		if _, open, err := next(ctx, ch); err != nil || !open {
			return err
		}
	}
}

// beginDown asks for the teardown of the whole stack, once.
func (s *Supervisor) beginDown(timeout *time.Duration) {
	s.downOnce.Do(func() { s.sys.TearDownWithin("Gracefully stopping... (sstack down)", timeout) })
}

// Logs implements api.Stack from the log store this process writes;
// following ends once the stack has ended and released the project.
func (s *Supervisor) Logs(ctx context.Context, opts api.LogsOptions, consumer api.LogConsumer) error {
	plan := s.plan()
	opts.Known = append(slices.Clone(opts.Known), plan.ServiceNames()...)
	return logs.Read(ctx, logs.Options{Project: plan.Project, StateDir: plan.StateDir, LogsOptions: opts,
		Running: func() bool { return projects.Locked(plan.StateDir) }}, consumer)
}

// next is the next event of a subscription: open is false once the stack
// has ended it, err is ctx's once ctx ends first.
func next(ctx context.Context, ch <-chan api.Event) (ev api.Event, open bool, err error) {
	select {
	case <-ctx.Done():
		return api.Event{}, false, ctx.Err()
	case ev, open = <-ch:
		return ev, open, nil
	}
}

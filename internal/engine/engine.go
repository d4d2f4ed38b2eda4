// Package engine runs a stack in this process: it does what `up` needs
// before anything starts (lock, clash check, images, metrics port, state
// directory), starts the actors, serves the control socket, and implements
// api.Stack on top of the stack supervisor. The CLI reaches it through
// api.Stack, in process or through the control socket, the same way.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/agent"
	"sstack/internal/api"
	"sstack/internal/control"
	"sstack/internal/slurm"
	"sstack/internal/statedir"
	"sstack/internal/usage"
	"sstack/metrics"
	"sstack/singularity"
)

// Options says how to run a stack.
type Options struct {
	Plan        *compose.Plan
	Runtime     *singularity.Apptainer
	ConfigFiles []string
	Services    []string // none: all
	NoDeps      bool
	Scale       map[string]int
	Format      actors.LogFormat
	Stdout      io.Writer
	Stderr      io.Writer
	MetricsAddr string
	Detached    bool

	AbortOnExit    bool
	AbortOnFailure bool
	ExitCodeFrom   string
	// StopTimeout overrides stop_grace_period at teardown (up -t).
	StopTimeout *time.Duration
	// Parallel bounds parallel instance starts and stops (0: the default).
	Parallel int
	// NoLimits starts instances without the services' cgroup limits
	// (up --no-limits), with a warning each (limits.go).
	NoLimits bool
	// NoStart creates the replicas only; they wait for a start (up
	// --no-start).
	NoStart bool
}

// Supervisor is a stack running in this process. It implements api.Stack.
type Supervisor struct {
	opts Options
	// current is the plan the stack runs: up on a running stack replaces
	// it (converge.go); read it with plan().
	current atomic.Pointer[compose.Plan]
	rt      *singularity.Apptainer
	// runtime runs the instances: rt, or the agents of a Slurm allocation.
	runtime  singularity.Runtime
	cluster  *cluster // inside a Slurm allocation; nil on one host
	nets     *networks
	stack    *actors.Stack
	server   *control.Server
	listener net.Listener
	unlock   func()
	started  time.Time
	// converging serializes ups on the running stack; state is theirs.
	converging sync.Mutex
	state      converged
	// downOnce: Down asks for the teardown once.
	downOnce sync.Once
	// ready is closed once stack is set: the control socket serves
	// before the actors start, and its requests wait for them.
	ready chan struct{}
}

var _ api.Stack = (*Supervisor)(nil)

// Up checks everything that can be checked, prepares the state directory
// and starts the stack; nothing is started when it returns an error.
func Up(ctx context.Context, opts Options) (*Supervisor, error) {
	plan, rt := opts.Plan, opts.Runtime
	for _, name := range opts.Services {
		if plan.Service(name) == nil {
			return nil, noService(plan, name)
		}
	}
	if err := applyScale(plan, opts.Scale); err != nil {
		return nil, err
	}
	selected := selectServices(plan, opts.Services, opts.NoDeps)
	if err := CheckImages(plan, selected); err != nil {
		return nil, err
	}
	// The checks config ran, again on the plan as it will run (--scale
	// changes instance names).
	if err := plan.CheckSelected(selected); err != nil {
		return nil, err
	}
	if err := checkLimits(ctx, plan, rt, opts.NoLimits, opts.Stderr); err != nil {
		return nil, err
	}
	clampUlimits(plan, selected, opts.Stderr)
	alloc, err := slurm.Detect(ctx, os.Environ())
	if err != nil {
		return nil, err
	}
	var cl *cluster
	if alloc != nil {
		if cl, err = newCluster(plan, rt, alloc, opts.Stderr); err != nil {
			return nil, err
		}
	} else {
		skipElsewhere(plan, opts.Stderr)
		opts.Services = slices.DeleteFunc(opts.Services, func(name string) bool { return plan.Service(name) == nil })
	}
	unlock, err := lockProject(plan.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Supervisor{opts: opts, rt: rt, cluster: cl, unlock: unlock, started: time.Now(), ready: make(chan struct{})}
	s.current.Store(plan)
	ok := false
	defer func() {
		if !ok {
			if cl != nil {
				cl.close()
			}
			s.nets.close()
			s.release()
			// Refused before anything started: leave nothing on disk
			// that was not there (the directory goes only if empty).
			_ = os.Remove(statedir.Lock(plan.StateDir))
			_ = os.Remove(plan.StateDir)
		}
	}()
	// The two checks each run apptainer: in parallel, they cost one.
	// The clash check, then the stack network, beside the images'
	// inspection: each waits on other processes, so in parallel they cost
	// about the longest. The network comes after the clash check, which
	// says whether a network left by a killed sstack is in use.
	clash := make(chan error, 1)
	nets := make(chan *networks, 1)
	go func() {
		err := checkClash(ctx, rt, plan.Project, plan.StateDir)
		var nw *networks
		if err == nil {
			nw, err = startNetworks(ctx, plan, cl != nil, opts.Stderr)
		}
		clash <- err
		nets <- nw
	}()
	runscripts, inspectErr := inspectImages(ctx, rt, plan)
	clashErr := <-clash
	s.nets = <-nets // closed by the deferred clean-up if up goes no further
	if err := errors.Join(clashErr, inspectErr); err != nil {
		return nil, err
	}
	// Notes of an earlier run whose starts all ended are stale now.
	_ = os.RemoveAll(statedir.Journal(plan.StateDir))
	if s.listener, err = metrics.Listen(opts.MetricsAddr); err != nil {
		return nil, err
	}
	// New instances, new logs: as docker compose loses a recreated
	// container's logs, `sstack logs` shows the latest run.
	if err := os.RemoveAll(statedir.Logs(plan.StateDir)); err != nil {
		return nil, err
	}
	_ = os.Remove(statedir.LastPs(plan.StateDir))
	resolv, err := s.nets.resolvConf(plan.StateDir)
	if err != nil {
		return nil, fmt.Errorf("writing resolv.conf in %s: %w", plan.StateDir, err)
	}
	hostsOf := plan.HostsOf
	if cl != nil {
		hostsOf = cl.hostsOf
	}
	hosts, err := actors.Prepare(ctx, plan, rt, func(svc *compose.Service) ([]compose.HostEntry, error) {
		return s.nets.hosts(plan, svc, hostsOf(svc))
	}, selected)
	if err != nil {
		return nil, err
	}
	var runtime singularity.Runtime = rt
	var placer actors.Placer
	if cl != nil {
		cl.mu.Lock()
		cl.hosts = hosts
		cl.mu.Unlock()
		if err := cl.start(ctx); err != nil {
			return nil, err
		}
		runtime, placer = cl.placed, cl
	}
	s.runtime = runtime
	s.server, err = control.Serve(plan.StateDir, s)
	if err != nil {
		return nil, err
	}
	// Instance monitors become sstack's children, reaped at stop without
	// waiting for a slow init (see BecomeSubreaper); without it stops are
	// only slower.
	_ = singularity.BecomeSubreaper()
	m := metrics.New(plan.Project)
	if cl != nil {
		m = metrics.NewPlaced(plan.Project, cl.nodeOf)
	}
	m.CollectUsage(s.scrapeUsage)
	if s.nets.stack != nil {
		holder := s.nets.stack.Network().Holder
		m.CollectNetwork(func() ([]usage.Interface, error) { return new(usage.Reader).Network(holder) })
	}
	if s.listener != nil {
		go func() { _ = m.Serve(s.listener) }()
	}
	format := opts.Format
	format.StoreDir = statedir.Logs(plan.StateDir)
	s.state = converged{hashes: hashesOf(plan), runscripts: runscripts}
	s.stack = actors.Start(actors.StackConfig{
		Plan:           plan,
		Runtime:        runtime,
		Placer:         placer,
		Metrics:        m,
		HasRunscript:   runscripts,
		HostsFiles:     hosts,
		Unprepared:     slices.DeleteFunc(plan.ServiceNames(), func(n string) bool { return slices.Contains(selected, n) }),
		Nets:           s.nets.of,
		ResolvConf:     resolv,
		ReplicaNets:    s.nets.replicaNetworks(),
		Format:         format,
		Stdout:         opts.Stdout,
		Stderr:         opts.Stderr,
		Services:       opts.Services,
		NoDeps:         opts.NoDeps,
		Detached:       opts.Detached,
		NoStart:        opts.NoStart,
		AbortOnExit:    opts.AbortOnExit || opts.ExitCodeFrom != "",
		AbortOnFailure: opts.AbortOnFailure,
		ExitCodeFrom:   opts.ExitCodeFrom,
		StopTimeout:    opts.StopTimeout,
		Parallel:       parallelFor(opts.Parallel, cl),
	})
	close(s.ready)
	ok = true
	return s, nil
}

// applyScale sets the replica counts of up --scale.
func applyScale(plan *compose.Plan, scale map[string]int) error {
	for name, n := range scale {
		svc := plan.Service(name)
		if svc == nil {
			return fmt.Errorf("--scale: %w", noService(plan, name))
		}
		if n < 0 {
			return fmt.Errorf("--scale %s=%d: the number of replicas cannot be negative", name, n)
		}
		svc.Replicas = n
	}
	return nil
}

// selectServices: only the services named (with their dependencies unless
// noDeps; all when none) are checked and prepared by up, as docker compose
// creates only their containers; the others are when up starts them later.
func selectServices(plan *compose.Plan, services []string, noDeps bool) []string {
	switch {
	case len(services) == 0:
		return plan.ServiceNames()
	case noDeps:
		return services
	}
	return plan.WithDependencies(services)
}

func noService(plan *compose.Plan, name string) error {
	known := make([]string, len(plan.Services))
	for i, s := range plan.Services {
		known[i] = s.Name
	}
	return &api.NoServiceError{Name: name, Known: known}
}

// awaitStart waits until the actors run (a request may come in right after the
// control socket is up, before they are started).
func (s *Supervisor) awaitStart(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until the status lines of what happened so far are written.
func (s *Supervisor) Flush() { s.stack.Flush() }

// Done receives the stack's end.
func (s *Supervisor) Done() <-chan actors.StackDone { return s.stack.Done() }

// Interrupt asks for a graceful teardown (Ctrl-C), printing reason.
func (s *Supervisor) Interrupt(reason string) { s.stack.Stop(reason) }

// Kill tears down at once (second Ctrl-C).
func (s *Supervisor) KillAll() { s.stack.Kill() }

// Close releases everything once Done has fired: waits for the last
// lines, stops the actors, the control socket and the metrics endpoint,
// and unlocks the project.
func (s *Supervisor) Close() {
	if rows, err := s.stack.Ps(); err == nil {
		recordLastRows(s.plan().StateDir, rows)
	}
	s.stack.Close()
	if s.cluster != nil {
		// Every replica is stopped: the agents end, and their steps.
		s.cluster.close()
	}
	// Every instance is gone: nothing uses the stack network any more.
	s.nets.close()
	s.release()
}

func (s *Supervisor) release() {
	if s.server != nil {
		_ = s.server.Close()
	}
	if s.listener != nil {
		_ = s.listener.Close()
	}
	s.unlock()
}

// ErrStackStopped: the stack ended while it was waited for.
var ErrStackStopped = errors.New("the stack stopped")

// Project is the project's name.
func (s *Supervisor) Project() string { return s.plan().Project }

// WaitStarted returns once every replica has started (running, or exited
// with 0 for a one-shot service), or, with healthy, once those with a
// healthcheck are healthy; an error says which replica did not.
func (s *Supervisor) WaitStarted(ctx context.Context, healthy bool) error {
	return s.waitStarted(ctx, nil, healthy)
}

// waitStarted is WaitStarted for the replicas of services (none: all),
// looked at again at every event.
func (s *Supervisor) waitStarted(ctx context.Context, services []string, healthy bool) error {
	ch := s.stack.Subscribe()
	defer s.stack.Unsubscribe(ch)
	for {
		rows, err := s.stack.Ps()
		if err != nil {
			return err
		}
		if len(services) > 0 {
			rows = FilterRows(rows, api.PsOptions{All: true, Services: services})
		}
		done, err := startedAll(s.plan(), rows, healthy)
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-ch:
			if !ok {
				return ErrStackStopped
			}
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

func (s *Supervisor) info() api.ProjectInfo {
	return api.ProjectInfo{
		Name: s.plan().Project, ConfigFiles: s.opts.ConfigFiles, StateDir: s.plan().StateDir,
		Pid: os.Getpid(), Supervised: true, Detached: s.opts.Detached, Started: s.started,
	}
}

// Info implements api.Stack.
func (s *Supervisor) Info(ctx context.Context) (api.ProjectInfo, error) {
	if err := s.awaitStart(ctx); err != nil {
		return api.ProjectInfo{}, err
	}
	info := s.info()
	rows, err := s.stack.Ps()
	if err != nil {
		return info, err
	}
	info.Status = ProjectStatus(rows)
	return info, nil
}

// ProjectStatus is docker compose ls's status: "running(2), exited(1)".
func ProjectStatus(rows []api.Replica) string {
	counts := map[string]int{}
	for _, r := range rows {
		st := string(r.State)
		if r.State == api.StateStopping || r.State == api.StateRestarting || r.State == api.StateStarting {
			st = string(api.StateRunning)
		}
		counts[st]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s(%d)", k, counts[k])
	}
	return strings.Join(parts, ", ")
}

func (s *Supervisor) checkServices(names []string) error {
	for _, n := range names {
		if s.plan().Service(n) == nil {
			return noService(s.plan(), n)
		}
	}
	return nil
}

// Ps implements api.Stack.
func (s *Supervisor) Ps(ctx context.Context, opts api.PsOptions) ([]api.Replica, error) {
	rows, err := s.rows(ctx, opts.Services)
	if err != nil {
		return nil, err
	}
	return FilterRows(rows, opts), nil
}

// rows are the replica rows, once the actors run and the services named
// are known to exist.
func (s *Supervisor) rows(ctx context.Context, services []string) ([]api.Replica, error) {
	if err := s.awaitStart(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServices(services); err != nil {
		return nil, err
	}
	rows, err := s.stack.Ps()
	for i := range rows {
		s.nets.annotate(&rows[i])
	}
	return rows, err
}

// FilterRows keeps the rows ps shows for opts.
func FilterRows(rows []api.Replica, opts api.PsOptions) []api.Replica {
	var out []api.Replica
	for _, r := range rows {
		if !opts.All && !r.Active() {
			continue
		}
		if len(opts.Services) > 0 && !slices.Contains(opts.Services, r.Service) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// command sends a user command and waits until every replica it acts on
// has got where it was sent (done says when), following the events.
func (s *Supervisor) command(ctx context.Context, req *actors.CommandRequest, done func(api.Event) bool, already func(api.Replica) bool) error {
	ch := s.stack.Subscribe()
	defer s.stack.Unsubscribe(ch)
	before := map[string]api.Replica{}
	if already != nil {
		rows, err := s.stack.Ps()
		if err != nil {
			return err
		}
		for _, r := range rows {
			before[r.Name] = r
		}
	}
	names, err := s.stack.Command(req)
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
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-ch:
			if !ok {
				return nil // the stack is gone: nothing more will happen
			}
			if pending[ev.Name] && done(ev) {
				delete(pending, ev.Name)
			}
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

// plan is the plan the stack runs now.
func (s *Supervisor) plan() *compose.Plan { return s.current.Load() }

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
	if err := errors.Join(append(problems, CheckImages(s.plan(), toStart))...); err != nil {
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
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	ch := s.stack.Subscribe()
	defer s.stack.Unsubscribe(ch)
	before, err := s.stack.Ps()
	if err != nil {
		return err
	}
	names, err := s.stack.Command(&actors.CommandRequest{Op: actors.OpRestart, Services: opts.Services, Timeout: opts.Timeout, NoDeps: opts.NoDeps})
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
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-ch:
			if !ok {
				return nil // the stack is gone: nothing more will happen
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
// replicas named will make run again: those of services that depend on
// one of theirs with restart: true, and so on down the chain.
func followersOf(plan *compose.Plan, names []string, rows []api.Replica) []string {
	named := map[string]bool{}
	for _, n := range names {
		named[n] = true
	}
	restarted := map[string]bool{}
	for _, r := range rows {
		if named[r.Name] {
			restarted[r.Service] = true
		}
	}
	for grew := true; grew; {
		grew = false
		for _, svc := range plan.Services {
			if restarted[svc.Name] {
				continue
			}
			for _, d := range svc.DependsOn {
				if d.Restart && restarted[d.Service] {
					restarted[svc.Name], grew = true, true
					break
				}
			}
		}
	}
	var out []string
	for _, r := range rows {
		if !named[r.Name] && restarted[r.Service] && r.State == api.StateRunning {
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
	_, err := s.stack.Command(&actors.CommandRequest{Op: actors.OpKill, Services: opts.Services, Signal: sig})
	return err
}

// Scale implements api.Stack: new replicas are waited for until they have
// started, removed ones until they are gone.
func (s *Supervisor) Scale(ctx context.Context, opts api.ScaleOptions) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	ch := s.stack.Subscribe()
	defer s.stack.Unsubscribe(ch)
	before, err := s.stack.Ps()
	if err != nil {
		return err
	}
	existed := map[string]bool{}
	for _, r := range before {
		existed[r.Name] = true
	}
	names, err := s.stack.Scale(&actors.ScaleRequest{Replicas: opts.Replicas})
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
	ch := s.stack.Subscribe()
	defer s.stack.Unsubscribe(ch)
	if opts.Subscribed != nil {
		opts.Subscribed()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if len(opts.Services) > 0 && !slices.Contains(opts.Services, ev.Service) {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
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
	ch := s.stack.Subscribe()
	defer s.stack.Unsubscribe(ch)
	rows, err := s.stack.Ps()
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
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case ev, ok := <-ch:
			if !ok {
				return 0, fmt.Errorf("the stack stopped before the services exited: %w", api.ErrNotRunning)
			}
			if ev.Kind == api.EventDied && (len(opts.Services) == 0 || slices.Contains(opts.Services, ev.Service)) {
				code, found = ev.ExitCode, true
			}
		}
	}
	if opts.DownProject {
		_ = s.Down(ctx, api.DownOptions{})
	}
	return code, nil
}

// Top implements api.Stack.
func (s *Supervisor) Top(ctx context.Context, opts api.TopOptions) ([]api.TopReplica, error) {
	rows, err := s.rows(ctx, opts.Services)
	if err != nil {
		return nil, err
	}
	return Top(ctx, s.rt, s.plan().Project, FilterRows(rows, api.PsOptions{Services: opts.Services}))
}

// Stats implements api.Stack: what each active replica (ps without -a)
// uses, read on its node.
func (s *Supervisor) Stats(ctx context.Context, opts api.StatsOptions) ([]api.ReplicaStats, error) {
	rows, err := s.rows(ctx, opts.Services)
	if err != nil {
		return nil, err
	}
	stats, err := s.stats(ctx, FilterRows(rows, api.PsOptions{Services: opts.Services}))
	if len(stats) > 0 {
		return stats, nil // a node that did not answer leaves its replicas out
	}
	return stats, err
}

// scrapeUsage is Stats for the metrics, at scrape time; nothing before
// the actors run.
func (s *Supervisor) scrapeUsage(ctx context.Context) ([]api.ReplicaStats, error) {
	select {
	case <-s.ready:
	default:
		return nil, nil
	}
	rows, err := s.stack.Ps()
	if err != nil {
		return nil, err
	}
	return s.stats(ctx, FilterRows(rows, api.PsOptions{}))
}

func (s *Supervisor) stats(ctx context.Context, rows []api.Replica) ([]api.ReplicaStats, error) {
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		if r.Supervised && r.Instance != "" {
			names = append(names, r.Instance)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	use, err := s.runtime.Usage(ctx, names)
	now := time.Now()
	var out []api.ReplicaStats
	for _, r := range rows {
		if u, ok := use[r.Instance]; ok {
			out = append(out, api.ReplicaStats{Name: r.Name, Service: r.Service, Replica: r.Replica,
				Instance: r.Instance, Node: r.Node, Time: now, Usage: u})
		}
	}
	return out, err
}

// ExecTarget implements api.Stack.
func (s *Supervisor) ExecTarget(ctx context.Context, opts api.ExecOptions) (api.ExecTarget, error) {
	if err := s.awaitStart(ctx); err != nil {
		return api.ExecTarget{}, err
	}
	svc := s.plan().Service(opts.Service)
	if svc == nil {
		return api.ExecTarget{}, noService(s.plan(), opts.Service)
	}
	index := opts.Index
	if index == 0 {
		index = 1
	}
	rows, err := s.stack.Ps()
	if err != nil {
		return api.ExecTarget{}, err
	}
	for _, r := range rows {
		if r.Service != opts.Service || r.Replica != index {
			continue
		}
		if r.State != api.StateRunning {
			return api.ExecTarget{}, fmt.Errorf("%s is %s, not running; start it with 'sstack start %s': %w", r.Name, r.Status(), r.Service, api.ErrReplicaNotRunning)
		}
		svc = svc.ForReplica(index)
		n := s.nets.execNet(svc.Name, index) // nets is set once Up has succeeded
		t := api.ExecTarget{Instance: r.Instance, Env: svc.Environment, Pwd: svc.WorkingDir, NetHolder: n.Holder, NetUserNS: n.UserNS}
		if s.cluster != nil && r.Node != "" {
			t.Node, t.Job = r.Node, s.cluster.job
			t.Env = append(slices.Clip(t.Env), agent.NodeEnv+"="+r.Node)
		}
		return t, nil
	}
	return api.ExecTarget{}, fmt.Errorf("service %q has no replica %d: %w", opts.Service, index, api.ErrReplicaNotRunning)
}

// Down implements api.Stack: the same teardown as Ctrl-C; the caller
// waits for the supervisor to go.
func (s *Supervisor) Down(ctx context.Context, opts api.DownOptions) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	if len(opts.Services) > 0 {
		if err := s.checkServices(opts.Services); err != nil {
			return err
		}
		if sel := WithDependents(s.plan(), opts.Services); len(sel) < len(s.plan().Services) {
			// Part of the stack: stop and forget those services, in
			// one go; return once they are gone.
			return s.command(ctx, &actors.CommandRequest{Op: actors.OpRemove, Services: sel, Timeout: opts.Timeout},
				isStopped, func(r api.Replica) bool { return r.State == api.StateStopped })
		}
	}
	s.downOnce.Do(func() { s.stack.StopWithin("Gracefully stopping... (sstack down)", opts.Timeout) })
	return nil
}

// WithDependents are the services named and those that depend on them,
// directly or not (required or not), in the plan's order.
func WithDependents(plan *compose.Plan, names []string) []string {
	in := map[string]bool{}
	for _, n := range names {
		in[n] = true
	}
	for grew := true; grew; {
		grew = false
		for _, svc := range plan.Services {
			if in[svc.Name] {
				continue
			}
			for _, d := range svc.DependsOn {
				if in[d.Service] {
					in[svc.Name], grew = true, true
					break
				}
			}
		}
	}
	var out []string
	for _, svc := range plan.Services {
		if in[svc.Name] {
			out = append(out, svc.Name)
		}
	}
	return out
}

// checkClash refuses to start a project whose instances already run: a
// second sstack, or leftovers of one that was killed.
func checkClash(ctx context.Context, rt *singularity.Apptainer, project, stateDir string) error {
	if n := len(singularity.StartsInFlight(statedir.Recorded(stateDir))); n > 0 {
		return fmt.Errorf("project %q: %d instance starts of an sstack that was killed are still running; run 'sstack down -n %s' to wait for them and remove their instances", project, n, project)
	}
	infos, err := rt.ListInstances(ctx, project+".*")
	if err != nil {
		return err
	}
	var names []string
	for _, i := range infos {
		if strings.HasPrefix(i.Name, project+".") {
			names = append(names, i.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return fmt.Errorf("project %q is already running: instances %s exist (another sstack, or left over from one that was killed); run 'sstack down -n %s' to remove them, or choose another name with -n",
		project, strings.Join(names, ", "), project)
}

// inspectImages reads, in parallel, which images have a runscript, and
// refuses services that then have nothing to run.
func inspectImages(ctx context.Context, rt *singularity.Apptainer, plan *compose.Plan) (map[string]bool, error) {
	type result struct {
		has bool
		err error
	}
	images := map[string]*result{}
	var unique []string
	for _, s := range plan.Services {
		if _, err := os.Stat(s.Image); err != nil {
			continue // of a service not started now (CheckImages passed)
		}
		if _, ok := images[s.Image]; !ok {
			images[s.Image] = nil
			unique = append(unique, s.Image)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, img := range unique {
		wg.Add(1)
		go func(img string) {
			defer wg.Done()
			has, err := rt.HasRunscript(ctx, img)
			mu.Lock()
			images[img] = &result{has, err}
			mu.Unlock()
		}(img)
	}
	wg.Wait()
	out := map[string]bool{}
	var errs []error
	for _, s := range plan.Services {
		r := images[s.Image]
		if r == nil {
			continue // not there yet: a service not started now
		}
		if r.err != nil {
			errs = append(errs, fmt.Errorf("service %q: image %s: %w", s.Name, s.Image, r.err))
			continue
		}
		out[s.Name] = r.has
		if !r.has && s.Entrypoint == nil && len(s.Command) == 0 {
			errs = append(errs, fmt.Errorf("service %q: image %s has no runscript and the service sets no command or entrypoint: nothing to run; set command or entrypoint in the compose file", s.Name, s.Image))
		}
	}
	return out, errors.Join(errs...)
}

// lockProject takes an exclusive lock in the project's state directory so
// two sstacks cannot start the same project at once.
func lockProject(stateDir string) (func(), error) {
	if err := statedir.Private(filepath.Dir(stateDir)); err != nil {
		return nil, err
	}
	if err := statedir.Private(stateDir); err != nil {
		return nil, err
	}
	path := statedir.Lock(stateDir)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, statedir.Problem(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("project state %s is locked by another sstack (%v); stop that one first ('sstack down -n %s'), or choose another name with -n", stateDir, err, filepath.Base(stateDir))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { _ = f.Truncate(0); f.Close() }, nil
}

// Locked reports whether an sstack holds the project's lock (is running it).
func Locked(stateDir string) bool {
	f, err := os.Open(statedir.Lock(stateDir))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Attached are the services whose output up shows, as docker compose
// decides: those of --attach if given, else the services named (with
// their dependencies only with attachDeps), else all; less --no-attach.
// nil means all.
func Attached(plan *compose.Plan, services, attach, noAttach []string, attachDeps bool) map[string]bool {
	var from []string
	switch {
	case len(attach) > 0:
		from = attach
	case len(services) > 0 && attachDeps:
		from = plan.WithDependencies(services)
	case len(services) > 0:
		from = services
	case len(noAttach) == 0:
		return nil
	default:
		from = plan.ServiceNames()
	}
	out := map[string]bool{}
	for _, s := range from {
		out[s] = !slices.Contains(noAttach, s)
	}
	return out
}

// recordLastRows keeps the replicas as the stack ended, so that ps -a
// still lists them with their last state and exit code until down, as
// docker lists exited containers ("exited (143)" for one the teardown
// stopped).
func recordLastRows(stateDir string, rows []api.Replica) {
	for i := range rows {
		rows[i].Pid = 0
		// Its instance is gone, as every one at the end: what docker
		// shows of a container is how its process exited.
		if rows[i].State == api.StateStopped && rows[i].Ran {
			rows[i].State = api.StateExited
		}
	}
	if b, err := json.Marshal(rows); err == nil {
		_ = os.WriteFile(statedir.LastPs(stateDir), b, 0o600)
	}
}

// LastRows are the replicas of a project as its stack ended (none when
// it never ran, or was taken down).
func LastRows(stateDir string) []api.Replica {
	b, err := os.ReadFile(statedir.LastPs(stateDir))
	if err != nil {
		return nil
	}
	var rows []api.Replica
	if json.Unmarshal(b, &rows) != nil {
		return nil
	}
	return rows
}

// Package engine runs a stack in this process: it does what `up` needs
// before anything starts (lock, clash check, images, metrics port, state
// directory), starts the actors, serves the control socket, and implements
// api.Stack on top of the stack supervisor. The CLI reaches it through
// api.Stack, in process or through the control socket, the same way.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/control"
	"sstack/internal/images"
	"sstack/internal/prepare"
	"sstack/internal/projects"
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
	Scale       map[string]int
	MetricsAddr string
	// NoLimits starts instances without the services' cgroup limits
	// (up --no-limits), with a warning each (limits.go).
	NoLimits bool
	// Listed, when not nil, is the listing of the project's instances
	// that the clash check takes, asked ahead (checkClash).
	Listed Listing
	// UpOptions go to the stack as they are (but Parallel, bounded inside
	// a Slurm allocation, and the log store added to Format).
	actors.UpOptions
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
	sys      *actors.System // the supervision: stack actor, service actors, logger
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
	warn := linesTo(opts.Stderr)
	plan, selected, err := checkPlan(ctx, plan, rt, opts.Services, opts.NoDeps, opts.Scale, opts.NoLimits, warn)
	if err != nil {
		return nil, err
	}
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
		skipElsewhere(plan, warn)
		opts.Services = slices.DeleteFunc(slices.Clone(opts.Services), func(name string) bool { return plan.Service(name) == nil })
	}
	unlock, err := projects.Lock(plan.StateDir)
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
	// The clash check and the stack network beside the images'
	// inspection: each waits on other processes, so in parallel they cost
	// about the longest.
	clash := make(chan error, 1)
	nets := make(chan *networks, 1)
	go func() {
		nw, err := checkAndStartNetworks(ctx, rt, plan, opts.Listed, cl != nil, warn)
		if err == nil && nw.replicas != nil && !opts.NoStart {
			// The replicas' namespaces are made from now on, beside
			// the rest of up (replicaNets.reserve).
			nw.replicas.reserve(selected)
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
	hosts, err := prepare.Plan(ctx, plan, rt, func(svc *compose.Service) ([]compose.HostEntry, error) {
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
	s.state = converged{hashes: hashesOf(plan), runscripts: runscripts}
	up := opts.UpOptions
	up.Format.StoreDir = statedir.Logs(plan.StateDir)
	up.Parallel = parallelFor(opts.Parallel, cl)
	s.sys = actors.Start(actors.StackConfig{
		Plan:         plan,
		Runtime:      runtime,
		Placer:       placer,
		Metrics:      m,
		HasRunscript: runscripts,
		HostsFiles:   hosts,
		Unprepared:   slices.DeleteFunc(plan.ServiceNames(), func(n string) bool { return slices.Contains(selected, n) }),
		Nets:         s.nets.of,
		ResolvConf:   resolv,
		ReplicaNets:  s.nets.replicaNetworks(),
		UpOptions:    up,
	})
	close(s.ready)
	ok = true
	return s, nil
}

// warnFunc takes a warning of up's checks: printed before the stack
// runs, published as an event to a running stack's clients (converge).
type warnFunc func(api.Event)

// linesTo prints warnings to w as the console prints events.
func linesTo(w io.Writer) warnFunc {
	return func(ev api.Event) { fmt.Fprintln(w, ev.Line()) }
}

// checkPlan is what up checks of a plan before it starts or changes
// anything: the services named exist, --scale applies, and the services
// selected (their images, the checks config ran, again on the plan as it
// will run, since --scale changes instance names, and their limits) can
// start. It returns the plan as it will run, derived from plan (which it
// leaves as it was), and the services selected.
func checkPlan(ctx context.Context, plan *compose.Plan, rt *singularity.Apptainer, services []string, noDeps bool, scale map[string]int, noLimits bool, warn warnFunc) (*compose.Plan, []string, error) {
	for _, name := range services {
		if plan.Service(name) == nil {
			return nil, nil, &api.NoServiceError{Name: name, Known: plan.ServiceNames()}
		}
	}
	run := plan.Copy()
	if err := applyScale(run, scale); err != nil {
		return nil, nil, err
	}
	selected := selectServices(run, services, noDeps)
	if err := images.Check(run, selected); err != nil {
		return nil, nil, err
	}
	if err := run.CheckSelected(selected); err != nil {
		return nil, nil, err
	}
	if err := checkLimits(ctx, run, rt, noLimits, warn); err != nil {
		return nil, nil, err
	}
	clampUlimits(run, selected, warn)
	return run, selected, nil
}

// applyScale sets the replica counts of up --scale.
func applyScale(plan *compose.Plan, scale map[string]int) error {
	for name, n := range scale {
		svc := plan.Service(name)
		if svc == nil {
			return fmt.Errorf("--scale: %w", &api.NoServiceError{Name: name, Known: plan.ServiceNames()})
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
func (s *Supervisor) Flush() { s.sys.Flush() }

// close releases everything once the stack has ended: waits for the last
// lines, stops the actors, the control socket and the metrics endpoint,
// and unlocks the project.
func (s *Supervisor) close() {
	if rows, err := s.sys.Ps(); err == nil {
		projects.RecordLastRows(s.plan().StateDir, rows)
	}
	s.sys.Close()
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

// plan is the plan the stack runs now.
func (s *Supervisor) plan() *compose.Plan { return s.current.Load() }

package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/actors/lifecycle"
	"sstack/actors/policy"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/metrics"
	"sstack/singularity"
)

// StackConfig is everything `up` hands to the actors once the plan is
// validated and the state directory prepared.
type StackConfig struct {
	Plan    *compose.Plan
	Runtime singularity.Runtime
	Metrics *metrics.Metrics
	Clock   policy.Clock
	// HasRunscript and HostsFiles are keyed by service name.
	HasRunscript map[string]bool
	HostsFiles   map[string]string
	// Unprepared are services whose mounts Prepare did not make (not
	// selected by up SVC): their replicas make their own when they start.
	Unprepared []string
	// Nets is each service's network (none: the host's); ResolvConf is
	// bound onto /etc/resolv.conf of those on a stack network.
	Nets       map[string]singularity.Network
	ResolvConf string
	Format     LogFormat
	Stdout     io.Writer // service output
	Stderr     io.Writer // sstack's status lines

	// ReplicaNets gives replicas on the stack network their own (nil: none).
	ReplicaNets ReplicaNetworks

	// Services to start (with their dependencies unless NoDeps); none:
	// every service of the plan.
	Services []string
	NoDeps   bool
	// Detached: the stack goes on when every process has exited, until
	// it is taken down (up -d); a foreground up ends then, as docker
	// compose's does.
	Detached bool
	// NoStart: the replicas are created only, and wait for a start (up
	// --no-start).
	NoStart bool

	// docker compose's exit behaviour flags (see policy.ExitRules).
	AbortOnExit    bool
	AbortOnFailure bool
	ExitCodeFrom   string
	// StopTimeout overrides every stop_grace_period at teardown.
	StopTimeout *time.Duration
	// Parallel bounds how many instances start or stop at once (docker
	// compose's --parallel); 0 means DefaultParallel.
	Parallel int
	// Placer, inside a Slurm allocation, says which node each replica
	// runs on; nil: all on this host.
	Placer Placer
}

// Placer places replicas on nodes. Place is idempotent: a replica placed
// before gets its node again.
type Placer interface {
	Place(service string, replica int) (node string, err error)
	Forget(service string, replica int)
}

// DefaultParallel is the bound of parallel instance starts and stops: an
// instance start is mostly CPU work of Apptainer's, so more at once than
// a few per core only makes each slower.
func DefaultParallel() int { return 4 * runtime.NumCPU() }

// Stack is a running stack: an actor system with the logger and the stack
// supervisor, which spawns one service actor per replica.
type Stack struct {
	system *actor.ActorSystem
	root   *actor.PID
	logger *actor.PID
	done   chan StackDone
	pipes  *pipeTracker
	// console writes what the logger prints; Stop and Kill tell it that
	// it may no longer hold the stack back.
	console *console
}

// quietLogger routes protoactor's own logging away from the console that
// carries service logs.
func quietLogger(*actor.ActorSystem) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start spawns the stack. Done reports when everything is gone.
func Start(cfg StackConfig) *Stack {
	if cfg.Clock == nil {
		cfg.Clock = policy.RealClock{}
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(quietLogger))
	st := &Stack{system: system, done: make(chan StackDone, 1), pipes: newPipeTracker()}
	parallel := cfg.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel()
	}
	slots := make(chan struct{}, parallel)
	format := cfg.Format
	format.Project = cfg.Plan.Project
	for _, svc := range cfg.Plan.Services {
		for r := 1; r <= svc.Replicas; r++ {
			if n := len(svc.DisplayName(r)); n > format.Width {
				format.Width = n
			}
		}
	}
	st.console = newConsole(cfg.Stdout, cfg.Stderr, cfg.Plan.Project)
	st.logger = system.Root.Spawn(newLogger(format, st.console, cfg.Metrics))
	// stackActor is the supervision strategy of its children itself (it
	// implements actor.SupervisorStrategy), so it can stop the instance of
	// a service actor that crashed.
	props := actor.PropsFromProducer(func() actor.Actor {
		return &stackActor{cfg: cfg, logger: st.logger, done: st.done, pipes: st.pipes, slots: slots}
	})
	st.root = system.Root.Spawn(props)
	return st
}

// Stop asks for a graceful teardown (first Ctrl-C); reason is printed.
func (s *Stack) Stop(reason string) { s.StopWithin(reason, nil) }

// StopWithin is Stop with every service's grace period set to timeout
// (down -t); nil keeps each service's own.
func (s *Stack) StopWithin(reason string, timeout *time.Duration) {
	s.console.stop(false)
	s.system.Root.Send(s.root, &StopStack{Reason: reason, Timeout: timeout})
}

// Kill asks for an immediate teardown (second Ctrl-C).
func (s *Stack) Kill() {
	s.console.stop(true)
	s.system.Root.Send(s.root, &KillStack{})
}

// Done receives one StackDone when everything is gone.
func (s *Stack) Done() <-chan StackDone { return s.done }

// requestTimeout bounds a control request to the supervisor, which answers
// at once (it never blocks in Receive).
const requestTimeout = 10 * time.Second

func (s *Stack) request(msg any) (any, error) {
	res, err := s.system.Root.RequestFuture(s.root, msg, requestTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("the stack supervisor did not answer: %w", err)
	}
	return res, nil
}

// Ps returns every replica's row.
func (s *Stack) Ps() ([]api.Replica, error) {
	res, err := s.request(&PsRequest{})
	if err != nil {
		return nil, err
	}
	rows, _ := res.([]api.Replica)
	return rows, nil
}

// Command runs a user command on services and returns the replicas it
// acts on.
func (s *Stack) Command(req *CommandRequest) ([]string, error) {
	return s.result(s.request(req))
}

// Scale sets replica counts.
func (s *Stack) Scale(req *ScaleRequest) ([]string, error) {
	return s.result(s.request(req))
}

func (s *Stack) result(res any, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	r, _ := res.(*CommandResult)
	if r == nil {
		return nil, errors.New("the stack supervisor gave no answer")
	}
	return r.Names, r.Err
}

// Subscribe returns a channel of every event from now on; it is closed
// when the stack ends, or when the listener is too slow to keep up.
func (s *Stack) Subscribe() chan api.Event {
	ch := make(chan api.Event, subscriberBuffer)
	s.system.Root.Send(s.root, &Subscribe{Ch: ch})
	return ch
}

// Unsubscribe ends a subscription.
func (s *Stack) Unsubscribe(ch chan api.Event) { s.system.Root.Send(s.root, &Unsubscribe{Ch: ch}) }

// subscriberBuffer events may wait for a listener before it is dropped.
const subscriberBuffer = 4096

// Flush returns once the logger has written every status line and log
// batch sent to it before.
func (s *Stack) Flush() {
	_, _ = s.system.Root.RequestFuture(s.logger, &FlushLogs{}, requestTimeout).Result()
}

// pipeIdle: at the end of up, an output pipe that has had nothing to say
// for this long is held by a process that outlived its instance; its
// lines are not waited for.
const pipeIdle = time.Second

// Close waits until every line the processes wrote has reached the
// logger's output, however slowly that is read (after Stop only while
// stdout makes progress, after Kill not at all: see console.close),
// flushes the logger and stops the actor system; call after Done, when
// every instance is gone. Stop and Kill may be called while it waits.
func (s *Stack) Close() {
	s.pipes.wait(pipeIdle)
	_, _ = s.system.Root.RequestFuture(s.logger, &FlushLogs{}, 5e9).Result()
	_ = s.system.Root.PoisonFuture(s.root).Wait()
	_ = s.system.Root.PoisonFuture(s.logger).Wait()
	s.console.close()
	s.system.Shutdown()
}

// replicaState is the supervisor's view of one replica, derived from its
// events.
type replicaState struct {
	pid *actor.PID
	row api.Replica
	// svc is the plan entry the replica was made from; replacing, the
	// one it is replaced with once it has stopped (an update), held when
	// the new one is to be created only (up --no-start).
	svc, replacing *compose.Service
	replaceHeld    bool
	started        bool // the process started at least once
	// removing: scaled down; the replica goes once it has stopped.
	removing bool
	// crashed: the service actor panicked and was stopped; the supervisor
	// stops its instance and ignores what the dead actor sent before.
	crashed bool
	// alone: a user's restart --no-deps; its dependents do not follow
	// the next start.
	alone bool
}

func (r *replicaState) done() bool { return r.row.State == api.StateStopped }

// stackActor supervises the service actors: it routes dependency status
// to dependents, answers control requests, decides when the stack is over,
// and tears it down in reverse dependency order.
type stackActor struct {
	cfg    StackConfig
	logger *actor.PID
	done   chan StackDone
	pipes  *pipeTracker
	slots  chan struct{}
	// ctx is the actor's context, for HandleFailure, which protoactor
	// calls in that context but without passing it as an actor.Context.
	ctx actor.Context

	replicas   map[string][]*replicaState // by service, index replica-1
	dependents map[string][]string        // service -> spawned services that depend on it
	lastSent   map[string]lifecycle.DepStatus
	subs       map[chan api.Event]bool
	// counts are replica counts set by scale (the plan's otherwise).
	counts map[string]int
	// removed are services being taken down alone (down SERVICE): once
	// their last replica is gone they are forgotten.
	removed map[string]bool
	// updates are the services whose replicas are being replaced
	// (converge.go); orphans, services kept running that the compose
	// file no longer has.
	updates map[string]*update
	orphans map[string]bool
	// spawned counts the actors made for each instance name.
	spawned map[string]int

	rules    policy.ExitRules
	stopping bool
	killing  bool
	stopSent map[string]bool
	finished bool
	// settled: every replica of the initial up has left its start.
	settled bool
}

func (a *stackActor) publish(ctx actor.Context, ev api.Event) {
	if ev.Time.IsZero() {
		ev.Time = a.cfg.Clock.Now()
	}
	if ev.Project == "" {
		ev.Project = a.cfg.Plan.Project
	}
	ctx.Send(a.logger, &ev)
	a.fanOut(ev)
}

func (a *stackActor) notice(ctx actor.Context, format string, args ...any) {
	a.publish(ctx, api.Event{Kind: api.EventStackNotice, Message: fmt.Sprintf(format, args...)})
}

func (a *stackActor) fanOut(ev api.Event) {
	for ch := range a.subs {
		select {
		case ch <- ev:
		default: // too far behind: end its stream rather than block the stack
			delete(a.subs, ch)
			close(ch)
		}
	}
}

func (a *stackActor) Receive(ctx actor.Context) {
	defer a.recoverSelf(ctx)
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.ctx = ctx
		a.start(ctx)
	case *ReplicaEvent:
		a.onEvent(ctx, msg.Event)
	case *StopStack:
		if !a.stopping {
			if msg.Timeout != nil {
				a.cfg.StopTimeout = msg.Timeout
			}
			a.publish(ctx, api.Event{Kind: api.EventStopStack, Message: msg.Reason})
			a.rules.Interrupted()
			a.teardown(ctx)
		}
	case *KillStack:
		a.publish(ctx, api.Event{Kind: api.EventKillStack})
		a.kill(ctx)
	case *PsRequest:
		ctx.Respond(a.ps())
	case *CommandRequest:
		names, err := a.command(ctx, msg)
		ctx.Respond(&CommandResult{Names: names, Err: err})
	case *ScaleRequest:
		names, err := a.scale(ctx, msg)
		ctx.Respond(&CommandResult{Names: names, Err: err})
	case *ConvergeRequest:
		names, err := a.converge(ctx, msg)
		ctx.Respond(&CommandResult{Names: names, Err: err})
	case *PlanRequest:
		ctx.Respond(a.cfg.Plan)
	case *Announce:
		a.publish(ctx, msg.Event)
	case *rolloutTimer:
		a.advanceUpdate(ctx, msg.service)
	case *Subscribe:
		if a.finished {
			close(msg.Ch)
			return
		}
		a.subs[msg.Ch] = true
	case *Unsubscribe:
		if a.subs[msg.Ch] {
			delete(a.subs, msg.Ch)
			close(msg.Ch)
		}
	case *crashCleaned:
		a.onCrashCleaned(ctx, msg)
	case *actor.Terminated:
		a.onTerminated(ctx, msg)
	}
}

// recoverSelf: a panic in the supervisor itself would make protoactor's
// root guardian restart it, which spawns every service again. Instead the
// panic is printed and every service killed at once; exit code 1.
func (a *stackActor) recoverSelf(ctx actor.Context) {
	r := recover()
	if r == nil {
		return
	}
	a.notice(ctx, "sstack: internal error in the stack supervisor: %v\n%s", r, debug.Stack())
	a.rules.Failed()
	defer func() {
		if recover() != nil { // state too broken to tear down in order
			a.stopEverything()
		}
	}()
	a.kill(ctx)
}

// stopEverything is the last resort: stop every instance of the plan
// directly, then report the stack done.
func (a *stackActor) stopEverything() {
	var names []string
	for _, reps := range a.replicas {
		for _, r := range reps {
			names = append(names, r.row.Instance)
		}
	}
	done := make(chan struct{}, len(names))
	for _, name := range names {
		go func() {
			_ = a.cfg.Runtime.StopInstance(context.Background(), name, "SIGKILL", time.Second)
			done <- struct{}{}
		}()
	}
	for range names {
		<-done
	}
	a.finish()
}

func (a *stackActor) start(ctx actor.Context) {
	a.replicas = map[string][]*replicaState{}
	a.dependents = map[string][]string{}
	a.lastSent = map[string]lifecycle.DepStatus{}
	a.stopSent = map[string]bool{}
	a.subs = map[chan api.Event]bool{}
	a.counts = map[string]int{}
	a.removed = map[string]bool{}
	a.updates = map[string]*update{}
	a.spawned = map[string]int{}
	a.orphans = map[string]bool{}
	a.rules = policy.ExitRules{AbortOnExit: a.cfg.AbortOnExit, AbortOnFailure: a.cfg.AbortOnFailure, ExitCodeFrom: a.cfg.ExitCodeFrom}
	selected, err := a.selection(a.cfg.Services, a.cfg.NoDeps)
	if err != nil { // main validated the names; nothing to run otherwise
		a.notice(ctx, "sstack: %v", err)
		a.rules.Failed()
		a.finish()
		return
	}
	names := a.spawnServices(ctx, selected, a.cfg.NoDeps, a.cfg.NoStart)
	if len(names) == 0 {
		a.finish()
		return
	}
	if att := a.cfg.Format.Attached; att != nil {
		shown := map[string]bool{}
		for svc, reps := range a.replicas {
			for _, r := range reps {
				shown[r.row.Name] = att[svc]
			}
		}
		names = slices.DeleteFunc(names, func(n string) bool { return !shown[n] })
	}
	a.publish(ctx, api.Event{Kind: api.EventAttaching, Names: names})
}

// selection is the services to start for names (all when none), in plan
// order, with their dependencies unless noDeps.
func (a *stackActor) selection(names []string, noDeps bool) ([]*compose.Service, error) {
	plan := a.cfg.Plan
	if len(names) == 0 {
		var out []*compose.Service
		for i := range plan.Services {
			if !a.orphans[plan.Services[i].Name] {
				out = append(out, &plan.Services[i])
			}
		}
		return out, nil
	}
	want := map[string]bool{}
	var add func(name string) error
	add = func(name string) error {
		svc := plan.Service(name)
		if svc == nil {
			return &api.NoServiceError{Name: name, Known: a.serviceNames()}
		}
		if want[name] {
			return nil
		}
		want[name] = true
		if noDeps {
			return nil
		}
		for _, d := range svc.DependsOn {
			if plan.Service(d.Service) != nil {
				if err := add(d.Service); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, n := range names {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	var out []*compose.Service
	for i := range plan.Services {
		if want[plan.Services[i].Name] {
			out = append(out, &plan.Services[i])
		}
	}
	return out, nil
}

func (a *stackActor) serviceNames() []string {
	names := make([]string, len(a.cfg.Plan.Services))
	for i, s := range a.cfg.Plan.Services {
		names[i] = s.Name
	}
	return names
}

// spawnServices spawns the replicas of services not spawned yet, in plan
// (dependency) order, and returns their display names.
func (a *stackActor) spawnServices(ctx actor.Context, services []*compose.Service, noDeps, held bool) []string {
	var names []string
	for _, svc := range services {
		if _, ok := a.replicas[svc.Name]; ok {
			continue
		}
		a.replicas[svc.Name] = []*replicaState{}
		var deps []compose.Dependency
		for _, d := range svc.DependsOn {
			if a.cfg.Plan.Service(d.Service) == nil {
				a.notice(ctx, "service %q: depends_on: optional dependency %q is not part of the project; starting without it", svc.Name, d.Service)
				continue
			}
			if _, spawned := a.replicas[d.Service]; !spawned && noDeps {
				continue // --no-deps: not waited for
			}
			deps = append(deps, d)
			a.dependents[d.Service] = append(a.dependents[d.Service], svc.Name)
		}
		n := svc.Replicas
		if c, ok := a.counts[svc.Name]; ok {
			n = c
		}
		for r := 1; r <= n; r++ {
			names = append(names, a.spawnReplica(ctx, svc, r, deps, held))
		}
	}
	return names
}

func (a *stackActor) depsOf(svc *compose.Service) []compose.Dependency {
	var deps []compose.Dependency
	for _, d := range svc.DependsOn {
		if _, spawned := a.replicas[d.Service]; spawned {
			deps = append(deps, d)
		}
	}
	return deps
}

func (a *stackActor) spawnReplica(ctx actor.Context, svc *compose.Service, r int, deps []compose.Dependency, held bool) string {
	rs := a.newReplica(ctx, svc, r, deps, held)
	a.replicas[svc.Name] = append(a.replicas[svc.Name], rs)
	return rs.row.Name
}

// newReplica spawns the service actor of replica r of svc; held: created
// only, it waits for a start (up --no-start).
func (a *stackActor) newReplica(ctx actor.Context, svc *compose.Service, r int, deps []compose.Dependency, held bool) *replicaState {
	plan, entry := a.cfg.Plan, svc
	inst := compose.InstanceName(plan.Project, svc.Name, r)
	var node string
	if p := a.cfg.Placer; p != nil {
		// Placed by up (or checked by scale) before it gets here: an
		// error is only a replica that can no longer be placed, which
		// then fails to start with it.
		var err error
		if node, err = p.Place(svc.Name, r); err != nil {
			a.notice(ctx, "%s: %v", svc.DisplayName(r), err)
		}
	}
	templated := svc.HasSlotTemplate()
	if templated {
		svc = svc.ForReplica(r)
	}
	cfg := ServiceConfig{
		PrepareMounts: templated || slices.Contains(a.cfg.Unprepared, svc.Name),
		Project:       plan.Project,
		Service:       svc,
		Replica:       r,
		Instance:      inst,
		Name:          svc.DisplayName(r),
		HostsFile:     a.cfg.HostsFiles[svc.Name],
		Net:           a.cfg.Nets[svc.Name],
		ResolvConf:    a.cfg.ResolvConf,
		ReplicaNets:   a.cfg.ReplicaNets,
		HasRunscript:  a.cfg.HasRunscript[svc.Name],
		Deps:          deps,
		Held:          held,
		Runtime:       a.cfg.Runtime,
		Logger:        a.logger,
		Metrics:       a.cfg.Metrics,
		Clock:         a.cfg.Clock,
		StateDir:      plan.StateDir,
		slots:         a.slots,
		pipes:         a.pipes,
	}
	// A replica made anew (an update) gets a name of its own: its
	// predecessor may still be registered, or be gone already, and its
	// Terminated must not be taken for the new actor's.
	name := inst
	if a.spawned[inst] > 0 {
		name += "~" + strconv.Itoa(a.spawned[inst])
	}
	a.spawned[inst]++
	pid, err := ctx.SpawnNamed(NewService(cfg), name)
	if err != nil {
		pid = ctx.Spawn(NewService(cfg))
	}
	rs := &replicaState{pid: pid, svc: entry, row: api.Replica{
		Project: plan.Project, Service: svc.Name, Replica: r, Name: cfg.Name, Instance: inst,
		State: api.StateWaiting, Since: a.cfg.Clock.Now(), Supervised: true, Node: node,
	}}
	// A replica added later learns where its dependencies are at once.
	for _, d := range deps {
		if st, ok := a.lastSent[d.Service]; ok {
			st.Restarted = false
			ctx.Send(pid, &DependencyUpdate{Status: st})
		}
	}
	return rs
}

func (a *stackActor) replica(service string, replica int) *replicaState {
	reps := a.replicas[service]
	if replica < 1 || replica > len(reps) {
		return nil
	}
	return reps[replica-1]
}

// apply derives the replica's row from its event.
func (r *replicaState) apply(ev api.Event) {
	row := &r.row
	if ev.State != "" && ev.State != row.State {
		row.State, row.Since = ev.State, ev.Time
	}
	switch ev.Kind {
	case api.EventStarted:
		r.started, row.Ran = true, true
		row.Pid = ev.Pid
		row.Reason = ""
	case api.EventDied:
		row.ExitCode, row.Pid, row.Health = ev.ExitCode, 0, api.HealthNone
	case api.EventHealth:
		row.Health = ev.Health
	case api.EventRestarting:
		if ev.Dependency == "" && !ev.User {
			row.Restarts++
		}
	case api.EventFailed:
		row.Reason = ev.Message
	case api.EventDestroyed:
		row.Pid, row.Health = 0, api.HealthNone
	}
	if ev.Kind == api.EventStarted && row.Health == api.HealthNone && ev.Health != "" {
		row.Health = ev.Health
	}
}

func (a *stackActor) onEvent(ctx actor.Context, ev api.Event) {
	r := a.replica(ev.Service, ev.Replica)
	if r == nil || r.crashed {
		return
	}
	r.apply(ev)
	if ev.Kind == api.EventStarted && r.svc.Healthcheck != nil {
		r.row.Health = api.HealthStarting
	}
	a.cfg.Metrics.Observe(ev)
	a.fanOut(ev)
	if r.removing && r.done() {
		a.removeReplica(ctx, ev.Service, r)
	}
	if r.replacing != nil && r.done() && !a.stopping {
		a.respawn(ctx, r)
		return
	}
	a.observeUpdate(ctx, r, ev)
	if ev.Kind == api.EventDied && !r.removing {
		// Every exit counts for --exit-code-from, even one the teardown
		// caused; only one sstack did not cause can abort.
		requested := ev.Requested || a.stopping
		if a.rules.Exited(ev.Service, ev.ExitCode, requested) {
			a.publish(ctx, api.Event{Kind: api.EventAborting})
			a.teardown(ctx)
			return
		}
	}
	if a.stopping {
		if ev.State == api.StateStopped {
			a.advanceTeardown(ctx)
		}
		return
	}
	restarted := ev.Kind == api.EventStarted && ev.Restart && !r.alone
	if ev.Kind == api.EventStarted || ev.Kind == api.EventFailed {
		r.alone = false
	}
	a.notifyDependents(ctx, ev.Service, restarted)

	if !a.settled {
		a.settled = a.allLeftStart()
	}
	if ev.Kind == api.EventFailed && !a.cfg.Detached {
		// A service that cannot start, or whose dependency failed: as
		// docker compose's "dependency failed to start", exit code 1.
		// A detached stack goes on with what started, as docker
		// compose's containers do; up -d exits 1 (see WaitStarted).
		a.rules.Failed()
		a.teardown(ctx)
		return
	}
	if !a.cfg.Detached && a.allOver() {
		a.teardown(ctx)
	}
}

// allLeftStart: no replica is still on its way to its first run.
func (a *stackActor) allLeftStart() bool {
	for _, reps := range a.replicas {
		for _, r := range reps {
			switch r.row.State {
			case api.StateWaiting, api.StateCreating, api.StateStarting:
				return false
			}
		}
	}
	return true
}

// allOver: every replica has exited for good (or was stopped), so a
// foreground `up` ends as docker compose's does.
func (a *stackActor) allOver() bool {
	for _, reps := range a.replicas {
		for _, r := range reps {
			switch r.row.State {
			case api.StateExited, api.StateFailed, api.StateStopped:
			default:
				return false
			}
		}
	}
	return true
}

func (a *stackActor) aggregate(service string) lifecycle.DepStatus {
	u := lifecycle.DepStatus{Service: service, Started: true, Healthy: true, Exited: true}
	for _, r := range a.replicas[service] {
		if r.removing {
			continue
		}
		if !r.started {
			u.Started = false
		}
		if r.row.Health != api.HealthHealthy || r.row.State != api.StateRunning {
			u.Healthy = false
		}
		if r.row.Health == api.HealthUnhealthy {
			u.Unhealthy = true
		}
		if r.row.State == api.StateExited {
			if r.row.ExitCode != 0 && u.ExitCode == 0 {
				u.ExitCode = r.row.ExitCode
			}
		} else {
			u.Exited = false
		}
		if r.row.State == api.StateFailed && !u.Failed {
			u.Failed, u.Reason = true, r.row.Reason
		}
	}
	return u
}

func (a *stackActor) notifyDependents(ctx actor.Context, service string, restarted bool) {
	deps := a.dependents[service]
	if len(deps) == 0 {
		return
	}
	u := a.aggregate(service)
	if last, ok := a.lastSent[service]; ok && last == u && !restarted {
		return
	}
	a.lastSent[service] = u
	u.Restarted = restarted
	for _, d := range deps {
		for _, r := range a.replicas[d] {
			ctx.Send(r.pid, &DependencyUpdate{Status: u})
		}
	}
}

// teardown stops services in reverse dependency order: a service is asked
// to stop once every service depending on it has stopped.
func (a *stackActor) teardown(ctx actor.Context) {
	if a.stopping {
		return
	}
	a.stopping = true
	a.advanceTeardown(ctx)
}

// serviceDone: every replica is gone.
func (a *stackActor) serviceDone(service string) bool {
	for _, r := range a.replicas[service] {
		if !r.done() {
			return false
		}
	}
	return true
}

func (a *stackActor) advanceTeardown(ctx actor.Context) {
	if a.finished {
		return
	}
	all := true
	names := make([]string, 0, len(a.replicas))
	for name := range a.replicas {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !a.serviceDone(name) {
			all = false
		}
		if a.stopSent[name] {
			continue
		}
		ready := true
		for _, d := range a.dependents[name] {
			if !a.serviceDone(d) {
				ready = false
				break
			}
		}
		if ready {
			a.stopSent[name] = true
			for _, r := range a.replicas[name] {
				if !r.crashed {
					ctx.Send(r.pid, &StopService{Final: true, Kill: a.killing, Timeout: a.cfg.StopTimeout})
				}
			}
		}
	}
	if all {
		a.finish()
	}
}

func (a *stackActor) kill(ctx actor.Context) {
	a.killing = true
	a.stopping = true
	for name, reps := range a.replicas {
		a.stopSent[name] = true
		for _, r := range reps {
			if !r.done() && !r.crashed {
				ctx.Send(r.pid, &StopService{Final: true, Kill: true})
			}
		}
	}
	a.advanceTeardown(ctx)
}

// ps lists every replica, services in plan order.
func (a *stackActor) ps() []api.Replica {
	var rows []api.Replica
	for _, svc := range a.cfg.Plan.Services {
		for _, r := range a.replicas[svc.Name] {
			rows = append(rows, r.row)
		}
	}
	return rows
}

// targets resolves service names (all spawned ones when none) to replicas.
func (a *stackActor) targets(services []string) ([]*replicaState, error) {
	if len(services) == 0 {
		var out []*replicaState
		for _, svc := range a.cfg.Plan.Services {
			for _, r := range a.replicas[svc.Name] {
				if !r.removing && !r.crashed {
					out = append(out, r)
				}
			}
		}
		return out, nil
	}
	var out []*replicaState
	for _, s := range services {
		if a.cfg.Plan.Service(s) == nil {
			return nil, &api.NoServiceError{Name: s, Known: a.serviceNames()}
		}
		for _, r := range a.replicas[s] {
			if !r.removing && !r.crashed {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// command performs a user's stop, start, restart, kill or up. The
// supervisor answers at once; the caller follows the events to see the
// replicas get where they were sent.
func (a *stackActor) command(ctx actor.Context, req *CommandRequest) ([]string, error) {
	if a.stopping {
		return nil, errors.New("the stack is being taken down")
	}
	if req.Op == OpUp {
		return a.up(ctx, req)
	}
	reps, err := a.targets(req.Services)
	if err != nil {
		return nil, err
	}
	var sig string
	if req.Op == OpKill {
		s, err := singularity.ParseSignal(req.Signal)
		if err != nil {
			return nil, fmt.Errorf("kill -s %s: %w", req.Signal, err)
		}
		sig = singularity.SignalName(s)
	}
	names := make([]string, 0, len(reps))
	for _, r := range reps {
		names = append(names, r.row.Name)
		switch req.Op {
		case OpStop:
			ctx.Send(r.pid, &StopService{Timeout: req.Timeout})
		case OpStart:
			ctx.Send(r.pid, &StartService{})
		case OpRestart:
			r.alone = req.NoDeps
			ctx.Send(r.pid, &RestartService{Timeout: req.Timeout})
		case OpKill:
			ctx.Send(r.pid, &SignalService{Signal: sig})
		case OpRemove:
			r.removing = true
			a.removed[r.row.Service] = true
			if r.done() {
				a.removeReplica(ctx, r.row.Service, r)
				continue
			}
			ctx.Send(r.pid, &StopService{Final: true, Timeout: req.Timeout})
		}
	}
	if req.Op == OpRemove {
		for _, s := range req.Services {
			a.removed[s] = true
			if len(a.replicas[s]) == 0 {
				a.forget(s)
			}
		}
	}
	return names, nil
}

// forget drops a service taken down alone once its replicas are gone.
func (a *stackActor) forget(service string) {
	if a.removed[service] {
		delete(a.replicas, service)
		delete(a.counts, service)
		delete(a.removed, service)
		if a.orphans[service] {
			// Gone from the file and now from the stack.
			delete(a.orphans, service)
			plan := *a.cfg.Plan
			plan.Services = slices.DeleteFunc(slices.Clone(plan.Services), func(s compose.Service) bool { return s.Name == service })
			a.cfg.Plan = &plan
		}
	}
}

// up starts services of the running stack: replicas not spawned yet are
// spawned, stopped or exited ones started again.
func (a *stackActor) up(ctx actor.Context, req *CommandRequest) ([]string, error) {
	services, err := a.selection(req.Services, req.NoDeps)
	if err != nil {
		return nil, err
	}
	names := a.spawnServices(ctx, services, req.NoDeps, false)
	for _, svc := range services {
		for _, r := range a.replicas[svc.Name] {
			if r.replacing != nil {
				continue // an update starts it anew
			}
			switch r.row.State {
			case api.StateExited, api.StateStopped, api.StateFailed, api.StateCreated:
				ctx.Send(r.pid, &StartService{})
				names = append(names, r.row.Name)
			}
		}
	}
	return names, nil
}

// scale adds replicas (new actors and instances) or takes the
// highest-numbered ones away, live.
func (a *stackActor) scale(ctx actor.Context, req *ScaleRequest) ([]string, error) {
	if a.stopping {
		return nil, errors.New("the stack is being taken down")
	}
	services := make([]string, 0, len(req.Replicas))
	for name, n := range req.Replicas {
		if a.cfg.Plan.Service(name) == nil {
			return nil, &api.NoServiceError{Name: name, Known: a.serviceNames()}
		}
		if n < 0 {
			return nil, fmt.Errorf("scale %s=%d: the number of replicas cannot be negative", name, n)
		}
		for _, r := range a.replicas[name] {
			if r.removing {
				return nil, fmt.Errorf("scale %s: replica %s is still being removed; try again in a moment", name, r.row.Name)
			}
		}
		services = append(services, name)
	}
	sort.Strings(services)
	var names []string
	for _, name := range services {
		n := req.Replicas[name]
		svc := a.cfg.Plan.Service(name)
		if _, spawned := a.replicas[name]; !spawned {
			if n == 0 {
				continue
			}
			// Not started yet: start it with n replicas (and its deps).
			a.counts[name] = n
			sel, _ := a.selection([]string{name}, false)
			names = append(names, a.spawnServices(ctx, sel, false, false)...)
			continue
		}
		reps := a.replicas[name]
		if p := a.cfg.Placer; p != nil {
			// Placed before anything changes: a replica that fits no node
			// fails the whole request.
			for r := len(reps) + 1; r <= n; r++ {
				if _, err := p.Place(name, r); err != nil {
					return names, err
				}
			}
		}
		a.counts[name] = n
		for r := len(reps) + 1; r <= n; r++ {
			names = append(names, a.spawnReplica(ctx, svc, r, a.depsOf(svc), false))
		}
		for i := len(reps) - 1; i >= n; i-- {
			r := reps[i]
			r.removing = true
			names = append(names, r.row.Name)
			if r.done() {
				a.removeReplica(ctx, name, r)
				continue
			}
			ctx.Send(r.pid, &StopService{Final: true})
		}
	}
	return names, nil
}

// removeReplica forgets a scaled-down replica once it has stopped; only
// the last replica of a service can go, so numbers stay dense.
func (a *stackActor) removeReplica(ctx actor.Context, service string, r *replicaState) {
	reps := a.replicas[service]
	for len(reps) > 0 && reps[len(reps)-1].removing && reps[len(reps)-1].done() {
		last := reps[len(reps)-1]
		reps = reps[:len(reps)-1]
		a.cfg.Metrics.Remove(service, last.row.Replica)
		if a.cfg.Placer != nil {
			a.cfg.Placer.Forget(service, last.row.Replica)
		}
		ctx.Stop(last.pid)
	}
	a.replicas[service] = reps
	a.notifyDependents(ctx, service, false)
	if len(reps) == 0 {
		a.forget(service)
	}
}

// HandleFailure makes the stack supervisor the supervision strategy of its
// service actors: protoactor calls it, in the supervisor's own context,
// when a child panics. The panic is printed with its stack trace, the
// child stopped, its instance stopped by the supervisor and the stack
// taken down with exit code 1. Restarting the actor instead would lose
// what it knew (its process, run number, restart count) while goroutines
// of the old incarnation still report to the same PID.
func (a *stackActor) HandleFailure(_ *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, message any) {
	defer a.recoverSelf(a.ctx)
	supervisor.StopChildren(child)
	what := fmt.Sprint(reason)
	if p, ok := reason.(*actorPanic); ok {
		what = fmt.Sprintf("%v\n%s", p.value, bytes.TrimRight(p.stack, "\n"))
	}
	name := "a service actor (" + child.Id + ")"
	if r := a.replicaOf(child); r != nil {
		name = r.row.Name
	}
	a.notice(a.ctx, "sstack: internal error in %s, handling %T: panic: %s", name, message, what)
	a.crashed(a.ctx, child)
}

func (a *stackActor) replicaOf(pid *actor.PID) *replicaState {
	for _, reps := range a.replicas {
		for _, r := range reps {
			if r.pid.Equal(pid) {
				return r
			}
		}
	}
	return nil
}

// crashed handles a service actor that is gone without having stopped its
// instance: the supervisor stops the instance itself and takes the stack
// down with exit code 1.
func (a *stackActor) crashed(ctx actor.Context, pid *actor.PID) {
	a.rules.Failed()
	r := a.replicaOf(pid)
	if r != nil && !r.crashed && !r.done() {
		wasCreating := r.row.State == api.StateCreating
		r.crashed = true
		r.row.State = api.StateFailed
		r.row.Reason = "internal error in sstack"
		a.notice(ctx, "%s: stopping instance %s and the stack", r.row.Name, r.row.Instance)
		rt, inst, self, root := a.cfg.Runtime, r.row.Instance, ctx.Self(), ctx.ActorSystem().Root
		service, replica := r.row.Service, r.row.Replica
		go func() {
			err := stopCrashedInstance(rt, inst, wasCreating)
			root.Send(self, &crashCleaned{service: service, replica: replica, err: err})
		}()
	}
	if a.stopping {
		a.advanceTeardown(ctx)
		return
	}
	a.teardown(ctx)
}

// stopCrashedInstance stops the instance of a crashed service actor. When
// the actor was creating it, the start may still be in flight: wait a
// while for the instance to appear, so that it is not left behind.
func stopCrashedInstance(rt singularity.Runtime, name string, wasCreating bool) error {
	bg := context.Background()
	err := rt.StopInstance(bg, name, "SIGTERM", 2*time.Second)
	if !errors.Is(err, singularity.ErrNoInstance) {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); wasCreating && time.Now().Before(deadline); {
		if infos, lerr := rt.ListInstances(bg, name); lerr == nil && len(infos) > 0 {
			return rt.StopInstance(bg, name, "SIGTERM", 2*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func (a *stackActor) onCrashCleaned(ctx actor.Context, msg *crashCleaned) {
	r := a.replica(msg.service, msg.replica)
	if r == nil {
		return
	}
	ev := api.Event{Kind: api.EventDestroyed, Service: r.row.Service, Replica: r.row.Replica,
		Name: r.row.Name, Instance: r.row.Instance, State: api.StateStopped}
	if msg.err != nil {
		ev.Message = msg.err.Error()
	}
	r.row.State = api.StateStopped
	a.publish(ctx, ev)
	a.advanceTeardown(ctx)
}

// onTerminated: a service actor stopped. After a crash HandleFailure has
// dealt with it, and a scaled-down replica is meant to go; any other
// unexpected end is handled the same way as a crash, so the stack never
// waits for an actor that is gone.
func (a *stackActor) onTerminated(ctx actor.Context, msg *actor.Terminated) {
	if a.finished {
		return
	}
	if r := a.replicaOf(msg.Who); r != nil && !r.crashed && !r.done() {
		a.notice(ctx, "sstack: internal error: the actor of %s stopped unexpectedly", r.row.Name)
		a.crashed(ctx, msg.Who)
	}
}

func (a *stackActor) finish() {
	if a.finished {
		return
	}
	a.finished = true
	for ch := range a.subs {
		close(ch)
	}
	a.subs = map[chan api.Event]bool{}
	a.done <- StackDone{ExitCode: a.rules.Code()}
}

package actors

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"

	"sstack/actors/lifecycle"
	"sstack/actors/policy"
	"sstack/actors/supervision"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/console"
	"sstack/internal/logformat"
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
	// Unprepared are services whose mounts prepare.Plan did not make (not
	// selected by up SVC): their replicas make their own when they start.
	Unprepared []string
	// Nets is each service's network (none: the host's); ResolvConf is
	// bound onto /etc/resolv.conf of those on a stack network.
	Nets       map[string]singularity.Network
	ResolvConf string

	// ReplicaNets gives replicas on the stack network their own (nil: none).
	ReplicaNets ReplicaNetworks

	// UpOptions are what the user asked of up.
	UpOptions

	// Placer, inside a Slurm allocation, says which node each replica
	// runs on; nil: all on this host.
	Placer Placer
}

// UpOptions are what the user asked of up that the stack follows; the
// engine takes them from the CLI and passes them on as they are.
type UpOptions struct {
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
	// Exit is docker compose's exit behaviour (see policy.ExitRules).
	Exit policy.Exit
	// StopTimeout overrides every stop_grace_period at teardown (up -t).
	StopTimeout *time.Duration
	// Parallel bounds how many instances start or stop at once (docker
	// compose's --parallel); 0 means singularity.DefaultParallel.
	Parallel int
	Format   logformat.Format
	Stdout   io.Writer // service output
	Stderr   io.Writer // sstack's status lines
}

// Placer places replicas on nodes. Place is idempotent: a replica placed
// before gets its node again.
type Placer interface {
	Place(service string, replica int) (node string, err error)
	Forget(service string, replica int)
}

// System is the supervision of one running stack: an actor system with the
// logger and the stack actor, which spawns one service actor per replica.
// (api.Stack, what the CLI calls, is implemented over it by engine.Supervisor.)
type System struct {
	system *actor.ActorSystem
	root   *actor.PID
	logger *actor.PID
	done   chan StackDone
	pipes  *pipeTracker
	// console writes what the logger prints; TearDown and KillAll tell it that
	// it may no longer hold the stack back.
	console *console.Console
}

// protoactor's process registry is 1024 concurrent maps of
// cmap.SHARD_COUNT shards each: at the default 32, every actor system
// allocates 32768 maps (about 7 ms of CPU at up, and heap the GC scans
// for the stack's life) for a stack of tens of actors, which one shard
// per map serves as well. Nothing else here uses cmap.
func init() { cmap.SHARD_COUNT = 1 }

// quietLogger routes protoactor's own logging away from the console that
// carries service logs.
func quietLogger(*actor.ActorSystem) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start spawns the stack's actors. Done reports when everything is gone.
func Start(cfg StackConfig) *System {
	if cfg.Clock == nil {
		cfg.Clock = policy.RealClock{}
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(quietLogger))
	st := &System{system: system, done: make(chan StackDone, 1), pipes: newPipeTracker()}
	parallel := cfg.Parallel
	if parallel <= 0 {
		parallel = singularity.DefaultParallel()
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
	st.console = console.New(cfg.Stdout, cfg.Stderr, cfg.Plan.Project)
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

// TearDown asks for a graceful teardown of the whole stack (first Ctrl-C); reason is printed.
func (s *System) TearDown(reason string) { s.TearDownWithin(reason, nil) }

// TearDownWithin is TearDown with every service's grace period set to timeout
// (down -t); nil keeps each service's own.
func (s *System) TearDownWithin(reason string, timeout *time.Duration) {
	s.console.Stop(false)
	s.system.Root.Send(s.root, &StopStack{Reason: reason, Timeout: timeout})
}

// KillAll asks for an immediate teardown (second Ctrl-C).
func (s *System) KillAll() {
	s.console.Stop(true)
	s.system.Root.Send(s.root, &KillStack{})
}

// Done receives one StackDone when everything is gone.
func (s *System) Done() <-chan StackDone { return s.done }

// requestTimeout bounds a control request to the supervisor, which answers
// at once (it never blocks in Receive).
const requestTimeout = 10 * time.Second

func (s *System) request(msg any) (any, error) {
	res, err := s.system.Root.RequestFuture(s.root, msg, requestTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("the stack supervisor did not answer: %w", err)
	}
	return res, nil
}

// Ps returns every replica's row.
func (s *System) Ps() ([]api.Replica, error) {
	res, err := s.request(&PsRequest{})
	if err != nil {
		return nil, err
	}
	rows, _ := res.([]api.Replica)
	return rows, nil
}

// Command runs a user command on services and returns the replicas it
// acts on.
func (s *System) Command(req *CommandRequest) ([]string, error) {
	return s.result(s.request(req))
}

// Scale sets replica counts.
func (s *System) Scale(req *ScaleRequest) ([]string, error) {
	return s.result(s.request(req))
}

func (s *System) result(res any, err error) ([]string, error) {
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
func (s *System) Subscribe() chan api.Event {
	ch := make(chan api.Event, subscriberBuffer)
	s.system.Root.Send(s.root, &Subscribe{Ch: ch})
	return ch
}

// Unsubscribe ends a subscription.
func (s *System) Unsubscribe(ch chan api.Event) { s.system.Root.Send(s.root, &Unsubscribe{Ch: ch}) }

// subscriberBuffer events may wait for a listener before it is dropped.
const subscriberBuffer = 4096

// Flush returns once the logger has written every status line and log
// batch sent to it before.
func (s *System) Flush() {
	_, _ = s.system.Root.RequestFuture(s.logger, &FlushLogs{}, requestTimeout).Result()
}

// pipeIdle: at the end of up, an output pipe that has had nothing to say
// for this long is held by a process that outlived its instance; its
// lines are not waited for.
const pipeIdle = time.Second

// Close waits until every line the processes wrote has reached the
// logger's output, however slowly that is read (after TearDown only while
// stdout makes progress, after KillAll not at all: see console.Console.Close),
// flushes the logger and stops the actor system; call after Done, when
// every instance is gone. TearDown and KillAll may be called while it waits.
func (s *System) Close() {
	s.pipes.wait(pipeIdle)
	_, _ = s.system.Root.RequestFuture(s.logger, &FlushLogs{}, 5e9).Result()
	_ = s.system.Root.PoisonFuture(s.root).Wait()
	_ = s.system.Root.PoisonFuture(s.logger).Wait()
	s.console.Close()
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
	// removing: scaled down; the replica goes once it has stopped.
	removing bool
	// crashed: the service actor panicked and was stopped; the supervisor
	// stops its instance and ignores what the dead actor sent before.
	crashed bool
	// alone: a user's restart --no-deps; its dependents do not follow
	// the next start.
	alone bool
}

func (r *replicaState) done() bool { return supervision.Gone(r.row) }

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

	rules policy.ExitRules
	// phase is the stack's (running, stopping, killing, finished); walk,
	// the teardown in reverse dependency order.
	phase supervision.Phase
	walk  supervision.Teardown
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
		if !a.phase.TearingDown() {
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
		if a.phase == supervision.Finished {
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

func (a *stackActor) start(ctx actor.Context) {
	a.replicas = map[string][]*replicaState{}
	a.dependents = map[string][]string{}
	a.lastSent = map[string]lifecycle.DepStatus{}
	a.subs = map[chan api.Event]bool{}
	a.counts = map[string]int{}
	a.removed = map[string]bool{}
	a.updates = map[string]*update{}
	a.spawned = map[string]int{}
	a.orphans = map[string]bool{}
	a.rules = policy.ExitRules{Exit: a.cfg.Exit}
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

func (a *stackActor) replica(service string, replica int) *replicaState {
	reps := a.replicas[service]
	if replica < 1 || replica > len(reps) {
		return nil
	}
	return reps[replica-1]
}

func (a *stackActor) onEvent(ctx actor.Context, ev api.Event) {
	r := a.replica(ev.Service, ev.Replica)
	if r == nil || r.crashed {
		return
	}
	supervision.Apply(&r.row, ev, r.svc.Healthcheck != nil)
	a.cfg.Metrics.Observe(ev)
	a.fanOut(ev)
	if r.removing && r.done() {
		a.removeReplica(ctx, ev.Service, r)
	}
	if r.replacing != nil && r.done() && !a.phase.TearingDown() {
		a.respawn(ctx, r)
		return
	}
	a.observeUpdate(ctx, r, ev)
	if ev.Kind == api.EventDied && !r.removing {
		// Every exit counts for --exit-code-from, even one the teardown
		// caused; only one sstack did not cause can abort.
		requested := ev.Requested || a.phase.TearingDown()
		if a.rules.Exited(ev.Service, ev.ExitCode, requested) {
			a.publish(ctx, api.Event{Kind: api.EventAborting})
			a.teardown(ctx)
			return
		}
	}
	if a.phase.TearingDown() {
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

	if ev.Kind == api.EventFailed && !a.cfg.Detached {
		// A service that cannot start, or whose dependency failed: as
		// docker compose's "dependency failed to start", exit code 1.
		// A detached stack goes on with what started, as docker
		// compose's containers do; up -d exits 1 (see WaitStarted).
		a.rules.Failed()
		a.teardown(ctx)
		return
	}
	if !a.cfg.Detached && supervision.Over(a.allRows()) {
		a.teardown(ctx)
	}
}

// allRows are the rows of every replica, orphans' too.
func (a *stackActor) allRows() []api.Replica {
	var rows []api.Replica
	for _, reps := range a.replicas {
		for _, r := range reps {
			rows = append(rows, r.row)
		}
	}
	return rows
}

// aggregate is what service's replicas tell its dependents.
func (a *stackActor) aggregate(service string) lifecycle.DepStatus {
	reps := a.replicas[service]
	members := make([]supervision.Member, len(reps))
	for i, r := range reps {
		members[i] = supervision.Member{Row: r.row, Removing: r.removing}
	}
	return supervision.Status(service, members)
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

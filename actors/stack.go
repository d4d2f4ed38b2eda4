package actors

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/actors/policy"
	"sstack/compose"
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
	Format       LogFormat
	Stdout       io.Writer // service output
	Stderr       io.Writer // sstack's status lines

	// docker compose's exit behaviour flags.
	AbortOnExit    bool
	AbortOnFailure bool
	ExitCodeFrom   string
}

// Stack is a running stack: an actor system with the logger and the stack
// supervisor, which spawns one service actor per replica.
type Stack struct {
	system *actor.ActorSystem
	root   *actor.PID
	logger *actor.PID
	done   chan StackDone
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
	st := &Stack{system: system, done: make(chan StackDone, 1)}
	format := cfg.Format
	format.Project = cfg.Plan.Project
	for _, svc := range cfg.Plan.Services {
		for r := 1; r <= svc.Replicas; r++ {
			if n := len(DisplayName(svc.Name, r)); n > format.Width {
				format.Width = n
			}
		}
	}
	st.logger = system.Root.Spawn(NewLogger(format, cfg.Stdout, cfg.Stderr, cfg.Metrics))
	props := actor.PropsFromProducer(func() actor.Actor {
		return &stackActor{cfg: cfg, logger: st.logger, done: st.done}
	}, actor.WithSupervisor(actor.NewOneForOneStrategy(0, 0, func(reason any) actor.Directive {
		return actor.StopDirective
	})))
	st.root = system.Root.Spawn(props)
	return st
}

// Stop asks for a graceful teardown (first Ctrl-C).
func (s *Stack) Stop(reason string) { s.system.Root.Send(s.root, &StopStack{Reason: reason}) }

// Kill asks for an immediate teardown (second Ctrl-C).
func (s *Stack) Kill() { s.system.Root.Send(s.root, &KillStack{}) }

// Done is closed-over by main: it receives one StackDone.
func (s *Stack) Done() <-chan StackDone { return s.done }

// Status prints one of sstack's own lines through the logger, in order with
// the service logs.
func (s *Stack) Status(text string) { s.system.Root.Send(s.logger, &StatusLine{Text: text}) }

// Close flushes the logger and stops the actor system; call after Done.
func (s *Stack) Close() {
	_, _ = s.system.Root.RequestFuture(s.logger, &FlushLogs{}, 5e9).Result()
	_ = s.system.Root.PoisonFuture(s.root).Wait()
	_ = s.system.Root.PoisonFuture(s.logger).Wait()
	s.system.Shutdown()
}

// DisplayName is the log prefix and status name of a replica, as docker
// compose shows it.
func DisplayName(service string, replica int) string {
	return service + "-" + strconv.Itoa(replica)
}

type replicaState struct {
	pid      *actor.PID
	state    ServiceState
	started  bool // the process started at least once
	exitCode int
	reason   string
}

// stackActor supervises the service actors: it routes dependency readiness
// to dependents, decides when the stack is over, and tears it down in
// reverse dependency order.
type stackActor struct {
	cfg    StackConfig
	logger *actor.PID
	done   chan StackDone

	replicas   map[string][]*replicaState // by service, index replica-1
	dependents map[string][]string        // service -> services that depend on it
	lastSent   map[string]DependencyUpdate

	stopping bool
	killing  bool
	stopSent map[string]bool
	exitCode int
	finished bool
}

func (a *stackActor) status(ctx actor.Context, format string, args ...any) {
	ctx.Send(a.logger, &StatusLine{Text: fmt.Sprintf(format, args...)})
}

func (a *stackActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *ServiceStatus:
		a.onStatus(ctx, msg)
	case *StopStack:
		if !a.stopping {
			if msg.Reason != "" {
				a.status(ctx, "%s", msg.Reason)
			}
			a.teardown(ctx, 0)
		}
	case *KillStack:
		a.kill(ctx)
	case *actor.Terminated:
		a.onTerminated(ctx, msg)
	}
}

func (a *stackActor) start(ctx actor.Context) {
	plan := a.cfg.Plan
	a.replicas = map[string][]*replicaState{}
	a.dependents = map[string][]string{}
	a.lastSent = map[string]DependencyUpdate{}
	a.stopSent = map[string]bool{}
	known := map[string]bool{}
	for _, svc := range plan.Services {
		known[svc.Name] = true
	}
	var names []string
	for i := range plan.Services {
		svc := &plan.Services[i]
		var deps []compose.Dependency
		for _, d := range svc.DependsOn {
			if !known[d.Service] {
				a.status(ctx, "service %q: depends_on: optional dependency %q is not part of the project; starting without it", svc.Name, d.Service)
				continue
			}
			deps = append(deps, d)
			a.dependents[d.Service] = append(a.dependents[d.Service], svc.Name)
		}
		for r := 1; r <= svc.Replicas; r++ {
			inst := compose.InstanceName(plan.Project, svc.Name, r)
			cfg := ServiceConfig{
				Project:      plan.Project,
				Service:      svc,
				Replica:      r,
				Instance:     inst,
				Name:         DisplayName(svc.Name, r),
				HostsFile:    a.cfg.HostsFiles[svc.Name],
				HasRunscript: a.cfg.HasRunscript[svc.Name],
				Deps:         deps,
				Runtime:      a.cfg.Runtime,
				Logger:       a.logger,
				Metrics:      a.cfg.Metrics,
				Clock:        a.cfg.Clock,
			}
			pid, err := ctx.SpawnNamed(NewService(cfg), inst)
			if err != nil {
				pid = ctx.Spawn(NewService(cfg))
			}
			a.replicas[svc.Name] = append(a.replicas[svc.Name], &replicaState{pid: pid, state: StateWaiting})
			names = append(names, cfg.Name)
		}
	}
	if len(names) == 0 {
		a.finish(ctx)
		return
	}
	a.status(ctx, "Attaching to %s", strings.Join(names, ", "))
}

func (a *stackActor) onStatus(ctx actor.Context, msg *ServiceStatus) {
	reps := a.replicas[msg.Service]
	if msg.Replica < 1 || msg.Replica > len(reps) {
		return
	}
	r := reps[msg.Replica-1]
	r.state = msg.State
	switch msg.State {
	case StateRunning:
		r.started = true
	case StateExited:
		r.exitCode = msg.ExitCode
	case StateFailed:
		r.reason = msg.Reason
	}
	if a.stopping {
		if msg.State == StateStopped || msg.State == StateFailed {
			a.advanceTeardown(ctx)
		}
		return
	}
	a.notifyDependents(ctx, msg.Service, msg.Restarting)

	switch msg.State {
	case StateFailed:
		a.teardown(ctx, 1)
		return
	case StateExited:
		if a.cfg.ExitCodeFrom == msg.Service || (a.cfg.ExitCodeFrom == "" && a.cfg.AbortOnExit) {
			a.status(ctx, "Aborting on container exit...")
			a.teardown(ctx, msg.ExitCode)
			return
		}
		if a.cfg.AbortOnFailure && msg.ExitCode != 0 {
			a.status(ctx, "Aborting on container failure...")
			a.teardown(ctx, msg.ExitCode)
			return
		}
	}
	if a.allOver() {
		code := 0
		if a.cfg.ExitCodeFrom != "" {
			for _, r := range a.replicas[a.cfg.ExitCodeFrom] {
				code = r.exitCode
			}
		}
		a.teardown(ctx, code)
	}
}

// allOver: every replica has exited for good, so `up` ends as docker
// compose's does.
func (a *stackActor) allOver() bool {
	for _, reps := range a.replicas {
		for _, r := range reps {
			if r.state != StateExited && r.state != StateFailed {
				return false
			}
		}
	}
	return true
}

func (a *stackActor) aggregate(service string) DependencyUpdate {
	u := DependencyUpdate{Service: service, Started: true, Healthy: true, Exited: true}
	for _, r := range a.replicas[service] {
		if !r.started {
			u.Started = false
		}
		if r.state != StateHealthy {
			u.Healthy = false
		}
		if r.state == StateUnhealthy {
			u.Unhealthy = true
		}
		if r.state == StateExited {
			if r.exitCode != 0 && u.ExitCode == 0 {
				u.ExitCode = r.exitCode
			}
		} else {
			u.Exited = false
		}
		if r.state == StateFailed && !u.Failed {
			u.Failed, u.Reason = true, r.reason
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
			msg := u
			ctx.Send(r.pid, &msg)
		}
	}
}

// teardown stops services in reverse dependency order: a service is asked
// to stop once every service depending on it has stopped.
func (a *stackActor) teardown(ctx actor.Context, code int) {
	if a.stopping {
		return
	}
	a.stopping = true
	a.exitCode = code
	a.advanceTeardown(ctx)
}

func (a *stackActor) serviceDone(service string) bool {
	for _, r := range a.replicas[service] {
		if r.state != StateStopped && r.state != StateFailed {
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
				ctx.Send(r.pid, &StopService{Kill: a.killing})
			}
		}
	}
	if all {
		a.finish(ctx)
	}
}

func (a *stackActor) kill(ctx actor.Context) {
	a.killing = true
	if !a.stopping {
		a.stopping = true
	}
	for name, reps := range a.replicas {
		a.stopSent[name] = true
		for _, r := range reps {
			if r.state != StateStopped {
				ctx.Send(r.pid, &StopService{Kill: true})
			}
		}
	}
	a.advanceTeardown(ctx)
}

// onTerminated: a service actor died (a panic in sstack's own code): its
// replica counts as failed so the stack does not wait for it forever.
func (a *stackActor) onTerminated(ctx actor.Context, msg *actor.Terminated) {
	for name, reps := range a.replicas {
		for i, r := range reps {
			if r.pid.Equal(msg.Who) && r.state != StateStopped {
				inst := compose.InstanceName(a.cfg.Plan.Project, name, i+1)
				a.status(ctx, "%s: internal error in sstack; stopping instance %s", DisplayName(name, i+1), inst)
				r.state = StateFailed
				r.reason = "internal error"
				a.teardown(ctx, 1)
				a.advanceTeardown(ctx)
			}
		}
	}
}

func (a *stackActor) finish(ctx actor.Context) {
	if a.finished {
		return
	}
	a.finished = true
	a.done <- StackDone{ExitCode: a.exitCode}
}

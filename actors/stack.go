package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

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

	// docker compose's exit behaviour flags. As in docker compose,
	// ExitCodeFrom implies AbortOnExit unless AbortOnFailure is set, and
	// AbortOnFailure wins over AbortOnExit (docker compose refuses the two
	// together; main should too).
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
	pipes  *pipeTracker
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
	// stackActor is the supervision strategy of its children itself (it
	// implements actor.SupervisorStrategy), so it can stop the instance of
	// a service actor that crashed.
	props := actor.PropsFromProducer(func() actor.Actor {
		return &stackActor{cfg: cfg, logger: st.logger, done: st.done, pipes: st.pipes}
	})
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

// pipeIdle: at the end of up, an output pipe that has had nothing to say
// for this long is held by a process that outlived its instance; its
// lines are not waited for.
const pipeIdle = time.Second

// Close waits until every line the processes wrote has reached the
// logger's output, however slowly that is read, flushes the logger and
// stops the actor system; call after Done, when every instance is gone.
func (s *Stack) Close() {
	s.pipes.wait(pipeIdle)
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
	instance string
	state    ServiceState
	started  bool // the process started at least once
	exitCode int
	reason   string
	// crashed: the service actor panicked and was stopped; the supervisor
	// stops its instance and ignores what the dead actor sent before.
	crashed bool
}

// stackActor supervises the service actors: it routes dependency readiness
// to dependents, decides when the stack is over, and tears it down in
// reverse dependency order.
type stackActor struct {
	cfg    StackConfig
	logger *actor.PID
	done   chan StackDone
	pipes  *pipeTracker
	// ctx is the actor's context, for HandleFailure, which protoactor
	// calls in that context but without passing it as an actor.Context.
	ctx actor.Context

	replicas   map[string][]*replicaState // by service, index replica-1
	dependents map[string][]string        // service -> services that depend on it
	lastSent   map[string]DependencyUpdate

	stopping bool
	killing  bool
	stopSent map[string]bool
	finished bool

	// exitCode is what `up` returns (see onProcessExit for docker
	// compose's rules). codeFixed: a failure (1) or Ctrl-C (0) decided it
	// and no later exit changes it. fromCaptured: the first exit of the
	// --exit-code-from service has been seen.
	exitCode     int
	codeFixed    bool
	fromCaptured bool
}

func (a *stackActor) status(ctx actor.Context, format string, args ...any) {
	ctx.Send(a.logger, &StatusLine{Text: fmt.Sprintf(format, args...)})
}

func (a *stackActor) Receive(ctx actor.Context) {
	defer a.recoverSelf(ctx)
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.ctx = ctx
		a.start(ctx)
	case *ServiceStatus:
		a.onStatus(ctx, msg)
	case *ProcessExit:
		a.onProcessExit(ctx, msg)
	case *StopStack:
		if !a.stopping {
			if msg.Reason != "" {
				a.status(ctx, "%s", msg.Reason)
			}
			a.codeFixed = true // Ctrl-C: exit code 0
			a.teardown(ctx)
		}
	case *KillStack:
		a.kill(ctx)
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
	a.status(ctx, "sstack: internal error in the stack supervisor: %v\n%s", r, debug.Stack())
	a.exitCode, a.codeFixed = 1, true
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
	for _, svc := range a.cfg.Plan.Services {
		for r := 1; r <= svc.Replicas; r++ {
			names = append(names, compose.InstanceName(a.cfg.Plan.Project, svc.Name, r))
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
				pipes:        a.pipes,
			}
			pid, err := ctx.SpawnNamed(NewService(cfg), inst)
			if err != nil {
				pid = ctx.Spawn(NewService(cfg))
			}
			a.replicas[svc.Name] = append(a.replicas[svc.Name], &replicaState{pid: pid, instance: inst, state: StateWaiting})
			names = append(names, cfg.Name)
		}
	}
	if len(names) == 0 {
		a.finish()
		return
	}
	a.status(ctx, "Attaching to %s", strings.Join(names, ", "))
}

func (a *stackActor) replica(service string, replica int) *replicaState {
	reps := a.replicas[service]
	if replica < 1 || replica > len(reps) {
		return nil
	}
	return reps[replica-1]
}

func (a *stackActor) onStatus(ctx actor.Context, msg *ServiceStatus) {
	r := a.replica(msg.Service, msg.Replica)
	if r == nil || r.crashed {
		return
	}
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

	if msg.State == StateFailed {
		// A service that cannot start, or whose dependency failed: as
		// docker compose's "dependency failed to start", exit code 1.
		a.exitCode, a.codeFixed = 1, true
		a.teardown(ctx)
		return
	}
	if a.allOver() {
		a.teardown(ctx)
	}
}

// onProcessExit applies docker compose's exit rules (cmd/compose/up.go and
// pkg/compose/up.go, v2.27+):
//   - --abort-on-container-exit: the first exit of any process, restarted
//     or not, stops the stack; `up` returns that exit code.
//   - --abort-on-container-failure: the same for the first non-zero exit;
//     exits with 0 are ignored.
//   - --exit-code-from S implies --abort-on-container-exit (unless
//     --abort-on-container-failure is given); `up` returns the code of S's
//     first exit, even when the abort stopped S (e.g. 137 or 143).
//
// Exits sstack caused (teardown, depends_on.restart) never abort.
func (a *stackActor) onProcessExit(ctx actor.Context, msg *ProcessExit) {
	r := a.replica(msg.Service, msg.Replica)
	if r == nil || r.crashed {
		return
	}
	if !a.stopping && !msg.Stopped && a.abortsOn(msg.ExitCode) {
		a.status(ctx, "Aborting on container exit...")
		a.exitCode = msg.ExitCode
		a.teardown(ctx)
	}
	if msg.Service == a.cfg.ExitCodeFrom && !a.fromCaptured {
		a.fromCaptured = true
		if !a.codeFixed {
			a.exitCode = msg.ExitCode
		}
	}
}

func (a *stackActor) abortsOn(code int) bool {
	if a.cfg.AbortOnFailure {
		return code != 0
	}
	return a.cfg.AbortOnExit || a.cfg.ExitCodeFrom != ""
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
func (a *stackActor) teardown(ctx actor.Context) {
	if a.stopping {
		return
	}
	a.stopping = true
	a.advanceTeardown(ctx)
}

// serviceDone: every replica is gone. A replica that failed never had a
// running instance; one whose actor crashed is gone once the supervisor
// has stopped its instance.
func (a *stackActor) serviceDone(service string) bool {
	for _, r := range a.replicas[service] {
		if r.state != StateStopped && (r.state != StateFailed || r.crashed) {
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
					ctx.Send(r.pid, &StopService{Kill: a.killing})
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
	if !a.stopping {
		a.stopping = true
	}
	for name, reps := range a.replicas {
		a.stopSent[name] = true
		for _, r := range reps {
			if r.state != StateStopped && !r.crashed {
				ctx.Send(r.pid, &StopService{Kill: true})
			}
		}
	}
	a.advanceTeardown(ctx)
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
	if service, i, r := a.replicaOf(child); r != nil {
		name = DisplayName(service, i+1)
	}
	a.status(a.ctx, "sstack: internal error in %s, handling %T: panic: %s", name, message, what)
	a.crashed(a.ctx, child)
}

func (a *stackActor) replicaOf(pid *actor.PID) (service string, index int, r *replicaState) {
	for name, reps := range a.replicas {
		for i, r := range reps {
			if r.pid.Equal(pid) {
				return name, i, r
			}
		}
	}
	return "", 0, nil
}

// crashed handles a service actor that is gone without having stopped its
// instance: the supervisor stops the instance itself and takes the stack
// down with exit code 1.
func (a *stackActor) crashed(ctx actor.Context, pid *actor.PID) {
	a.exitCode, a.codeFixed = 1, true
	service, i, r := a.replicaOf(pid)
	if r != nil && !r.crashed && r.state != StateStopped {
		wasCreating := r.state == StateCreating
		r.crashed = true
		r.state = StateFailed
		r.reason = "internal error in sstack"
		a.status(ctx, "%s: stopping instance %s and the stack", DisplayName(service, i+1), r.instance)
		rt, inst, self, root := a.cfg.Runtime, r.instance, ctx.Self(), ctx.ActorSystem().Root
		go func() {
			err := stopCrashedInstance(rt, inst, wasCreating)
			root.Send(self, &crashCleaned{service: service, replica: i + 1, err: err})
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
	if msg.err != nil {
		a.status(ctx, "%s: %v", r.instance, msg.err)
	} else {
		a.status(ctx, "Instance %s  Stopped", r.instance)
	}
	r.state = StateStopped
	a.advanceTeardown(ctx)
}

// onTerminated: a service actor stopped. After a crash HandleFailure has
// dealt with it; any other unexpected end is handled the same way, so the
// stack never waits for an actor that is gone.
func (a *stackActor) onTerminated(ctx actor.Context, msg *actor.Terminated) {
	if a.finished {
		return
	}
	if service, i, r := a.replicaOf(msg.Who); r != nil && !r.crashed && r.state != StateStopped {
		a.status(ctx, "sstack: internal error: the actor of %s stopped unexpectedly", DisplayName(service, i+1))
		a.crashed(ctx, msg.Who)
	}
}

func (a *stackActor) finish() {
	if a.finished {
		return
	}
	a.finished = true
	a.done <- StackDone{ExitCode: a.exitCode}
}

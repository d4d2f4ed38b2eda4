package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/actors/policy"
	"sstack/compose"
	"sstack/metrics"
	"sstack/singularity"
)

// ServiceConfig is what one service actor (one replica) needs.
type ServiceConfig struct {
	Project   string
	Service   *compose.Service
	Replica   int
	Instance  string // Apptainer instance name, <project>.<service>.<replica>
	Name      string // display name, <service>-<replica>
	HostsFile string
	// HasRunscript: the image has a runscript, so a service without an
	// entrypoint is started with `run` (command replaces CMD).
	HasRunscript bool
	// Deps are the dependencies this replica waits for (optional ones that
	// are not part of the project already removed).
	Deps    []compose.Dependency
	Runtime singularity.Runtime
	Logger  *actor.PID
	Metrics *metrics.Metrics
	Clock   policy.Clock
	// pipes tracks the output pipes, so that the end of up waits until
	// their last lines are written (nil: not tracked).
	pipes *pipeTracker
}

// serviceActor owns one replica: its instance, its process, its restart
// policy and healthcheck. All blocking work runs in goroutines that report
// back as messages tagged with the run they belong to.
type serviceActor struct {
	cfg    ServiceConfig
	system *actor.ActorSystem
	self   *actor.PID
	parent *actor.PID

	state    ServiceState
	deps     map[string]*DependencyUpdate
	warned   map[string]bool     // optional dependencies already warned about
	run      int                 // incarnation of the service process
	proc     singularity.Process // nil when no process runs
	starting bool                // a process start is in flight
	instance bool                // the instance is (believed to be) up
	creating bool                // an instance start is in flight
	stopping bool                // sstack asked for a stop: never restart
	// restartPending: a restartDue timer is armed, the restart policy
	// starts the process again.
	restartPending bool
	// followDep: the process is being stopped because a dependency with
	// depends_on.restart restarted; it is started again when it exits.
	followDep bool
	// restartRun: the current run is a restart, which dependents with
	// depends_on.restart follow.
	restartRun bool
	startAsked time.Time

	restarts *policy.RestartTracker
	health   *policy.HealthTracker
}

// NewService returns the props of a service actor. A panic in the actor is
// recovered with its stack trace and handed to the stack supervisor (see
// stackActor.HandleFailure), which stops the actor and its instance.
func NewService(cfg ServiceConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &serviceActor{cfg: cfg, deps: map[string]*DependencyUpdate{}, warned: map[string]bool{}}
	}, actor.WithReceiverMiddleware(recoverPanics))
}

// actorPanic is the failure reason of an actor that panicked: the panic
// value and the stack where it happened. protoactor passes only the value
// to the supervisor, and by then the stack of the panic is gone.
type actorPanic struct {
	value any
	stack []byte
}

func (p *actorPanic) Error() string { return fmt.Sprint(p.value) }

// recoverPanics captures the stack trace of a panic in Receive and panics
// again with it, so that protoactor's supervision still handles the failure.
func recoverPanics(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		defer func() {
			if r := recover(); r != nil {
				// While the panic unwinds, debug.Stack still holds the
				// frames of the code that panicked.
				panic(&actorPanic{value: r, stack: debug.Stack()})
			}
		}()
		next(c, env)
	}
}

// crashService names a service whose actor panics as soon as its process
// has started. It is fault injection for the supervision tests, nothing
// else: unit tests set it, integration tests link it into their own binary
// with -ldflags "-X sstack/actors.crashService=NAME". Empty in real builds.
var crashService string

func injectCrash(service, name string) {
	if crashService != "" && crashService == service {
		panic("injected crash of " + name + " (crashService test hook)")
	}
}

func (s *serviceActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s.system = ctx.ActorSystem()
		s.self = ctx.Self()
		s.parent = ctx.Parent()
		s.restarts = policy.NewRestartTracker(s.cfg.Service.Restart, s.cfg.Clock)
		s.cfg.Metrics.Register(s.cfg.Service.Name, s.cfg.Replica, s.cfg.Service.Healthcheck != nil)
		s.maybeCreate(ctx)
	case *DependencyUpdate:
		s.deps[msg.Service] = msg
		s.onDependency(ctx, msg)
	case *instanceStarted:
		s.onInstanceStarted(ctx, msg)
	case *processStarted:
		s.onProcessStarted(ctx, msg)
	case *processExited:
		s.onProcessExited(ctx, msg)
	case *restartDue:
		if msg.run == s.run && s.restartPending && !s.stopping {
			s.restartPending = false
			s.cfg.Metrics.Restarted(s.cfg.Service.Name, s.cfg.Replica)
			s.startProcess(ctx, true)
		}
	case *graceExpired:
		if msg.run == s.run && s.proc != nil {
			s.status("%s did not stop within %s, killing it", s.cfg.Name, s.cfg.Service.StopGracePeriod)
			_ = s.proc.Kill()
		}
	case *healthDue:
		s.onHealthDue(ctx, msg)
	case *healthResult:
		s.onHealthResult(ctx, msg)
	case *StopService:
		s.onStop(ctx, msg)
	case *instanceStopped:
		// An instance stopped from outside is already gone: nothing to say.
		if msg.err != nil && !errors.Is(msg.err, singularity.ErrNoInstance) {
			s.status("%s: %v", s.cfg.Instance, msg.err)
		}
		s.instance = false
		s.status("Instance %s  Stopped", s.cfg.Instance)
		s.setState(ctx, StateStopped, 0, "")
	}
}

func (s *serviceActor) setState(ctx actor.Context, st ServiceState, code int, reason string) {
	s.state = st
	ctx.Send(s.parent, &ServiceStatus{Service: s.cfg.Service.Name, Replica: s.cfg.Replica, State: st, ExitCode: code, Reason: reason})
}

// reportExit tells the supervisor about every exit of the process, for
// --abort-on-container-exit and friends; it precedes any state change.
func (s *serviceActor) reportExit(ctx actor.Context, code int, restarting, stopped bool) {
	ctx.Send(s.parent, &ProcessExit{Service: s.cfg.Service.Name, Replica: s.cfg.Replica, ExitCode: code, Restarting: restarting, Stopped: stopped})
}

func (s *serviceActor) status(format string, args ...any) {
	s.system.Root.Send(s.cfg.Logger, &StatusLine{Text: fmt.Sprintf(format, args...)})
}

// depsSatisfied reports whether every dependency meets its condition, and
// the reason the service can never start if a required one never will. An
// optional dependency (required: false) that never will only warns, once.
func (s *serviceActor) depsSatisfied() (ok bool, failure string) {
	ok = true
	for _, d := range s.cfg.Deps {
		met, never, why := conditionMet(d, s.deps[d.Service])
		switch {
		case never && d.Required:
			return false, fmt.Sprintf("dependency %q %s", d.Service, why)
		case never:
			if !s.warned[d.Service] {
				s.warned[d.Service] = true
				s.status("%s: optional dependency %q %s; starting without it (required: false)", s.cfg.Name, d.Service, why)
			}
		case !met:
			ok = false
		}
	}
	return ok, ""
}

// conditionMet interprets a dependency's state for a depends_on condition:
// met, or never going to be met (and why).
func conditionMet(d compose.Dependency, u *DependencyUpdate) (met, never bool, why string) {
	if u == nil {
		return false, false, ""
	}
	if u.Failed {
		return false, true, "failed: " + u.Reason
	}
	switch d.Condition {
	case compose.ConditionHealthy:
		switch {
		case u.Healthy:
			return true, false, ""
		case u.Unhealthy:
			return false, true, "is unhealthy"
		case u.Exited:
			return false, true, fmt.Sprintf("exited with code %d before it became healthy", u.ExitCode)
		}
	case compose.ConditionCompletedSuccessfully:
		if u.Exited {
			if u.ExitCode == 0 {
				return true, false, ""
			}
			return false, true, fmt.Sprintf("did not complete successfully: exit %d", u.ExitCode)
		}
	default:
		if u.Started {
			return true, false, ""
		}
		if u.Exited {
			return false, true, fmt.Sprintf("exited with code %d before its process started", u.ExitCode)
		}
	}
	return false, false, ""
}

func (s *serviceActor) onDependency(ctx actor.Context, u *DependencyUpdate) {
	if s.state == StateWaiting && !s.stopping {
		s.maybeCreate(ctx)
		return
	}
	// depends_on.restart: follow a restarted dependency.
	if u.Restarted && s.proc != nil && !s.stopping && !s.followDep {
		for _, d := range s.cfg.Deps {
			if d.Service == u.Service && d.Restart {
				s.status("%s restarting because its dependency %s restarted", s.cfg.Name, u.Service)
				s.followDep = true
				s.signalStop(ctx)
				return
			}
		}
	}
}

func (s *serviceActor) maybeCreate(ctx actor.Context) {
	if s.stopping || s.creating || s.instance {
		return
	}
	ok, failure := s.depsSatisfied()
	if failure != "" {
		s.status("%s cannot start: %s", s.cfg.Name, failure)
		s.setState(ctx, StateFailed, 0, failure)
		return
	}
	if !ok {
		return
	}
	s.creating = true
	s.startAsked = s.cfg.Clock.Now()
	s.setState(ctx, StateCreating, 0, "")
	s.status("Instance %s  Creating", s.cfg.Instance)
	spec := instanceSpec(s.cfg.Instance, s.cfg.Service, s.cfg.HostsFile)
	rt, self, root := s.cfg.Runtime, s.self, s.system.Root
	go func() {
		err := rt.StartInstance(context.Background(), spec)
		root.Send(self, &instanceStarted{err: err})
	}()
}

func (s *serviceActor) onInstanceStarted(ctx actor.Context, msg *instanceStarted) {
	s.creating = false
	if msg.err != nil {
		if s.stopping {
			s.setState(ctx, StateStopped, 0, "")
			return
		}
		reason := fmt.Sprintf("instance %s could not be started: %v", s.cfg.Instance, msg.err)
		s.status("%s: %s", s.cfg.Name, reason)
		s.setState(ctx, StateFailed, 0, reason)
		return
	}
	s.instance = true
	s.status("Instance %s  Created", s.cfg.Instance)
	if s.stopping {
		s.stopInstance(ctx)
		return
	}
	s.startProcess(ctx, false)
}

// startProcess starts a new run of the service process. After a restart the
// instance may have been stopped from outside: then it is recreated first.
func (s *serviceActor) startProcess(ctx actor.Context, restart bool) {
	s.run++
	s.starting = true
	s.restartRun = restart
	// A first start is timed from maybeCreate (instance and process); a
	// restart from now (the process alone, not the restart delay).
	if restart {
		s.startAsked = s.cfg.Clock.Now()
	}
	run, self, root := s.run, s.self, s.system.Root
	rt, logger, pipes := s.cfg.Runtime, s.cfg.Logger, s.cfg.pipes
	ispec := instanceSpec(s.cfg.Instance, s.cfg.Service, s.cfg.HostsFile)
	pspec := processSpec(s.cfg.Instance, s.cfg.Service, s.cfg.HasRunscript)
	src := &LogSource{Service: s.cfg.Service.Name, Replica: s.cfg.Replica, Name: s.cfg.Name}
	name := s.cfg.Name
	go func() {
		if restart {
			infos, err := rt.ListInstances(context.Background(), ispec.Name)
			if err == nil && len(infos) == 0 {
				root.Send(logger, &StatusLine{Text: fmt.Sprintf("%s: instance %s is gone, recreating it", name, ispec.Name)})
				if err := rt.StartInstance(context.Background(), ispec); err != nil {
					root.Send(self, &processStarted{run: run, err: fmt.Errorf("recreating instance %s: %w", ispec.Name, err)})
					return
				}
			} else {
				root.Send(logger, &StatusLine{Text: fmt.Sprintf("%s: restarting the process in instance %s", name, ispec.Name)})
			}
		}
		runProcess(rt, root, self, logger, pipes, run, pspec, src)
	}()
}

// runProcess starts the process with its output on pipes, pumps both pipes
// to the logger and reports the exit once both are drained.
func runProcess(rt singularity.Runtime, root *actor.RootContext, self, logger *actor.PID, pipes *pipeTracker, run int, spec singularity.ProcessSpec, src *LogSource) {
	outR, outW, err := logPipe()
	if err != nil {
		root.Send(self, &processStarted{run: run, err: err})
		return
	}
	errR, errW, err := logPipe()
	if err != nil {
		outR.Close()
		outW.Close()
		root.Send(self, &processStarted{run: run, err: err})
		return
	}
	spec.Stdout, spec.Stderr = outW, errW
	proc, err := rt.StartProcess(context.Background(), spec)
	outW.Close() // the child has its own copies
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		root.Send(self, &processStarted{run: run, err: err})
		return
	}
	// Tracked before the exit can be reported, so that the stack's end
	// waits for these lines.
	outRd, outDone := pipes.track(outR)
	errRd, errDone := pipes.track(errR)
	root.Send(self, &processStarted{run: run, proc: proc})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer outDone(); pumpLines(root, logger, src, Stdout, outRd, time.Now) }()
	go func() { defer wg.Done(); defer errDone(); pumpLines(root, logger, src, Stderr, errRd, time.Now) }()
	code, _ := proc.Wait()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		// A background child inside the instance still holds the pipe;
		// report the exit now, its output keeps flowing until it ends.
	}
	go func() { <-drained; outR.Close(); errR.Close() }()
	root.Send(self, &processExited{run: run, code: code})
}

func (s *serviceActor) onProcessStarted(ctx actor.Context, msg *processStarted) {
	if msg.run != s.run {
		if msg.proc != nil {
			_ = msg.proc.Kill()
		}
		return
	}
	s.starting = false
	if msg.err != nil {
		s.status("%s: %v", s.cfg.Name, msg.err)
		s.onProcessExited(ctx, &processExited{run: msg.run, code: 255})
		return
	}
	s.proc = msg.proc
	s.restarts.Started()
	s.cfg.Metrics.Started(s.cfg.Service.Name, s.cfg.Replica, s.cfg.Clock.Now().Sub(s.startAsked))
	s.status("Instance %s  Started", s.cfg.Instance)
	s.state = StateRunning
	ctx.Send(s.parent, &ServiceStatus{Service: s.cfg.Service.Name, Replica: s.cfg.Replica, State: StateRunning, Restarting: s.restartRun})
	injectCrash(s.cfg.Service.Name, s.cfg.Name)
	if s.stopping {
		s.signalStop(ctx)
		return
	}
	if hc := s.cfg.Service.Healthcheck; hc != nil {
		s.health = policy.NewHealthTracker(*hc, s.cfg.Clock)
		s.scheduleHealth(s.health.NextProbe())
	}
}

func (s *serviceActor) onProcessExited(ctx actor.Context, msg *processExited) {
	if msg.run != s.run {
		return
	}
	s.proc = nil
	s.health = nil
	s.cfg.Metrics.Exited(s.cfg.Service.Name, s.cfg.Replica, msg.code)
	if s.stopping { // teardown: never restarted
		s.status("%s exited with code %d", s.cfg.Name, msg.code)
		s.reportExit(ctx, msg.code, false, true)
		s.stopInstance(ctx)
		return
	}
	if s.followDep { // stopped to follow a restarted dependency
		s.followDep = false
		s.status("%s exited with code %d", s.cfg.Name, msg.code)
		s.reportExit(ctx, msg.code, true, true)
		s.startProcess(ctx, true) // not counted: the policy did not restart it
		return
	}
	d := s.restarts.Exited(msg.code, false)
	s.status("%s", d.Describe(s.cfg.Name, msg.code))
	s.reportExit(ctx, msg.code, d.Restart, false)
	if d.Restart {
		s.restartPending = true
		run, self, root := s.run, s.self, s.system.Root
		time.AfterFunc(d.Delay, func() { root.Send(self, &restartDue{run: run}) })
		return
	}
	s.setState(ctx, StateExited, msg.code, "")
}

func (s *serviceActor) onStop(ctx actor.Context, msg *StopService) {
	first := !s.stopping
	s.stopping = true
	s.restartPending = false
	s.followDep = false
	switch {
	case s.state == StateStopped:
		if first {
			s.setState(ctx, StateStopped, 0, "")
		}
	case s.proc != nil:
		if msg.Kill {
			_ = s.proc.Kill()
		} else if first {
			s.signalStop(ctx)
		}
	case s.starting || s.creating:
		// the start in flight sees s.stopping when it reports back
	case s.instance:
		if first {
			s.stopInstance(ctx)
		}
	default: // never created
		s.setState(ctx, StateStopped, 0, "")
	}
}

// signalStop sends stop_signal to the service process itself (not to the
// apptainer client, which would die and take the process down with SIGKILL)
// and arms the grace period.
func (s *serviceActor) signalStop(ctx actor.Context) {
	proc := s.proc
	if proc == nil {
		return
	}
	s.status("Instance %s  Stopping", s.cfg.Instance)
	sig := signalFromName(s.cfg.Service.StopSignal)
	name := s.cfg.Name
	logger, root := s.cfg.Logger, s.system.Root
	go func() {
		if err := proc.Signal(sig); err != nil && err != os.ErrProcessDone {
			root.Send(logger, &StatusLine{Text: fmt.Sprintf("%s: sending %s: %v", name, s.cfg.Service.StopSignal, err)})
		}
	}()
	run, self := s.run, s.self
	time.AfterFunc(s.cfg.Service.StopGracePeriod, func() { root.Send(self, &graceExpired{run: run}) })
}

func (s *serviceActor) stopInstance(ctx actor.Context) {
	if !s.instance {
		s.setState(ctx, StateStopped, 0, "")
		return
	}
	rt, name, self, root := s.cfg.Runtime, s.cfg.Instance, s.self, s.system.Root
	// The service process is already gone: only the instance's init is
	// left, so a short timeout is enough.
	go func() {
		err := rt.StopInstance(context.Background(), name, "SIGTERM", 2*time.Second)
		root.Send(self, &instanceStopped{err: err})
	}()
}

func (s *serviceActor) scheduleHealth(d time.Duration) {
	run, self, root := s.run, s.self, s.system.Root
	time.AfterFunc(d, func() { root.Send(self, &healthDue{run: run}) })
}

func (s *serviceActor) onHealthDue(ctx actor.Context, msg *healthDue) {
	if msg.run != s.run || s.health == nil || s.stopping {
		return
	}
	// The start period forgives failures of probes that started inside it,
	// so the tracker needs the start time, not the time of the result.
	s.health.ProbeStarted()
	test, timeout := s.cfg.Service.Healthcheck.Test, s.health.Timeout()
	rt, inst, env := s.cfg.Runtime, s.cfg.Instance, s.cfg.Service.Environment
	run, self, root := s.run, s.self, s.system.Root
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		code, out, err := rt.Exec(cctx, inst, test, env)
		timedOut := cctx.Err() != nil
		if err != nil && !timedOut && code == 0 {
			code = 255
		}
		root.Send(self, &healthResult{run: run, code: code, timedOut: timedOut, output: strings.TrimSpace(string(out))})
	}()
}

func (s *serviceActor) onHealthResult(ctx actor.Context, msg *healthResult) {
	if msg.run != s.run || s.health == nil || s.stopping {
		return
	}
	st, changed := s.health.Result(msg.code, msg.timedOut)
	if changed {
		switch st {
		case policy.Healthy:
			s.status("%s is healthy", s.cfg.Name)
			s.cfg.Metrics.Healthy(s.cfg.Service.Name, s.cfg.Replica, true)
			s.setState(ctx, StateHealthy, 0, "")
		case policy.Unhealthy:
			s.status("%s is unhealthy: %s", s.cfg.Name, lastLine(msg.output, msg.timedOut))
			s.cfg.Metrics.Healthy(s.cfg.Service.Name, s.cfg.Replica, false)
			s.setState(ctx, StateUnhealthy, 0, "")
		}
	}
	s.scheduleHealth(s.health.NextProbe())
}

func lastLine(out string, timedOut bool) string {
	if timedOut {
		return "healthcheck timed out"
	}
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	if out == "" {
		return "healthcheck failed"
	}
	return out
}

// signalFromName maps a compose stop_signal to a signal; compose/ has
// validated it, so a failure here falls back to SIGTERM.
func signalFromName(name string) os.Signal {
	sig, err := singularity.ParseSignal(name)
	if err != nil {
		return syscall.SIGTERM
	}
	return sig
}

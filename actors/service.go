package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/actors/lifecycle"
	"sstack/actors/policy"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/logformat"
	"sstack/internal/prepare"
	"sstack/internal/statedir"
	"sstack/metrics"
	"sstack/singularity"
)

// ServiceConfig is what one service actor (one replica) needs.
type ServiceConfig struct {
	// Spec is what Apptainer is given: the service, the instance name,
	// hosts file, network and runscript.
	prepare.Spec
	Project string
	Replica int
	Name    string // display name, <service>-<replica>
	// ReplicaNets, when set, gives the replica a namespace of its own on
	// the stack network before each instance start (netattach.go).
	ReplicaNets ReplicaNetworks
	// Deps are the dependencies this replica waits for (optional ones that
	// are not part of the project already removed).
	Deps []compose.Dependency
	// Held: the replica is created only (up --no-start) and waits for a
	// user's start.
	Held    bool
	Runtime singularity.Runtime
	Logger  *actor.PID
	Metrics *metrics.Metrics
	Clock   policy.Clock
	// PrepareMounts: the replica's mount paths are its own ({{.Task.Slot}}):
	// create what they need before the instance starts.
	PrepareMounts bool
	// StateDir holds the journal of instance starts (crash-safe down).
	StateDir string
	// slots bounds how many instance starts and stops run at once.
	slots chan struct{}
	// pipes tracks the output pipes, so that the end of up waits until
	// their last lines are written (nil: not tracked).
	pipes *pipeTracker
}

// serviceActor owns one replica: it feeds what happens to the replica's
// life-cycle machine (actors/lifecycle) and performs the effects the
// machine answers. All blocking work runs in goroutines that report back
// as messages tagged with the run they belong to.
type serviceActor struct {
	cfg    ServiceConfig
	system *actor.ActorSystem
	self   *actor.PID
	parent *actor.PID
	m      *lifecycle.Machine

	proc    singularity.Process // of run procRun; nil when none runs
	procRun int
	// final: the replica is being taken away and its instance removed,
	// which ends every process in it: no need to end a run's leftovers.
	final atomic.Bool
}

// NewService returns the props of a service actor. A panic in the actor is
// recovered with its stack trace and handed to the stack supervisor (see
// stackActor.HandleFailure), which stops the actor and its instance.
func NewService(cfg ServiceConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &serviceActor{cfg: cfg}
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
		s.m = lifecycle.New(lifecycle.Config{
			Project: s.cfg.Project, Service: s.cfg.Service, Replica: s.cfg.Replica,
			Instance: s.cfg.Instance, Name: s.cfg.Name, Deps: s.cfg.Deps, Held: s.cfg.Held,
		}, s.cfg.Clock)
		s.cfg.Metrics.Register(s.cfg.Service.Name, s.cfg.Replica, s.cfg.Service.Healthcheck != nil)
		s.feed(ctx, lifecycle.Begin{})
	case *DependencyUpdate:
		s.feed(ctx, lifecycle.DependencyChanged{Status: msg.Status})
	case *StopService:
		if msg.Final {
			s.final.Store(true)
		}
		s.feed(ctx, lifecycle.StopRequested{Final: msg.Final, Kill: msg.Kill, Timeout: msg.Timeout})
	case *StartService:
		s.feed(ctx, lifecycle.StartRequested{})
	case *RestartService:
		s.feed(ctx, lifecycle.RestartRequested{Timeout: msg.Timeout})
	case *SignalService:
		s.feed(ctx, lifecycle.SignalRequested{Signal: msg.Signal})
	case *instanceStarted:
		if msg.err == nil {
			s.cfg.Net = msg.net // the replica's own, for its processes
		}
		s.feed(ctx, lifecycle.InstanceStarted{Err: msg.err})
	case *instanceChecked:
		s.feed(ctx, lifecycle.InstanceChecked{Exists: msg.exists})
	case *processStarted:
		pid := msg.pid
		if msg.proc != nil {
			s.proc, s.procRun = msg.proc, msg.run
		}
		s.feed(ctx, lifecycle.ProcessStarted{Run: msg.run, Pid: pid, Err: msg.err})
		if msg.err == nil && s.m.State() == lifecycle.Running {
			injectCrash(s.cfg.Service.Name, s.cfg.Name)
		}
	case *processExited:
		if msg.run == s.procRun {
			s.proc = nil
		}
		s.feed(ctx, lifecycle.ProcessExited{Run: msg.run, Code: msg.code, OOMKilled: msg.oomKilled})
	case *timerFired:
		s.feed(ctx, lifecycle.TimerFired{Timer: msg.timer})
	case *healthResult:
		s.feed(ctx, lifecycle.ProbeDone{Run: msg.run, Code: msg.code, TimedOut: msg.timedOut, Output: msg.output})
	case *instanceStopped:
		err := msg.err
		if errors.Is(err, singularity.ErrNoInstance) {
			err = nil // stopped from outside: already gone
		}
		s.feed(ctx, lifecycle.InstanceStopped{Err: err})
	case *signalFailed:
		s.publish(ctx, api.Event{Kind: api.EventWarning, Message: msg.err.Error()})
	}
}

// feed hands one input to the machine and performs its effects.
func (s *serviceActor) feed(ctx actor.Context, in lifecycle.Input) {
	for _, e := range s.m.Handle(in) {
		s.perform(ctx, e)
	}
}

func (s *serviceActor) perform(ctx actor.Context, e lifecycle.Effect) {
	rt, self, root := s.cfg.Runtime, s.self, s.system.Root
	switch e := e.(type) {
	case lifecycle.Emit:
		ev := e.Event
		// The console, and through the supervisor the metrics, ps and
		// events, all read this one event.
		ctx.Send(s.cfg.Logger, &ev)
		ctx.Send(s.parent, &ReplicaEvent{Event: ev})
	case lifecycle.StartInstance:
		spec := s.cfg.InstanceSpec()
		svc, mounts, stateDir, slots := s.cfg.Service, s.cfg.PrepareMounts, s.cfg.StateDir, s.cfg.slots
		nets, replica := s.cfg.ReplicaNets, s.cfg.Replica
		go func() {
			net, err := attachNet(nets, svc, replica, spec.Net)
			if err == nil {
				spec.Net = net
				if err = startInstance(rt, spec, svc, mounts, stateDir, slots); err != nil {
					detachNet(nets, svc, replica, net)
				}
			}
			root.Send(self, &instanceStarted{err: err, net: net})
		}()
	case lifecycle.CheckInstance:
		name := s.cfg.Instance
		go func() {
			infos, err := rt.ListInstances(context.Background(), name)
			// When the list fails, try the instance: a failed exec says more.
			root.Send(self, &instanceChecked{exists: err != nil || len(infos) > 0})
		}()
	case lifecycle.StartProcess:
		pspec := s.cfg.ProcessSpec()
		src := &logformat.Source{Service: s.cfg.Service.Name, Replica: s.cfg.Replica, Name: s.cfg.Name}
		logger, pipes := s.cfg.Logger, s.cfg.pipes
		go runProcess(rt, root, self, logger, pipes, e.Run, pspec, src, s.cfg.Service, &s.final)
	case lifecycle.SignalProcess:
		if s.proc == nil || s.procRun != e.Run {
			return
		}
		proc, sig := s.proc, signalFromName(e.Signal)
		go func() {
			if err := proc.Signal(sig); err != nil && err != os.ErrProcessDone {
				root.Send(self, &signalFailed{err: fmt.Errorf("sending %s: %w", e.Signal, err)})
			}
		}()
	case lifecycle.KillProcess:
		if s.proc != nil && s.procRun == e.Run {
			_ = s.proc.Kill()
		}
	case lifecycle.StopInstance:
		name := s.cfg.Instance
		// The service process is already gone: only the instance's init is
		// left, so a short timeout is enough.
		stateDir, slots := s.cfg.StateDir, s.cfg.slots
		nets, svc, replica, net := s.cfg.ReplicaNets, s.cfg.Service, s.cfg.Replica, s.cfg.Net
		go func() {
			defer acquire(slots)()
			err := rt.StopInstance(context.Background(), name, "SIGTERM", 2*time.Second)
			if err == nil || errors.Is(err, singularity.ErrNoInstance) {
				statedir.Forget(stateDir, name)
				detachNet(nets, svc, replica, net)
			}
			root.Send(self, &instanceStopped{err: err})
		}()
	case lifecycle.SetTimer:
		timer := e.Timer
		time.AfterFunc(e.After, func() { root.Send(self, &timerFired{timer: timer}) })
	case lifecycle.Probe:
		probe := singularity.ProcessSpec{Instance: s.cfg.Instance, Args: s.cfg.Service.Healthcheck.Test, Env: s.cfg.Service.Environment, Net: s.cfg.Net}
		go func() {
			cctx, cancel := context.WithTimeout(context.Background(), e.Timeout)
			defer cancel()
			code, out, err := rt.Exec(cctx, probe)
			timedOut := cctx.Err() != nil
			if err != nil && !timedOut && code == 0 {
				code = 255
			}
			root.Send(self, &healthResult{run: e.Run, code: code, timedOut: timedOut, output: strings.TrimSpace(string(out))})
		}()
	}
}

// startInstance starts a replica's instance: noted in the journal first,
// so that `down` finds it even if sstack dies during the start, and
// followed, when it fails, by making sure no half-started instance stays.
func startInstance(rt singularity.Runtime, spec singularity.InstanceSpec, svc *compose.Service, mounts bool, stateDir string, slots chan struct{}) error {
	ctx := context.Background()
	if mounts {
		if err := prepare.Mounts(ctx, svc, rt, spec.Name, map[string]bool{}); err != nil {
			return err
		}
	}
	defer acquire(slots)()
	if stateDir != "" {
		if err := statedir.Record(stateDir, spec.Name); err != nil {
			return err
		}
	}
	err := rt.StartInstance(ctx, spec)
	if err != nil {
		if serr := rt.StopInstance(ctx, spec.Name, "SIGKILL", time.Second); serr == nil || errors.Is(serr, singularity.ErrNoInstance) {
			statedir.Forget(stateDir, spec.Name)
		}
	}
	return err
}

// acquire takes one of slots (none: unbounded) and returns its release.
func acquire(slots chan struct{}) func() {
	if slots == nil {
		return func() {}
	}
	slots <- struct{}{}
	return func() { <-slots }
}

// publish sends an event the actor itself noticed (outside the machine).
func (s *serviceActor) publish(ctx actor.Context, ev api.Event) {
	snap := s.m.Snapshot()
	ev.Time = s.cfg.Clock.Now()
	ev.Project, ev.Service, ev.Replica, ev.Name, ev.Instance = snap.Project, snap.Service, snap.Replica, snap.Name, snap.Instance
	ev.State = snap.State
	ctx.Send(s.cfg.Logger, &ev)
	ctx.Send(s.parent, &ReplicaEvent{Event: ev})
}

// runProcess starts the process with its output on pipes, pumps both pipes
// to the logger and reports the exit once both are drained.
func runProcess(rt singularity.Runtime, root *actor.RootContext, self, logger *actor.PID, pipes *pipeTracker, run int, spec singularity.ProcessSpec, src *logformat.Source, svc *compose.Service, final *atomic.Bool) {
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
	oomKilled := oomWatch(rt, svc, spec.Instance)
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
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer outDone(); pumpLines(root, logger, src, Stdout, outRd, time.Now) }()
	go func() { defer wg.Done(); defer errDone(); pumpLines(root, logger, src, Stderr, errRd, time.Now) }()
	// Started means the command runs inside the instance, not only that
	// the apptainer client does: one that exits first could not start it.
	pid, err := proc.Running(startWait)
	if err != nil {
		// The client is gone before its command was seen: a command that
		// ran and ended at once, or Apptainer failing before it could
		// start it, which it reports with code 255.
		if code, _ := proc.Wait(); code == 255 {
			root.Send(self, &processStarted{run: run, err: fmt.Errorf("the command %q could not be started by Apptainer (exit 255); its message is in the service's log: sstack logs %s", strings.Join(spec.Args, " "), src.Name)})
			go func() { wg.Wait(); outR.Close(); errR.Close() }()
			return
		}
		pid = proc.Pid()
	}
	root.Send(self, &processStarted{run: run, proc: proc, pid: pid})
	code, _ := proc.Wait()
	oom := oomKilled(code)
	// As a container ends with its main process, so does everything the
	// run left in the instance; that also frees the pipes orphans held.
	if !final.Load() {
		_, _ = rt.EndRun(context.Background(), spec.Instance)
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		// A background child inside the instance still holds the pipe;
		// report the exit now, its output keeps flowing until it ends.
	}
	go func() { <-drained; outR.Close(); errR.Close() }()
	root.Send(self, &processExited{run: run, code: code, oomKilled: oom})
}

// startWait bounds how long a start waits for the command to run inside
// the instance before it counts as started anyway (a loaded machine).
const startWait = 10 * time.Second

// signalFromName maps a stop or kill signal name to a signal; compose/
// has validated stop_signal and the API validates kill -s, so a failure
// here falls back to SIGTERM.
func signalFromName(name string) os.Signal {
	sig, err := singularity.ParseSignal(name)
	if err != nil {
		return syscall.SIGTERM
	}
	return sig
}

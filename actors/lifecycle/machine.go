// Package lifecycle is the life cycle of one service replica as a pure
// state machine: inputs (what happened) go in, effects (what to do) come
// out, time comes from an injected clock and timers are effects. The
// service actor only performs the effects and feeds back their results,
// so every rule here is tested with a fake clock and no sleep.
//
//	waiting ──deps met──▶ creating ──▶ starting ──▶ running ──exit──▶ restarting ─timer─▶ starting
//	                                                   │                 └──────▶ exited / failed
//	                              stop ─────────────▶ stopping ──exit──▶ removing ──▶ stopped
package lifecycle

import (
	"fmt"
	"time"

	"sstack/actors/policy"
	"sstack/compose"
	"sstack/internal/api"
)

// State is a named state of the machine; Public maps it to what ps shows.
type State int

const (
	Waiting    State = iota // for dependencies; no instance
	Creating                // instance start in flight
	Starting                // process start in flight (instance up)
	Running                 // process running
	Stopping                // stop signal sent, waiting for the exit
	Restarting              // exited; a timer starts the next run
	Checking                // restart due: checking the instance still exists
	Exited                  // exited, no restart coming; instance kept
	Failed                  // could not start (a policy that gave up leaves it Exited)
	Removing                // instance stop in flight
	Stopped                 // no process, no instance
	Created                 // made held (up --no-start): a start begins it; no instance
)

var stateNames = [...]string{"waiting", "creating", "starting", "running", "stopping", "restarting", "checking", "exited", "failed", "removing", "stopped", "created"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Public is the state ps and the events show.
func (s State) Public() api.State {
	switch s {
	case Waiting:
		return api.StateWaiting
	case Creating:
		return api.StateCreating
	case Starting:
		return api.StateStarting
	case Running:
		return api.StateRunning
	case Stopping, Removing:
		return api.StateStopping
	case Restarting, Checking:
		return api.StateRestarting
	case Exited:
		return api.StateExited
	case Failed:
		return api.StateFailed
	case Created:
		return api.StateCreated
	}
	return api.StateStopped
}

// Config is the replica the machine runs.
type Config struct {
	Project  string
	Service  *compose.Service
	Replica  int
	Instance string
	Name     string
	// Deps are the dependencies to wait for (optional ones that are not
	// part of the project already left out).
	Deps []compose.Dependency
	// Held: the replica begins Created and waits for a start (up
	// --no-start), as a docker container that was created only.
	Held bool
}

// after says what follows the end of the process being stopped.
type after int

const (
	afterNothing after = iota // not stopping
	afterRemove               // stop the instance (teardown, user stop, scale down)
	afterRerun                // start the process again (user restart, depends_on.restart)
)

// Machine is one replica's life cycle. It is not safe for concurrent use:
// the service actor owns it.
type Machine struct {
	cfg   Config
	clock policy.Clock

	state    State
	since    time.Time
	health   api.Health
	exitCode int
	reason   string
	pid      int

	// run numbers process incarnations; timers, probes and process
	// results of an older run are stale and dropped.
	run        int
	instanceUp bool
	// then: what follows the current stop. final: the replica is being
	// taken away for good (teardown, scale down): nothing starts again.
	// held: a user stopped it; no restart policy fights that.
	then  after
	final bool
	held  bool
	// rerunDep names the dependency being followed (depends_on.restart);
	// rerunUser: the rerun is a user's restart.
	rerunDep  string
	rerunUser bool
	grace     time.Duration
	// rerun: the current run was started by a restart of any kind.
	rerun bool
	// killed: a stop has already escalated to SIGKILL.
	killed bool
	// startAfter: a user's start came while the instance was being
	// stopped; it starts again once that is done.
	startAfter bool

	deps   map[string]DepStatus
	warned map[string]bool

	restarts  *policy.RestartTracker
	hc        *policy.HealthTracker
	startedAt time.Time // when the current (re)start was asked for
	nRestarts int
}

// New returns a machine in state Waiting (Created when cfg.Held); feed it
// Begin.
func New(cfg Config, clock policy.Clock) *Machine {
	state := Waiting
	if cfg.Held {
		state = Created
	}
	return &Machine{
		cfg:      cfg,
		clock:    clock,
		state:    state,
		held:     cfg.Held,
		since:    clock.Now(),
		deps:     map[string]DepStatus{},
		warned:   map[string]bool{},
		restarts: policy.NewRestartTracker(cfg.Service.Restart, clock),
	}
}

// State is the current state.
func (m *Machine) State() State { return m.state }

// Snapshot is the replica's row for ps.
func (m *Machine) Snapshot() api.Replica {
	return api.Replica{
		Project: m.cfg.Project, Service: m.cfg.Service.Name, Replica: m.cfg.Replica,
		Name: m.cfg.Name, Instance: m.cfg.Instance,
		State: m.state.Public(), Health: m.health, ExitCode: m.exitCode,
		Since: m.since, Restarts: m.nRestarts, Pid: m.pid, Supervised: true, Reason: m.reason,
	}
}

// Done: the replica has nothing left (no process, no instance).
func (m *Machine) Done() bool { return m.state == Stopped }

// Handle feeds one input and returns the effects to perform, in order.
func (m *Machine) Handle(in Input) []Effect {
	var out effects
	switch in := in.(type) {
	case Begin:
		if m.state == Created {
			m.emitState(&out)
		}
		m.tryCreate(&out)
	case DependencyChanged:
		m.deps[in.Status.Service] = in.Status
		m.onDependency(&out, in.Status)
	case InstanceStarted:
		m.onInstanceStarted(&out, in)
	case InstanceChecked:
		m.onInstanceChecked(&out, in)
	case ProcessStarted:
		m.onProcessStarted(&out, in)
	case ProcessExited:
		m.onProcessExited(&out, in)
	case TimerFired:
		m.onTimer(&out, in)
	case ProbeDone:
		m.onProbe(&out, in)
	case InstanceStopped:
		m.onInstanceStopped(&out, in)
	case StopRequested:
		m.onStop(&out, in)
	case StartRequested:
		m.onStart(&out)
	case RestartRequested:
		m.onRestart(&out, in)
	case SignalRequested:
		m.onSignal(&out, in)
	}
	return out
}

type effects []Effect

func (e *effects) add(x Effect) { *e = append(*e, x) }

// event builds a replica event; state is the state after it.
func (m *Machine) event(kind api.EventKind) api.Event {
	return api.Event{
		Time: m.clock.Now(), Kind: kind, Project: m.cfg.Project,
		Service: m.cfg.Service.Name, Replica: m.cfg.Replica,
		Name: m.cfg.Name, Instance: m.cfg.Instance,
	}
}

func (m *Machine) emit(out *effects, ev api.Event) {
	ev.State = m.state.Public()
	out.add(Emit{Event: ev})
}

func (m *Machine) set(s State) {
	if m.state != s {
		m.state = s
		m.since = m.clock.Now()
	}
}

func (m *Machine) tryCreate(out *effects) {
	if m.state != Waiting || m.final || m.held {
		return
	}
	ok, failure := m.depsSatisfied(out)
	if failure != "" {
		m.reason = failure
		m.set(Failed)
		ev := m.event(api.EventFailed)
		ev.Message = failure
		m.emit(out, ev)
		return
	}
	if !ok {
		return
	}
	m.set(Creating)
	m.startedAt = m.clock.Now()
	m.emit(out, m.event(api.EventCreating))
	out.add(StartInstance{})
}

func (m *Machine) onDependency(out *effects, d DepStatus) {
	if m.state == Waiting {
		m.tryCreate(out)
		return
	}
	// depends_on.restart: follow a restarted dependency.
	if !d.Restarted || m.state != Running || m.then != afterNothing {
		return
	}
	for _, dep := range m.cfg.Deps {
		if dep.Service == d.Service && dep.Restart {
			ev := m.event(api.EventFollowDep)
			ev.Dependency = d.Service
			m.emit(out, ev)
			m.rerunDep = d.Service
			m.beginStop(out, afterRerun, m.cfg.Service.StopGracePeriod, false)
			return
		}
	}
}

func (m *Machine) onInstanceStarted(out *effects, in InstanceStarted) {
	if m.state != Creating {
		return
	}
	if in.Err != nil {
		if m.then == afterRemove {
			m.finishStop(out)
			return
		}
		reason := fmt.Sprintf("instance %s could not be started: %v", m.cfg.Instance, in.Err)
		m.reason = reason
		m.set(Failed)
		ev := m.event(api.EventFailed)
		ev.Message = reason
		m.emit(out, ev)
		return
	}
	m.instanceUp = true
	if m.then == afterRemove {
		m.removeInstance(out)
		return
	}
	if m.rerun { // recreated for a restart: the instance was gone
		m.set(Starting)
		m.emitState(out)
		m.startProcess(out)
		return
	}
	m.set(Starting)
	m.emit(out, m.event(api.EventCreated))
	m.startProcess(out)
}

func (m *Machine) startProcess(out *effects) {
	m.run++
	m.set(Starting)
	out.add(StartProcess{Run: m.run})
}

func (m *Machine) onProcessStarted(out *effects, in ProcessStarted) {
	if in.Run != m.run || m.state != Starting {
		if in.Err == nil {
			out.add(KillProcess{Run: in.Run}) // a start nobody waits for
		}
		return
	}
	if in.Err != nil {
		if !m.rerun && m.then == afterNothing && !m.final {
			// The first run could not even start its command: the
			// service cannot start, as docker compose up fails when a
			// container's command cannot be started.
			m.reason = in.Err.Error()
			m.set(Failed)
			ev := m.event(api.EventFailed)
			ev.Message = m.reason
			m.emit(out, ev)
			return
		}
		// A restart that cannot start counts as an exit with code 255,
		// and the restart policy goes on.
		ev := m.event(api.EventWarning)
		ev.Message = in.Err.Error()
		m.emit(out, ev)
		m.onProcessExited(out, ProcessExited{Run: in.Run, Code: 255})
		return
	}
	m.pid = in.Pid
	m.restarts.Started()
	m.set(Running)
	ev := m.event(api.EventStarted)
	ev.Pid = in.Pid
	ev.Restart = m.rerun
	ev.Delay = m.clock.Now().Sub(m.startedAt)
	m.emit(out, ev)
	if m.then != afterNothing { // a stop came while starting
		then := m.then
		m.then = afterNothing
		m.beginStop(out, then, m.grace, false)
		return
	}
	if hc := m.cfg.Service.Healthcheck; hc != nil {
		m.hc = policy.NewHealthTracker(*hc, m.clock)
		m.health = api.HealthStarting
		out.add(SetTimer{Timer: Timer{Kind: TimerProbe, Run: m.run}, After: m.hc.NextProbe()})
	}
}

func (m *Machine) onProcessExited(out *effects, in ProcessExited) {
	if in.Run != m.run {
		return
	}
	switch m.state {
	case Running, Stopping, Starting:
	default:
		return
	}
	m.pid = 0
	m.hc = nil
	m.health = api.HealthNone
	m.exitCode = in.Code
	m.killed = false
	ev := m.event(api.EventDied)
	ev.ExitCode, ev.OOMKilled = in.Code, in.OOMKilled
	switch {
	case m.then == afterRemove || m.final:
		m.restarts.Exited(in.Code, true)
		ev.Requested, ev.Final = true, m.final
		m.set(Removing)
		m.emit(out, ev)
		m.then = afterNothing
		m.removeInstance(out)
	case m.then == afterRerun:
		m.restarts.Exited(in.Code, true)
		ev.Requested = true
		m.then = afterNothing
		m.beginRerun(out, &ev)
	case m.held:
		m.restarts.Exited(in.Code, true)
		ev.Requested = true
		m.set(Exited)
		m.emit(out, ev)
	default:
		d := m.restarts.Exited(in.Code, false)
		ev.Restart, ev.Delay, ev.Attempt, ev.MaxAttempts = d.Restart, d.Delay, d.Attempt, d.MaxAttempts
		ev.GaveUp = d.Reason == policy.ReasonMaxAttempts
		if d.Restart {
			m.set(Restarting)
			m.emit(out, ev)
			out.add(SetTimer{Timer: Timer{Kind: TimerRestart, Run: m.run}, After: d.Delay})
			return
		}
		m.set(Exited)
		m.emit(out, ev)
	}
}

// beginRerun starts the process again (a policy restart, a user's start
// or restart, a followed dependency), after checking that the instance is
// still there; ev, if any, is emitted in the new state. A new run is a
// start: a hold by a user's signal ends with the run it was sent to.
func (m *Machine) beginRerun(out *effects, ev *api.Event) {
	m.rerun = true
	m.held = false
	m.startedAt = m.clock.Now()
	m.set(Checking)
	if ev != nil {
		m.emit(out, *ev)
	} else {
		m.emitState(out)
	}
	out.add(CheckInstance{})
}

// emitState publishes a change of state that no other event tells, so
// that whoever follows the events (ps) knows it.
func (m *Machine) emitState(out *effects) {
	m.emit(out, m.event(api.EventState))
}

func (m *Machine) onTimer(out *effects, in TimerFired) {
	if in.Timer.Run != m.run {
		return
	}
	switch in.Timer.Kind {
	case TimerRestart:
		if m.state != Restarting {
			return
		}
		m.nRestarts++
		m.rerunDep, m.rerunUser = "", false
		m.beginRerun(out, nil)
	case TimerGrace:
		if m.state != Stopping || m.killed {
			return
		}
		m.killed = true
		ev := m.event(api.EventKilled)
		ev.Signal = "SIGKILL"
		ev.Grace = m.grace
		m.emit(out, ev)
		out.add(KillProcess{Run: m.run})
	case TimerProbe:
		if m.state != Running || m.hc == nil {
			return
		}
		// The start period forgives failures of probes that started
		// inside it, so the tracker needs the probe's start time.
		m.hc.ProbeStarted()
		out.add(Probe{Run: m.run, Timeout: m.hc.Timeout()})
	}
}

func (m *Machine) onInstanceChecked(out *effects, in InstanceChecked) {
	if m.state != Checking {
		return
	}
	if m.final || m.then == afterRemove {
		m.then = afterNothing
		m.removeInstance(out)
		return
	}
	ev := m.event(api.EventRestarting)
	ev.Recreate = !in.Exists
	ev.Dependency = m.rerunDep
	ev.User = m.rerunUser
	m.rerunDep, m.rerunUser = "", false
	if in.Exists {
		m.set(Starting)
		m.emit(out, ev)
		m.startProcess(out)
		return
	}
	m.instanceUp = false
	m.set(Creating)
	m.emit(out, ev)
	out.add(StartInstance{})
}

func (m *Machine) onProbe(out *effects, in ProbeDone) {
	if in.Run != m.run || m.state != Running || m.hc == nil {
		return
	}
	st, changed := m.hc.Result(in.Code, in.TimedOut)
	if changed {
		switch st {
		case policy.Healthy:
			m.health = api.HealthHealthy
		case policy.Unhealthy:
			m.health = api.HealthUnhealthy
		}
		ev := m.event(api.EventHealth)
		ev.Health = m.health
		if m.health == api.HealthUnhealthy {
			ev.Message = probeMessage(in.Output, in.TimedOut)
		}
		m.emit(out, ev)
	}
	out.add(SetTimer{Timer: Timer{Kind: TimerProbe, Run: m.run}, After: m.hc.NextProbe()})
}

// probeMessage is the last line of a failed probe's output.
func probeMessage(out string, timedOut bool) string {
	if timedOut {
		return "healthcheck timed out"
	}
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] == '\n' {
			out = out[i+1:]
			break
		}
	}
	if out == "" {
		return "healthcheck failed"
	}
	return out
}

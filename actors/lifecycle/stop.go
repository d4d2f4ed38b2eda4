package lifecycle

// Stops and a user's requests: stop (for good, or held until a start),
// start, restart and signals, and how a stop ends.

import (
	"time"

	"sstack/actors/policy"
	"sstack/internal/api"
)

func (m *Machine) onStop(out *effects, in StopRequested) {
	// A stop wins over a start or rerun asked for before it.
	m.startAfter = false
	m.rerunUser, m.rerunDep = false, ""
	if in.Final {
		m.final = true
	} else {
		m.held = true
	}
	grace := m.cfg.Service.StopGracePeriod
	if in.Timeout != nil {
		grace = *in.Timeout
	}
	if in.Kill {
		grace = 0
	}
	switch m.state {
	case Created:
		// docker stop of a container that was only created: nothing to
		// do; removing it is the end.
		if in.Final {
			m.set(Stopped)
			ev := m.event(api.EventDestroyed)
			ev.NoInstance = true
			m.emit(out, ev)
		}
	case Waiting:
		m.set(Stopped)
		ev := m.event(api.EventDestroyed)
		ev.NoInstance = true
		m.emit(out, ev)
	case Creating, Starting, Checking:
		// The start in flight sees the stop when it reports back.
		m.then, m.grace = afterRemove, grace
	case Running:
		m.beginStop(out, afterRemove, grace, in.Kill)
	case Stopping:
		m.then = afterRemove
		if in.Kill && !m.killed {
			m.killed = true
			ev := m.event(api.EventKilled)
			ev.Signal = "SIGKILL"
			ev.Message = "killing it at once"
			m.emit(out, ev)
			out.add(KillProcess{Run: m.run})
		}
	case Restarting, Exited:
		m.removeInstance(out)
	case Failed:
		if m.instanceUp {
			m.removeInstance(out)
			return
		}
		m.set(Stopped)
		ev := m.event(api.EventDestroyed)
		ev.NoInstance = true
		m.emit(out, ev)
	case Removing, Stopped:
	}
}

// beginStop sends the stop signal to the process (or SIGKILL) and arms
// the grace period.
func (m *Machine) beginStop(out *effects, then after, grace time.Duration, kill bool) {
	m.then, m.grace = then, grace
	m.set(Stopping)
	ev := m.event(api.EventStopping)
	ev.Signal = m.cfg.Service.StopSignal
	ev.User = m.held && !m.final || m.rerunUser
	if kill || grace <= 0 {
		ev.Signal = "SIGKILL"
		m.emit(out, ev)
		m.killed = true
		out.add(KillProcess{Run: m.run})
		return
	}
	m.emit(out, ev)
	out.add(SignalProcess{Run: m.run, Signal: m.cfg.Service.StopSignal})
	out.add(SetTimer{Timer: Timer{Kind: TimerGrace, Run: m.run}, After: grace})
}

func (m *Machine) removeInstance(out *effects) {
	m.run++ // whatever timer or probe is pending is stale now
	if !m.instanceUp {
		m.finishStop(out)
		return
	}
	if m.state != Removing {
		m.set(Removing)
		m.emitState(out)
	}
	out.add(StopInstance{})
}

func (m *Machine) onInstanceStopped(out *effects, in InstanceStopped) {
	if m.state != Removing {
		return
	}
	if in.Err != nil {
		ev := m.event(api.EventWarning)
		ev.Name = m.cfg.Instance
		ev.Message = in.Err.Error()
		m.emit(out, ev)
	}
	m.finishStop(out)
}

func (m *Machine) finishStop(out *effects) {
	defer func() {
		if m.startAfter && !m.final { // a user's start came while stopping
			m.startAfter = false
			m.onStart(out)
		}
	}()
	hadInstance := m.instanceUp || m.state == Removing
	m.instanceUp = false
	m.then = afterNothing
	m.pid = 0
	m.health = api.HealthNone
	m.set(Stopped)
	ev := m.event(api.EventDestroyed)
	ev.NoInstance = !hadInstance
	m.emit(out, ev)
}

func (m *Machine) onStart(out *effects) {
	if m.final {
		return
	}
	m.held = false
	switch m.state {
	case Created:
		m.set(Waiting)
		m.emitState(out)
		m.tryCreate(out)
	case Creating, Starting, Checking:
		m.then = afterNothing // a user's stop still pending is undone
		if m.state == Checking {
			m.rerunUser = true
		}
	case Stopping:
		if m.then == afterRemove {
			m.then = afterRerun
			m.rerunUser = true
		}
	case Removing:
		m.startAfter = true
	case Stopped, Failed:
		if m.instanceUp {
			return
		}
		// docker start: a new count of restarts and a new backoff.
		m.restarts = policy.NewRestartTracker(m.cfg.Service.Restart, m.clock)
		m.nRestarts = 0
		m.reason = ""
		m.rerun = false
		m.set(Waiting)
		m.emitState(out)
		m.tryCreate(out)
	case Exited:
		m.restarts = policy.NewRestartTracker(m.cfg.Service.Restart, m.clock)
		m.nRestarts = 0
		m.rerunUser = true
		m.beginRerun(out, nil)
	}
}

func (m *Machine) onRestart(out *effects, in RestartRequested) {
	if m.final {
		return
	}
	m.held = false
	grace := m.cfg.Service.StopGracePeriod
	if in.Timeout != nil {
		grace = *in.Timeout
	}
	switch m.state {
	case Running:
		m.rerunUser = true
		m.beginStop(out, afterRerun, grace, false)
	case Restarting, Exited:
		m.rerunUser = true
		m.run++ // a pending restart timer is stale
		m.beginRerun(out, nil)
	default:
		m.onStart(out)
	}
}

func (m *Machine) onSignal(out *effects, in SignalRequested) {
	if m.state != Running && m.state != Stopping {
		return
	}
	if in.Signal == "SIGKILL" || in.Signal == m.cfg.Service.StopSignal {
		// docker kill with the stop signal or SIGKILL: a container its
		// user killed is not restarted (moby daemon/kill.go).
		m.held = true
	}
	ev := m.event(api.EventKilled)
	ev.Signal = in.Signal
	ev.User = true
	m.emit(out, ev)
	out.add(SignalProcess{Run: m.run, Signal: in.Signal})
}

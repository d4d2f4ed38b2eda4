package lifecycle

import (
	"time"

	"sstack/internal/api"
)

// Input is something that happened to the replica: a message from the
// supervisor or the result of an effect.
type Input interface{ input() }

type (
	// Begin starts the machine (the actor has started).
	Begin struct{}
	// DependencyChanged: a dependency reached a new status.
	DependencyChanged struct{ Status DepStatus }
	// InstanceStarted is the result of StartInstance.
	InstanceStarted struct{ Err error }
	// InstanceChecked is the result of CheckInstance.
	InstanceChecked struct{ Exists bool }
	// ProcessStarted is the result of StartProcess.
	ProcessStarted struct {
		Run int
		Pid int
		Err error
	}
	// ProcessExited: the process of run Run exited, its output drained.
	// OOMKilled: the kernel killed it for exceeding its memory limit.
	ProcessExited struct {
		Run       int
		Code      int
		OOMKilled bool
	}
	// TimerFired: a SetTimer's time has come.
	TimerFired struct{ Timer Timer }
	// ProbeDone is the result of Probe.
	ProbeDone struct {
		Run      int
		Code     int
		TimedOut bool
		Output   string
	}
	// InstanceStopped is the result of StopInstance.
	InstanceStopped struct{ Err error }
	// StopRequested: stop the process and the instance. Final: for good
	// (teardown, scale down); otherwise a user's stop, which start undoes.
	// Kill: SIGKILL at once instead of stop_signal and the grace period.
	StopRequested struct {
		Final   bool
		Kill    bool
		Timeout *time.Duration
	}
	// StartRequested: a user's start of a stopped or exited replica.
	StartRequested struct{}
	// RestartRequested: a user's restart.
	RestartRequested struct{ Timeout *time.Duration }
	// SignalRequested: a user's kill -s SIGNAL.
	SignalRequested struct{ Signal string }
)

func (Begin) input()             {}
func (DependencyChanged) input() {}
func (InstanceStarted) input()   {}
func (InstanceChecked) input()   {}
func (ProcessStarted) input()    {}
func (ProcessExited) input()     {}
func (TimerFired) input()        {}
func (ProbeDone) input()         {}
func (InstanceStopped) input()   {}
func (StopRequested) input()     {}
func (StartRequested) input()    {}
func (RestartRequested) input()  {}
func (SignalRequested) input()   {}

// Effect is something the service actor must do; results come back as
// inputs.
type Effect interface{ effect() }

type (
	// StartInstance starts the replica's instance → InstanceStarted.
	StartInstance struct{}
	// CheckInstance looks whether the instance still exists (it may have
	// been stopped from outside) → InstanceChecked.
	CheckInstance struct{}
	// StartProcess starts run Run of the service process → ProcessStarted,
	// then ProcessExited.
	StartProcess struct{ Run int }
	// SignalProcess sends Signal to the process of run Run.
	SignalProcess struct {
		Run    int
		Signal string
	}
	// KillProcess SIGKILLs the process of run Run.
	KillProcess struct{ Run int }
	// StopInstance stops the instance → InstanceStopped.
	StopInstance struct{}
	// SetTimer → TimerFired after After.
	SetTimer struct {
		Timer Timer
		After time.Duration
	}
	// Probe runs the healthcheck once, within Timeout → ProbeDone.
	Probe struct {
		Run     int
		Timeout time.Duration
	}
	// Emit publishes an event to the console, the metrics, ps and events.
	Emit struct{ Event api.Event }
)

func (StartInstance) effect() {}
func (CheckInstance) effect() {}
func (StartProcess) effect()  {}
func (SignalProcess) effect() {}
func (KillProcess) effect()   {}
func (StopInstance) effect()  {}
func (SetTimer) effect()      {}
func (Probe) effect()         {}
func (Emit) effect()          {}

// TimerKind names what a timer is for.
type TimerKind int

const (
	TimerRestart TimerKind = iota // the restart delay is over
	TimerGrace                    // the stop grace period is over
	TimerProbe                    // the next healthcheck probe is due
)

// Timer identifies a timer; one of an older run is stale.
type Timer struct {
	Kind TimerKind
	Run  int
}

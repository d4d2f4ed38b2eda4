package actors

import (
	"time"

	"sstack/singularity"
)

// This file declares every message of the actor protocol, so the protocol
// can be read in one place. Messages are small immutable values.
//
// main ──StopStack/KillStack──▶ stack ──StopService──▶ service
// stack ◀──ServiceStatus────── service ──LogBatch/StatusLine──▶ logger
// stack ──DependencyUpdate──▶ service (a service is told, it never polls)

// StopStack asks the stack supervisor for a graceful teardown: services are
// stopped in reverse dependency order (first Ctrl-C).
type StopStack struct{ Reason string }

// KillStack asks for an immediate teardown: every process is SIGKILLed and
// every instance stopped at once (second Ctrl-C).
type KillStack struct{}

// StackDone is delivered on the Done channel of a Stack when everything it
// started is gone.
type StackDone struct{ ExitCode int }

// ServiceState is where one service replica is in its life.
type ServiceState int

const (
	StateWaiting   ServiceState = iota // waiting for its dependencies
	StateCreating                      // instance being started
	StateRunning                       // service process running
	StateHealthy                       // running and its healthcheck passes
	StateUnhealthy                     // running and its healthcheck fails
	StateExited                        // process exited and will not be restarted
	StateFailed                        // could not be started, or gave up; it will never be ready
	StateStopped                       // torn down: no process, no instance
)

var stateNames = [...]string{"waiting", "creating", "running", "healthy", "unhealthy", "exited", "failed", "stopped"}

func (s ServiceState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// ServiceStatus is sent by a service actor to the stack supervisor each time
// its state changes.
type ServiceStatus struct {
	Service  string
	Replica  int
	State    ServiceState
	ExitCode int    // for StateExited
	Reason   string // for StateFailed: what went wrong, for the user
	// Restarting is set with StateRunning after a restart, so that
	// dependents with depends_on.restart can follow.
	Restarting bool
}

// DependencyUpdate tells a service actor what one of its dependencies (all
// replicas together) has reached; the dependent decides what that means for
// its depends_on condition. The supervisor sends it to dependents only.
type DependencyUpdate struct {
	Service   string
	Started   bool // every replica's process has started at least once
	Healthy   bool // every replica is healthy
	Unhealthy bool // some replica is unhealthy
	Exited    bool // every replica has exited for good (no restart coming)
	ExitCode  int  // the first non-zero final exit code among replicas, else 0
	// Failed: some replica could not be started or gave up; Reason says why.
	Failed bool
	Reason string
	// Restarted: a replica's process was restarted (depends_on.restart).
	Restarted bool
}

// StopService asks a service actor to stop its process and instance. It
// answers with ServiceStatus{State: StateStopped}.
type StopService struct {
	Kill bool // SIGKILL now instead of stop_signal and grace period
}

// Messages a service actor sends to itself from the goroutines doing its
// blocking work. Each carries the run (process incarnation) it belongs to,
// so results of an earlier run are recognised and dropped.
type (
	instanceStarted struct{ err error }
	instanceStopped struct{ err error }
	processStarted  struct {
		run  int
		proc singularity.Process
		err  error
	}
	processExited struct {
		run  int
		code int
	}
	restartDue   struct{ run int }
	graceExpired struct{ run int }
	healthDue    struct{ run int }
	healthResult struct {
		run      int
		code     int
		timedOut bool
		output   string
	}
)

// Stream names a service output stream.
type Stream uint8

const (
	Stdout Stream = iota
	Stderr
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// LogBatch carries whole lines of one stream of one replica to the logger.
// Done is signalled once the lines are written: the reader waits for it
// before reusing its buffer, which bounds memory and pushes back on the pipe.
type LogBatch struct {
	Source *LogSource
	Stream Stream
	// Data is Count whole lines, each ending with a newline (one is added
	// to a last line without it and to each piece of a line longer than
	// the reader's limit).
	Data  []byte
	Count int
	Time  time.Time
	Done  chan<- struct{}
}

// LogSource identifies one replica for the logger.
type LogSource struct {
	Service string
	Replica int
	Name    string // display name, e.g. "web-1"
}

// StatusLine is one of sstack's own lines (creating, started, exited with
// code N, stopping). The logger writes it to stderr, in order with the logs.
type StatusLine struct{ Text string }

// FlushLogs asks the logger to flush; it responds with FlushLogs when done.
type FlushLogs struct{}

// ProcessExit is sent by a service actor to the stack supervisor each time
// its process exits, whether or not it is restarted, before any
// ServiceStatus the exit causes. The supervisor applies docker compose's
// --abort-on-container-exit, --abort-on-container-failure and
// --exit-code-from to it, which look at every exit, restarts included.
type ProcessExit struct {
	Service  string
	Replica  int
	ExitCode int
	// Restarting: the restart policy starts the process again.
	Restarting bool
	// Stopped: sstack stopped the process itself (teardown, or a
	// depends_on.restart), so the exit is no reason to abort.
	Stopped bool
}

// crashCleaned tells the stack supervisor that the instance of a service
// actor that crashed has been stopped (err says if that failed).
type crashCleaned struct {
	service string
	replica int
	err     error
}

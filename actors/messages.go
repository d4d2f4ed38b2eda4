package actors

import (
	"time"

	"sstack/actors/lifecycle"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/logformat"
	"sstack/singularity"
)

// This file declares every message of the actor protocol, so the protocol
// can be read in one place. Messages are small immutable values.
//
// engine ──StopStack/KillStack/PsRequest/CommandRequest/ScaleRequest/ConvergeRequest/Subscribe──▶ stack
// stack ──StopService/StartService/RestartService/SignalService──▶ service
// stack ◀──ReplicaEvent────── service ──LogBatch/api.Event──▶ logger
// stack ──DependencyUpdate──▶ service (a service is told, it never polls)

// StopStack asks the stack supervisor for a graceful teardown: services are
// stopped in reverse dependency order (first Ctrl-C).
type StopStack struct {
	Reason string
	// Timeout overrides every service's grace period (down -t); nil
	// keeps up -t's, else stop_grace_period.
	Timeout *time.Duration
}

// KillStack asks for an immediate teardown: every process is SIGKILLed and
// every instance stopped at once (second Ctrl-C).
type KillStack struct{}

// StackDone is delivered on the Done channel of a Stack when everything it
// started is gone.
type StackDone struct{ ExitCode int }

// ReplicaEvent carries an event of a replica from its service actor to
// the stack supervisor, which derives the replica's row (ps), aggregates
// dependency status, counts metrics and forwards it to `events`.
type ReplicaEvent struct{ Event api.Event }

// DependencyUpdate tells a service actor what one of its dependencies (all
// replicas together) has reached; the dependent's machine decides what that
// means for its depends_on condition. Sent to dependents only.
type DependencyUpdate struct{ Status lifecycle.DepStatus }

// StopService asks a service actor to stop its process and instance.
// Final: for good (teardown, scale down); otherwise a user's stop, which
// StartService undoes. Kill: SIGKILL now instead of stop_signal and the
// grace period (Timeout overrides stop_grace_period).
type StopService struct {
	Final   bool
	Kill    bool
	Timeout *time.Duration
}

// StartService, RestartService and SignalService carry a user's start,
// restart and kill -s to one replica.
type (
	StartService   struct{}
	RestartService struct{ Timeout *time.Duration }
	SignalService  struct{ Signal string }
)

// Control requests to the stack supervisor from the engine (outside the
// actor system); each is answered with Respond.
type (
	// PsRequest → []api.Replica.
	PsRequest struct{}
	// CommandRequest → CommandResult: stop, start, restart, kill or up of
	// services (none: all).
	CommandRequest struct {
		Op       CommandOp
		Services []string
		NoDeps   bool
		Timeout  *time.Duration
		Signal   string
	}
	// ScaleRequest → CommandResult.
	ScaleRequest struct {
		Replicas map[string]int
	}
	// CommandResult answers a CommandRequest or ScaleRequest: the replicas
	// acted on, or why nothing was done.
	CommandResult struct {
		Names []string
		Err   error
	}
	// ConvergeRequest → CommandResult: the stack takes Plan, an edited
	// compose file's (up on a running stack), as one step. Replicas of
	// the services in Recreate are replaced (deploy.update_config), the
	// services of Start not running yet are started (with their
	// dependencies unless NoDeps), replica counts follow the plan, and
	// the services of Remove (orphans the user removes) go. Plan keeps
	// the orphans that stay, marked in Orphans. The other fields replace
	// StackConfig's. Names are the replicas to wait for; Rolling the
	// services whose update ends with an update event.
	ConvergeRequest struct {
		Plan     *compose.Plan
		Orphans  []string
		Recreate []string
		Start    []string
		NoDeps   bool
		// NoStart: new and recreated replicas are created only.
		NoStart      bool
		Remove       []string
		HasRunscript map[string]bool
		HostsFiles   map[string]string
		Nets         map[string]singularity.Network
		Unprepared   []string
	}
	// Announce publishes a stack event of the engine's (no answer).
	Announce struct{ Event api.Event }
	// PlanRequest → *compose.Plan: the plan the stack runs now (a
	// rollback puts a service's previous configuration back).
	PlanRequest struct{}
	// Subscribe adds a listener of every event from now on; the stack
	// closes Ch when it ends, or when the listener falls too far behind.
	Subscribe   struct{ Ch chan api.Event }
	Unsubscribe struct{ Ch chan api.Event }
)

// CommandOp names a user command on services.
type CommandOp int

const (
	OpStop CommandOp = iota
	OpStart
	OpRestart
	OpKill
	OpUp
	// OpRemove stops the services' replicas and forgets them (down
	// SERVICE...): a later up starts them anew, as docker compose's
	// removed containers.
	OpRemove
)

// Messages a service actor sends to itself from the goroutines doing its
// blocking work. Each carries the run (process incarnation) it belongs to,
// so results of an earlier run are recognised and dropped.
type (
	// rolloutTimer: a rollout's delay or monitor period has passed.
	rolloutTimer    struct{ service string }
	instanceStarted struct {
		err error
		net singularity.Network // the instance's, when it started
	}
	instanceStopped struct{ err error }
	instanceChecked struct{ exists bool }
	processStarted  struct {
		run  int
		pid  int // of the command inside the instance
		proc singularity.Process
		err  error
	}
	processExited struct {
		run       int
		code      int
		oomKilled bool // the kernel killed it for exceeding its memory limit
	}
	timerFired   struct{ timer lifecycle.Timer }
	signalFailed struct{ err error }
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
	Source *logformat.Source
	Stream Stream
	// Data is Count whole lines, each ending with a newline (one is added
	// to a last line without it and to each piece of a line longer than
	// the reader's limit).
	Data  []byte
	Count int
	Time  time.Time
	Done  chan<- struct{}
}

// FlushLogs asks the logger to flush; it responds with FlushLogs when done.
type FlushLogs struct{}

// flushStore tells the logger, storeFlushDelay after a batch, to write
// the store's buffered lines to its files.
type flushStore struct{}

// crashCleaned tells the stack supervisor that the instance of a service
// actor that crashed has been stopped (err says if that failed).
type crashCleaned struct {
	service string
	replica int
	err     error
}

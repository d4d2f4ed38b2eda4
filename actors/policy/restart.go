package policy

import (
	"time"

	"sstack/compose"
)

// Reasons a Decision gives. They are stable strings: actors log them and tests
// compare them.
const (
	// ReasonStopRequested: sstack itself stopped the process (Ctrl-C,
	// shutdown, a dependency going away); no policy restarts it.
	ReasonStopRequested = "stop requested"
	// ReasonPolicyNo: the policy never restarts (restart: "no",
	// deploy condition "none", or no policy at all).
	ReasonPolicyNo = "restart policy is no"
	// ReasonConditionNotMet: the process succeeded and the policy only
	// restarts on failure.
	ReasonConditionNotMet = "exited with code 0, policy on-failure"
	// ReasonRestarting: the process is restarted after Decision.Delay.
	ReasonRestarting = "restarting"
	// ReasonMaxAttempts: the policy's attempt limit is used up; give up.
	ReasonMaxAttempts = "giving up: maximum restart attempts reached"
	// ReasonUnknownCondition: the policy names a condition this package
	// does not know; compose validation should have caught it.
	ReasonUnknownCondition = "unknown restart condition"
)

// Values of compose.RestartPolicy.Source.
const (
	sourceRestart = "restart"
	sourceDeploy  = "deploy"
)

// Docker engine restart backoff (moby restartmanager/restartmanager.go:
// backoffMultiplier = 2, defaultTimeout = 100ms, maxRestartTimeout = 1m, and
// "if the container ran for more than 10s ... reset the timeout back to the
// default": executionDuration.Seconds() >= 10).
const (
	engineFirstDelay = 100 * time.Millisecond
	engineMaxDelay   = time.Minute
	engineResetAfter = 10 * time.Second
)

// Decision is the answer of RestartTracker.Exited.
type Decision struct {
	Restart bool
	// Delay to wait before starting the process again (only when Restart).
	Delay time.Duration
	// Attempt is the 1-based number of the upcoming restart. When the
	// tracker gives up (ReasonMaxAttempts) it is the number of attempts
	// made, which equals MaxAttempts.
	Attempt int
	// MaxAttempts is the policy's limit, 0 when unlimited.
	MaxAttempts int
	// Reason is one of the Reason* constants.
	Reason string
}

// RestartTracker decides whether an exited process is restarted, after how
// long, and when to give up. It applies one of two rule sets:
//
// Source "restart" (service-level `restart:`) follows the Docker engine's
// restart manager (moby restartmanager/restartmanager.go, ShouldRestart):
//   - "no" never restarts; "always" and "unless-stopped" always do (sstack
//     has no daemon restart, so the two are the same; a stop sstack asked for
//     is covered by stopRequested, as `docker stop` cancels the restart
//     manager through ExitOnNext in daemon/kill.go).
//   - "on-failure" restarts a non-zero exit while restartCount < max
//     (`max == 0 || rm.restartCount < max`), so on-failure:3 means 3
//     restarts, 4 runs in all. The count is never reset by a long run: only
//     a manual `docker start` resets it (daemon/start.go calls
//     ResetRestartManager(true), which sets RestartCount = 0).
//   - The delay starts at 100ms and doubles on each restart up to 1 minute;
//     it goes back to 100ms when the process ran for at least 10s.
//
// Source "deploy" (deploy.restart_policy, compose spec deploy.md):
//   - condition "none" never, "on-failure" on a non-zero exit, "any" (the
//     default) always.
//   - a fixed Delay (default 0).
//   - MaxAttempts counts failed restarts (0: unlimited). "window: how long to
//     wait before deciding if a restart has succeeded (default: decide
//     immediately)": a process that ran for at least Window was a successful
//     restart, so the count starts again from zero.
//     Note: docker compose without swarm ignores delay and window and hands
//     the condition to the engine (compose pkg/compose/create.go,
//     mapRestartPolicyCondition); swarmkit counts restarts in a sliding
//     window instead. sstack implements the spec's wording.
//
// Source "" never restarts.
type RestartTracker struct {
	policy compose.RestartPolicy
	clock  Clock

	startedAt time.Time
	running   bool

	// engineDelay is the last engine backoff; 0 before the first restart
	// and after a run of at least engineResetAfter.
	engineDelay time.Duration
	// attempts counts the restarts that count against MaxAttempts: all of
	// them for the engine, those since the last successful window for deploy.
	attempts int
	restarts int
}

// NewRestartTracker returns a tracker for one replica's process.
func NewRestartTracker(p compose.RestartPolicy, clock Clock) *RestartTracker {
	return &RestartTracker{policy: p, clock: clock}
}

// Started records that the process started now. Call it on every start,
// including restarts; how long the process ran decides the backoff reset
// (engine) and whether an attempt counts (deploy window).
func (t *RestartTracker) Started() {
	t.startedAt = t.clock.Now()
	t.running = true
}

// Restarts is the number of restarts decided so far.
func (t *RestartTracker) Restarts() int { return t.restarts }

// Exited records that the process exited and says what to do next. When
// Started was not called, the run counts as 0s long.
func (t *RestartTracker) Exited(exitCode int, stopRequested bool) Decision {
	var ran time.Duration
	if t.running {
		ran = t.clock.Now().Sub(t.startedAt)
	}
	t.running = false

	if stopRequested {
		return Decision{Reason: ReasonStopRequested}
	}
	switch t.policy.Source {
	case sourceRestart:
		return t.engine(exitCode, ran)
	case sourceDeploy:
		return t.deploy(exitCode, ran)
	default:
		return Decision{Reason: ReasonPolicyNo}
	}
}

func (t *RestartTracker) engine(exitCode int, ran time.Duration) Decision {
	// The engine steps its backoff on every exit before looking at the
	// policy; only restarts ever read it.
	if ran >= engineResetAfter {
		t.engineDelay = 0
	}
	switch {
	case t.engineDelay == 0:
		t.engineDelay = engineFirstDelay
	case t.engineDelay < engineMaxDelay:
		t.engineDelay *= 2
	}
	t.engineDelay = min(t.engineDelay, engineMaxDelay)

	maxAttempts := 0
	switch t.policy.Condition {
	case "", "no":
		return Decision{Reason: ReasonPolicyNo}
	case "always", "unless-stopped":
	case "on-failure":
		maxAttempts = max(t.policy.MaxAttempts, 0)
		if exitCode == 0 {
			return Decision{MaxAttempts: maxAttempts, Reason: ReasonConditionNotMet}
		}
		if maxAttempts > 0 && t.attempts >= maxAttempts {
			return Decision{Attempt: t.attempts, MaxAttempts: maxAttempts, Reason: ReasonMaxAttempts}
		}
	default:
		return Decision{Reason: ReasonUnknownCondition}
	}
	return t.restart(t.engineDelay, maxAttempts)
}

func (t *RestartTracker) deploy(exitCode int, ran time.Duration) Decision {
	maxAttempts := max(t.policy.MaxAttempts, 0)
	switch t.policy.Condition {
	case "none":
		return Decision{Reason: ReasonPolicyNo}
	case "", "any":
	case "on-failure":
		if exitCode == 0 {
			return Decision{MaxAttempts: maxAttempts, Reason: ReasonConditionNotMet}
		}
	default:
		return Decision{Reason: ReasonUnknownCondition}
	}
	if t.policy.Window > 0 && ran >= t.policy.Window {
		t.attempts = 0
	}
	if maxAttempts > 0 && t.attempts >= maxAttempts {
		return Decision{Attempt: t.attempts, MaxAttempts: maxAttempts, Reason: ReasonMaxAttempts}
	}
	return t.restart(max(t.policy.Delay, 0), maxAttempts)
}

func (t *RestartTracker) restart(delay time.Duration, maxAttempts int) Decision {
	t.attempts++
	t.restarts++
	return Decision{
		Restart:     true,
		Delay:       delay,
		Attempt:     t.attempts,
		MaxAttempts: maxAttempts,
		Reason:      ReasonRestarting,
	}
}

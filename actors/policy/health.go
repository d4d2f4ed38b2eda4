package policy

import (
	"time"

	"sstack/compose"
)

// HealthState is a service's health as Docker reports it.
type HealthState int

const (
	// Starting: no probe has succeeded yet since the process started.
	Starting HealthState = iota
	// Healthy: the last probe succeeded, or fewer than Retries counted
	// probes have failed since.
	Healthy
	// Unhealthy: Retries counted probes in a row have failed.
	Unhealthy
)

// String returns Docker's name for the state.
func (s HealthState) String() string {
	switch s {
	case Starting:
		return "starting"
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	default:
		return "unknown"
	}
}

// Docker's defaults for unset (zero) healthcheck fields (moby daemon/health.go:
// defaultProbeInterval, defaultProbeTimeout, defaultStartInterval (5s since
// moby PR 47799), defaultProbeRetries; the start period defaults to 0).
const (
	defaultProbeInterval = 30 * time.Second
	defaultProbeTimeout  = 30 * time.Second
	defaultStartInterval = 5 * time.Second
	defaultProbeRetries  = 3
)

// HealthTracker is the healthcheck state machine of one process, following
// moby daemon/health.go (handleProbeResult and monitor's getInterval):
//   - exit code 0 is a success: state Healthy, failing streak reset to 0;
//   - any other exit code, a timeout or a probe that could not run is a
//     failure; while the state is Starting, a failure of a probe that
//     started within start_period is not counted ("If still within the start
//     period, then don't increment failing streak"); otherwise the streak
//     grows and reaching Retries makes the state Unhealthy;
//   - a success during the start period ends Starting at once, and from then
//     on failures count even inside the start period.
//
// Create it when the process starts; a restarted process gets a new tracker
// (Docker resets to Starting with a zero streak in initHealthMonitor).
type HealthTracker struct {
	clock Clock

	interval      time.Duration
	timeout       time.Duration
	startPeriod   time.Duration
	startInterval time.Duration
	retries       int

	startedAt  time.Time
	probeStart time.Time
	probing    bool

	state  HealthState
	streak int
}

// NewHealthTracker returns a tracker in state Starting, with the process
// start time taken from clock. Zero fields of h get Docker's defaults.
func NewHealthTracker(h compose.Healthcheck, clock Clock) *HealthTracker {
	t := &HealthTracker{
		clock:         clock,
		interval:      orDefault(h.Interval, defaultProbeInterval),
		timeout:       orDefault(h.Timeout, defaultProbeTimeout),
		startPeriod:   max(h.StartPeriod, 0),
		startInterval: orDefault(h.StartInterval, defaultStartInterval),
		retries:       h.Retries,
		startedAt:     clock.Now(),
		state:         Starting,
	}
	if t.retries <= 0 {
		t.retries = defaultProbeRetries
	}
	return t
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// NextProbe is how long to wait, from now, before the next probe. Call it at
// start and after each Result: like Docker, the interval runs from the end of
// one probe to the start of the next.
//
// Within the start period and while Starting it is start_interval, capped so
// that the probe is not later than the end of the start period (moby PR
// 52317, fixing issue 46747); otherwise it is interval.
func (h *HealthTracker) NextProbe() time.Duration {
	elapsed := h.clock.Now().Sub(h.startedAt)
	if elapsed >= h.startPeriod || h.state != Starting {
		return h.interval
	}
	return min(h.startInterval, h.startPeriod-elapsed)
}

// Timeout is how long a probe may run before it counts as failed.
func (h *HealthTracker) Timeout() time.Duration { return h.timeout }

// ProbeStarted records that a probe starts now. Docker decides whether a
// failure falls in the start period by the probe's start time; without this
// call Result uses the time of the result.
func (h *HealthTracker) ProbeStarted() {
	h.probeStart = h.clock.Now()
	h.probing = true
}

// Result records a probe's outcome and returns the new state and whether it
// differs from the previous one. timedOut marks a probe killed after Timeout;
// it is a failure whatever exitCode says.
func (h *HealthTracker) Result(exitCode int, timedOut bool) (state HealthState, changed bool) {
	probeStart := h.clock.Now()
	if h.probing {
		probeStart = h.probeStart
	}
	h.probing = false

	old := h.state
	if exitCode == 0 && !timedOut {
		h.streak = 0
		h.state = Healthy
		return h.state, h.state != old
	}
	if h.state == Starting && probeStart.Sub(h.startedAt) < h.startPeriod {
		return h.state, false
	}
	h.streak++
	if h.streak >= h.retries {
		h.state = Unhealthy
	}
	return h.state, h.state != old
}

// State is the current health state.
func (h *HealthTracker) State() HealthState { return h.state }

// FailingStreak is the number of counted failures in a row.
func (h *HealthTracker) FailingStreak() int { return h.streak }

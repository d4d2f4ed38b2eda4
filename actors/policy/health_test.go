package policy

import (
	"testing"
	"time"

	"sstack/compose"
)

// probe is one probe: at offset at from the process start it starts, runs for
// took, and ends with exit (or a timeout).
type probe struct {
	at       time.Duration
	took     time.Duration
	exit     int
	timedOut bool

	state   HealthState
	changed bool
	streak  int
}

func playProbes(t *testing.T, hc compose.Healthcheck, probes []probe) *HealthTracker {
	t.Helper()
	clock := NewFakeClock(t0)
	h := NewHealthTracker(hc, clock)
	for i, p := range probes {
		clock.Set(t0.Add(p.at))
		h.ProbeStarted()
		clock.Advance(p.took)
		state, changed := h.Result(p.exit, p.timedOut)
		if state != p.state || changed != p.changed || h.FailingStreak() != p.streak || h.State() != state {
			t.Fatalf("probe %d at %v (exit %d, timedOut %v): got state %v changed %v streak %d (State() %v), want %v %v %d",
				i+1, p.at, p.exit, p.timedOut, state, changed, h.FailingStreak(), h.State(), p.state, p.changed, p.streak)
		}
	}
	return h
}

func TestHealthStateString(t *testing.T) {
	for s, want := range map[HealthState]string{Starting: "starting", Healthy: "healthy", Unhealthy: "unhealthy", HealthState(7): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(s), got, want)
		}
	}
}

func TestHealthDefaults(t *testing.T) {
	clock := NewFakeClock(t0)
	h := NewHealthTracker(compose.Healthcheck{Test: []string{"true"}}, clock)
	if h.State() != Starting || h.FailingStreak() != 0 {
		t.Fatalf("new tracker: %v streak %d", h.State(), h.FailingStreak())
	}
	if got := h.NextProbe(); got != 30*time.Second {
		t.Errorf("NextProbe() = %v, want 30s (default interval, no start period)", got)
	}
	if got := h.Timeout(); got != 30*time.Second {
		t.Errorf("Timeout() = %v, want 30s", got)
	}
	// Default retries: 3.
	playProbes(t, compose.Healthcheck{}, []probe{
		{at: 30 * time.Second, exit: 1, state: Starting, streak: 1},
		{at: 60 * time.Second, exit: 1, state: Starting, streak: 2},
		{at: 90 * time.Second, exit: 1, state: Unhealthy, changed: true, streak: 3},
	})
	// A start period alone gets the default start interval, 5s.
	h = NewHealthTracker(compose.Healthcheck{StartPeriod: time.Minute}, clock)
	if got := h.NextProbe(); got != 5*time.Second {
		t.Errorf("NextProbe() in start period = %v, want 5s (default start_interval)", got)
	}
	h = NewHealthTracker(compose.Healthcheck{Timeout: 3 * time.Second}, clock)
	if got := h.Timeout(); got != 3*time.Second {
		t.Errorf("Timeout() = %v, want 3s", got)
	}
}

func TestHealthNextProbe(t *testing.T) {
	hc := compose.Healthcheck{Interval: 30 * time.Second, StartPeriod: 60 * time.Second, StartInterval: 2 * time.Second}
	tests := []struct {
		name    string
		at      time.Duration
		healthy bool
		want    time.Duration
	}{
		{"start, starting", 0, false, 2 * time.Second},
		{"inside start period", 30 * time.Second, false, 2 * time.Second},
		{"2s before the end", 58 * time.Second, false, 2 * time.Second},
		{"capped at the end of the start period", 59 * time.Second, false, time.Second},
		{"capped, sub-second", 59*time.Second + 500*ms, false, 500 * ms},
		{"end of start period", 60 * time.Second, false, 30 * time.Second},
		{"after start period", time.Hour, false, 30 * time.Second},
		{"healthy inside start period uses interval", 10 * time.Second, true, 30 * time.Second},
		{"healthy after start period", 2 * time.Minute, true, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := NewFakeClock(t0)
			h := NewHealthTracker(hc, clock)
			if tc.healthy {
				clock.Advance(time.Second)
				h.Result(0, false)
			}
			clock.Set(t0.Add(tc.at))
			if got := h.NextProbe(); got != tc.want {
				t.Errorf("NextProbe() = %v, want %v", got, tc.want)
			}
		})
	}
}

// No start period: start_interval is never used.
func TestHealthNextProbeNoStartPeriod(t *testing.T) {
	clock := NewFakeClock(t0)
	h := NewHealthTracker(compose.Healthcheck{Interval: 10 * time.Second, StartInterval: time.Second}, clock)
	if got := h.NextProbe(); got != 10*time.Second {
		t.Errorf("NextProbe() = %v, want 10s", got)
	}
}

// A start period shorter than the start interval: the first probe runs when
// the start period ends (moby issue 46747).
func TestHealthNextProbeShortStartPeriod(t *testing.T) {
	clock := NewFakeClock(t0)
	h := NewHealthTracker(compose.Healthcheck{Interval: 2 * time.Second, StartPeriod: 2 * time.Second, StartInterval: 30 * time.Second}, clock)
	if got := h.NextProbe(); got != 2*time.Second {
		t.Errorf("NextProbe() = %v, want 2s", got)
	}
}

// Failures inside the start period do not count while starting; the first
// failure after it does.
func TestHealthStartPeriodFailures(t *testing.T) {
	hc := compose.Healthcheck{Interval: 5 * time.Second, Retries: 2, StartPeriod: 10 * time.Second, StartInterval: time.Second}
	playProbes(t, hc, []probe{
		{at: 1 * time.Second, exit: 1, state: Starting},
		{at: 2 * time.Second, exit: 1, state: Starting},
		{at: 9 * time.Second, exit: 1, state: Starting},
		{at: 10*time.Second - 1, exit: 1, state: Starting},
		{at: 10 * time.Second, exit: 1, state: Starting, streak: 1},
		{at: 15 * time.Second, exit: 1, state: Unhealthy, changed: true, streak: 2},
	})
}

// The start period is judged by the probe's start, as Docker does with
// result.Start: a probe that starts inside it and times out after it does not
// count.
func TestHealthStartPeriodUsesProbeStart(t *testing.T) {
	hc := compose.Healthcheck{Retries: 1, StartPeriod: 10 * time.Second, Timeout: 3 * time.Second}
	playProbes(t, hc, []probe{
		{at: 9 * time.Second, took: 3 * time.Second, exit: -1, timedOut: true, state: Starting},
		{at: 12 * time.Second, took: 3 * time.Second, exit: -1, timedOut: true, state: Unhealthy, changed: true, streak: 1},
	})

	// Without ProbeStarted, the time of the result is used.
	clock := NewFakeClock(t0)
	h := NewHealthTracker(hc, clock)
	clock.Advance(12 * time.Second)
	if state, changed := h.Result(1, false); state != Unhealthy || !changed {
		t.Errorf("Result without ProbeStarted at 12s: %v %v, want unhealthy true", state, changed)
	}
}

// A success inside the start period makes the process healthy at once, and
// from then on failures count even inside the start period.
func TestHealthSuccessInStartPeriod(t *testing.T) {
	hc := compose.Healthcheck{Retries: 2, StartPeriod: time.Minute, StartInterval: time.Second}
	playProbes(t, hc, []probe{
		{at: 1 * time.Second, exit: 1, state: Starting},
		{at: 2 * time.Second, exit: 0, state: Healthy, changed: true},
		{at: 3 * time.Second, exit: 1, state: Healthy, streak: 1},
		{at: 4 * time.Second, exit: 1, state: Unhealthy, changed: true, streak: 2},
	})
}

// Retries counted failures in a row make it unhealthy, exactly on the last
// one; a success in between resets the streak.
func TestHealthRetries(t *testing.T) {
	hc := compose.Healthcheck{Interval: time.Second, Retries: 3}
	playProbes(t, hc, []probe{
		{at: 1 * time.Second, exit: 0, state: Healthy, changed: true},
		{at: 2 * time.Second, exit: 1, state: Healthy, streak: 1},
		{at: 3 * time.Second, exit: 2, state: Healthy, streak: 2},
		{at: 4 * time.Second, exit: 0, state: Healthy},
		{at: 5 * time.Second, exit: 1, state: Healthy, streak: 1},
		{at: 6 * time.Second, exit: 1, state: Healthy, streak: 2},
		{at: 7 * time.Second, exit: 255, state: Unhealthy, changed: true, streak: 3},
		{at: 8 * time.Second, exit: 1, state: Unhealthy, streak: 4},
	})
}

// Retries 1: the first counted failure is enough, even from starting.
func TestHealthRetriesOne(t *testing.T) {
	playProbes(t, compose.Healthcheck{Retries: 1}, []probe{
		{at: time.Second, exit: 1, state: Unhealthy, changed: true, streak: 1},
	})
}

// Unhealthy recovers to healthy on one success and can fall again.
func TestHealthRecovery(t *testing.T) {
	hc := compose.Healthcheck{Retries: 2}
	playProbes(t, hc, []probe{
		{at: 1 * time.Second, exit: 1, state: Starting, streak: 1},
		{at: 2 * time.Second, exit: 1, state: Unhealthy, changed: true, streak: 2},
		{at: 3 * time.Second, exit: 1, state: Unhealthy, streak: 3},
		{at: 4 * time.Second, exit: 0, state: Healthy, changed: true},
		{at: 5 * time.Second, exit: 0, state: Healthy},
		{at: 6 * time.Second, exit: 1, state: Healthy, streak: 1},
		{at: 7 * time.Second, exit: 1, state: Unhealthy, changed: true, streak: 2},
	})
}

// A timeout is a failure even if an exit code 0 is reported with it.
func TestHealthTimeout(t *testing.T) {
	hc := compose.Healthcheck{Retries: 2, Timeout: time.Second}
	playProbes(t, hc, []probe{
		{at: 1 * time.Second, exit: 0, state: Healthy, changed: true},
		{at: 2 * time.Second, took: time.Second, exit: 0, timedOut: true, state: Healthy, streak: 1},
		{at: 4 * time.Second, took: time.Second, exit: -1, timedOut: true, state: Unhealthy, changed: true, streak: 2},
		{at: 6 * time.Second, exit: 0, state: Healthy, changed: true},
	})
}

// Every non-zero exit code is a failure.
func TestHealthExitCodes(t *testing.T) {
	for _, code := range []int{1, 2, 125, 126, 127, 255, -1} {
		clock := NewFakeClock(t0)
		h := NewHealthTracker(compose.Healthcheck{Retries: 1}, clock)
		if state, changed := h.Result(code, false); state != Unhealthy || !changed {
			t.Errorf("exit %d: %v %v, want unhealthy true", code, state, changed)
		}
	}
}

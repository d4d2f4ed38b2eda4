package policy

import (
	"testing"
	"time"

	"sstack/compose"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// run is one life of the process: it starts, runs for ran, then exits.
type run struct {
	ran  time.Duration
	exit int
	stop bool
	want Decision
}

// play feeds runs to a fresh tracker and checks every decision exactly.
func play(t *testing.T, p compose.RestartPolicy, runs []run) *RestartTracker {
	t.Helper()
	clock := NewFakeClock(t0)
	tr := NewRestartTracker(p, clock)
	for i, r := range runs {
		tr.Started()
		clock.Advance(r.ran)
		got := tr.Exited(r.exit, r.stop)
		if got != r.want {
			t.Fatalf("run %d (ran %v, exit %d, stop %v):\n got  %+v\n want %+v", i+1, r.ran, r.exit, r.stop, got, r.want)
		}
		if got.Restart {
			clock.Advance(got.Delay)
		}
	}
	return tr
}

// wantRestarts checks how many restarts tr has counted.
func wantRestarts(t *testing.T, tr *RestartTracker, n int) {
	t.Helper()
	if got := tr.Restarts(); got != n {
		t.Errorf("Restarts() = %d, want %d", got, n)
	}
}

// crashLoop is n runs that each crash (exit 1) at once under the engine's
// policy with maxAttempts: restarted after 100ms doubling to the 1 minute
// cap (TestRestartEngineBackoff).
func crashLoop(n, maxAttempts int) []run {
	var runs []run
	d := 100 * ms
	for i := range n {
		runs = append(runs, run{ran: ms, exit: 1, want: restarting(min(d, time.Minute), i+1, maxAttempts)})
		d *= 2
	}
	return runs
}

func restarting(delay time.Duration, attempt, maxAttempts int) Decision {
	return Decision{Restart: true, Delay: delay, Attempt: attempt, MaxAttempts: maxAttempts, Reason: ReasonRestarting}
}

func givingUp(attempts int) Decision {
	return Decision{Attempt: attempts, MaxAttempts: attempts, Reason: ReasonMaxAttempts}
}

const ms = time.Millisecond

// A single exit of a freshly started process, for every source and condition.
func TestRestartFirstExit(t *testing.T) {
	engine := func(cond string, maxAttempts int) compose.RestartPolicy {
		return compose.RestartPolicy{Source: "restart", Condition: cond, MaxAttempts: maxAttempts}
	}
	deploy := func(cond string, maxAttempts int) compose.RestartPolicy {
		return compose.RestartPolicy{Source: "deploy", Condition: cond, MaxAttempts: maxAttempts, Delay: 5 * time.Second}
	}
	notMet := func(maxAttempts int) Decision {
		return Decision{MaxAttempts: maxAttempts, Reason: ReasonConditionNotMet}
	}
	no := Decision{Reason: ReasonPolicyNo}
	stop := Decision{Reason: ReasonStopRequested}
	unknown := Decision{Reason: ReasonUnknownCondition}

	tests := []struct {
		name   string
		policy compose.RestartPolicy
		exit   int
		stop   bool
		want   Decision
	}{
		{"no source, exit 1", compose.RestartPolicy{}, 1, false, no},
		{"no source, exit 0", compose.RestartPolicy{}, 0, false, no},
		{"no source, deploy-like fields ignored", compose.RestartPolicy{Condition: "any", MaxAttempts: 3}, 1, false, no},

		{"restart no, exit 1", engine("no", 0), 1, false, no},
		{"restart empty condition is no", engine("", 0), 1, false, no},
		{"restart always, exit 0", engine("always", 0), 0, false, restarting(100*ms, 1, 0)},
		{"restart always, exit 137", engine("always", 0), 137, false, restarting(100*ms, 1, 0)},
		{"restart always ignores max attempts", engine("always", 3), 1, false, restarting(100*ms, 1, 0)},
		{"restart unless-stopped, exit 0", engine("unless-stopped", 0), 0, false, restarting(100*ms, 1, 0)},
		{"restart unless-stopped, exit 2", engine("unless-stopped", 0), 2, false, restarting(100*ms, 1, 0)},
		{"restart on-failure, exit 0", engine("on-failure", 0), 0, false, notMet(0)},
		{"restart on-failure:5, exit 0", engine("on-failure", 5), 0, false, notMet(5)},
		{"restart on-failure, exit 1", engine("on-failure", 0), 1, false, restarting(100*ms, 1, 0)},
		{"restart on-failure, exit -1", engine("on-failure", 0), -1, false, restarting(100*ms, 1, 0)},
		{"restart on-failure:5, exit 3", engine("on-failure", 5), 3, false, restarting(100*ms, 1, 5)},
		{"restart unknown condition", engine("sometimes", 0), 1, false, unknown},

		{"deploy none, exit 1", deploy("none", 0), 1, false, no},
		{"deploy empty condition is any", deploy("", 0), 0, false, restarting(5*time.Second, 1, 0)},
		{"deploy any, exit 0", deploy("any", 0), 0, false, restarting(5*time.Second, 1, 0)},
		{"deploy any, exit 1, max 2", deploy("any", 2), 1, false, restarting(5*time.Second, 1, 2)},
		{"deploy on-failure, exit 0", deploy("on-failure", 3), 0, false, notMet(3)},
		{"deploy on-failure, exit 1", deploy("on-failure", 3), 1, false, restarting(5*time.Second, 1, 3)},
		{"deploy zero delay", compose.RestartPolicy{Source: "deploy", Condition: "any"}, 1, false, restarting(0, 1, 0)},
		{"deploy negative delay is 0", compose.RestartPolicy{Source: "deploy", Delay: -time.Second}, 1, false, restarting(0, 1, 0)},
		{"deploy unknown condition", deploy("always", 0), 1, false, unknown},

		// A stop sstack asked for never restarts, whatever the policy.
		{"stop, no source", compose.RestartPolicy{}, 0, true, stop},
		{"stop, restart no", engine("no", 0), 143, true, stop},
		{"stop, restart always", engine("always", 0), 143, true, stop},
		{"stop, restart always exit 0", engine("always", 0), 0, true, stop},
		{"stop, restart unless-stopped", engine("unless-stopped", 0), 143, true, stop},
		{"stop, restart on-failure", engine("on-failure", 3), 137, true, stop},
		{"stop, deploy none", deploy("none", 0), 143, true, stop},
		{"stop, deploy any", deploy("any", 0), 143, true, stop},
		{"stop, deploy on-failure", deploy("on-failure", 0), 137, true, stop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := play(t, tc.policy, []run{{ran: time.Second, exit: tc.exit, stop: tc.stop, want: tc.want}})
			restarts := 0
			if tc.want.Restart {
				restarts = 1
			}
			wantRestarts(t, tr, restarts)
		})
	}
}

// The engine backoff: 100ms doubling to a 1 minute cap while the process
// keeps crashing within 10s.
func TestRestartEngineBackoff(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "always"}
	delays := []time.Duration{
		100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms,
		12800 * ms, 25600 * ms, 51200 * ms, time.Minute, time.Minute, time.Minute,
	}
	var runs []run
	for i, d := range delays {
		runs = append(runs, run{ran: 9 * time.Second, exit: 1, want: restarting(d, i+1, 0)})
	}
	tr := play(t, p, runs)
	wantRestarts(t, tr, len(delays))
}

// A run of at least 10s resets the delay to 100ms; 10s minus 1ns does not.
// The attempt number keeps growing: the engine never resets RestartCount.
func TestRestartEngineBackoffReset(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "unless-stopped"}
	play(t, p, []run{
		{ran: 0, exit: 1, want: restarting(100*ms, 1, 0)},
		{ran: time.Second, exit: 1, want: restarting(200*ms, 2, 0)},
		{ran: 10*time.Second - 1, exit: 1, want: restarting(400*ms, 3, 0)},
		{ran: 10 * time.Second, exit: 1, want: restarting(100*ms, 4, 0)},
		{ran: 0, exit: 0, want: restarting(200*ms, 5, 0)},
		{ran: time.Hour, exit: 0, want: restarting(100*ms, 6, 0)},
	})
}

// The cap also holds when a reset comes after reaching it.
func TestRestartEngineBackoffResetFromCap(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "always"}
	runs := append(crashLoop(12, 0),
		run{ran: 11 * time.Second, exit: 1, want: restarting(100*ms, 13, 0)},
		run{ran: ms, exit: 1, want: restarting(200*ms, 14, 0)},
	)
	play(t, p, runs)
}

// on-failure:3 in a crash loop: 3 restarts, then give up (4 runs in total).
func TestRestartEngineOnFailureMax(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "on-failure", MaxAttempts: 3}
	tr := play(t, p, append(crashLoop(3, 3), run{ran: ms, exit: 1, want: givingUp(3)}))
	wantRestarts(t, tr, 3)
}

// Docker does not reset the on-failure count after a long run: only the delay
// goes back to 100ms.
func TestRestartEngineOnFailureCountNotResetByLongRun(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "on-failure", MaxAttempts: 2}
	play(t, p, []run{
		{ran: time.Hour, exit: 1, want: restarting(100*ms, 1, 2)},
		{ran: time.Hour, exit: 1, want: restarting(100*ms, 2, 2)},
		{ran: time.Hour, exit: 1, want: givingUp(2)},
	})
}

// A clean exit in the middle of an on-failure loop stops it; exit 0 wins over
// the exhausted count.
func TestRestartEngineOnFailureCleanExit(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "on-failure", MaxAttempts: 1}
	play(t, p, []run{
		{ran: ms, exit: 2, want: restarting(100*ms, 1, 1)},
		{ran: ms, exit: 0, want: Decision{MaxAttempts: 1, Reason: ReasonConditionNotMet}},
	})
	play(t, p, []run{
		{ran: ms, exit: 2, want: restarting(100*ms, 1, 1)},
		{ran: ms, exit: 2, want: givingUp(1)},
	})
}

// on-failure without a limit restarts forever.
func TestRestartEngineOnFailureUnlimited(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "on-failure"}
	var runs []run
	for i := range 20 {
		runs = append(runs, run{ran: time.Minute, exit: 1, want: restarting(100*ms, i+1, 0)})
	}
	play(t, p, runs)
}

// A stop request in the middle of a loop does not restart and does not count.
func TestRestartStopRequestedMidLoop(t *testing.T) {
	p := compose.RestartPolicy{Source: "restart", Condition: "on-failure", MaxAttempts: 5}
	tr := play(t, p, append(crashLoop(2, 5), run{ran: ms, exit: 143, stop: true, want: Decision{Reason: ReasonStopRequested}}))
	wantRestarts(t, tr, 2)
}

// deploy: a fixed delay and MaxAttempts restarts, then give up.
func TestRestartDeployMaxAttempts(t *testing.T) {
	p := compose.RestartPolicy{Source: "deploy", Condition: "on-failure", MaxAttempts: 3, Delay: 2 * time.Second}
	tr := play(t, p, []run{
		{ran: ms, exit: 1, want: restarting(2*time.Second, 1, 3)},
		{ran: ms, exit: 1, want: restarting(2*time.Second, 2, 3)},
		{ran: ms, exit: 1, want: restarting(2*time.Second, 3, 3)},
		{ran: ms, exit: 1, want: givingUp(3)},
	})
	wantRestarts(t, tr, 3)
}

// deploy window: a run of at least Window was a successful restart and starts
// the count again; a shorter run counts.
func TestRestartDeployWindow(t *testing.T) {
	p := compose.RestartPolicy{Source: "deploy", Condition: "any", MaxAttempts: 2, Delay: time.Second, Window: 30 * time.Second}
	tr := play(t, p, []run{
		{ran: ms, exit: 1, want: restarting(time.Second, 1, 2)},
		{ran: ms, exit: 1, want: restarting(time.Second, 2, 2)},
		{ran: 30 * time.Second, exit: 1, want: restarting(time.Second, 1, 2)},
		{ran: 5 * time.Second, exit: 0, want: restarting(time.Second, 2, 2)},
		{ran: 30*time.Second - 1, exit: 1, want: givingUp(2)},
	})
	wantRestarts(t, tr, 4)
}

// deploy without a window: every restart counts, however long it ran.
func TestRestartDeployNoWindow(t *testing.T) {
	p := compose.RestartPolicy{Source: "deploy", Condition: "any", MaxAttempts: 2}
	play(t, p, []run{
		{ran: time.Hour, exit: 1, want: restarting(0, 1, 2)},
		{ran: time.Hour, exit: 1, want: restarting(0, 2, 2)},
		{ran: time.Hour, exit: 1, want: givingUp(2)},
	})
}

// deploy with a window and no limit keeps restarting; the window only resets
// the attempt number.
func TestRestartDeployWindowUnlimited(t *testing.T) {
	p := compose.RestartPolicy{Source: "deploy", Window: 10 * time.Second}
	play(t, p, []run{
		{ran: ms, exit: 1, want: restarting(0, 1, 0)},
		{ran: ms, exit: 1, want: restarting(0, 2, 0)},
		{ran: ms, exit: 1, want: restarting(0, 3, 0)},
		{ran: 10 * time.Second, exit: 1, want: restarting(0, 1, 0)},
	})
}

// Without Started the run counts as 0s: no backoff reset, no window reset.
func TestRestartExitedWithoutStarted(t *testing.T) {
	clock := NewFakeClock(t0)
	tr := NewRestartTracker(compose.RestartPolicy{Source: "restart", Condition: "always"}, clock)
	tr.Started()
	clock.Advance(time.Minute)
	if got, want := tr.Exited(1, false), restarting(100*ms, 1, 0); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	clock.Advance(time.Hour)
	if got, want := tr.Exited(1, false), restarting(200*ms, 2, 0); got != want {
		t.Fatalf("second exit without Started: got %+v, want %+v", got, want)
	}

	d := NewRestartTracker(compose.RestartPolicy{Source: "deploy", MaxAttempts: 1, Window: time.Second}, clock)
	d.Started()
	clock.Advance(time.Hour)
	if got, want := d.Exited(1, false), restarting(0, 1, 1); got != want {
		t.Fatalf("deploy: got %+v, want %+v", got, want)
	}
	clock.Advance(time.Hour)
	if got, want := d.Exited(1, false), givingUp(1); got != want {
		t.Fatalf("deploy without Started: got %+v, want %+v", got, want)
	}
}

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(t0)
	c.Advance(time.Second)
	if got := c.Now(); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("after Advance: %v", got)
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Errorf("after Set: %v", got)
	}
	var _ Clock = RealClock{}
	if RealClock.Now(RealClock{}).IsZero() {
		t.Error("RealClock returned the zero time")
	}
}

package rollout

import (
	"slices"
	"testing"
	"time"

	"sstack/compose"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func rolling(parallelism int, action string) compose.UpdateConfig {
	return compose.UpdateConfig{Parallelism: parallelism, Delay: time.Second, Order: compose.UpdateStopFirst,
		Monitor: 5 * time.Second, FailureAction: action}
}

// One at a time: the next replica is replaced only once the previous one
// has run through the monitor period and the delay has passed.
func TestOneAtATimeInOrder(t *testing.T) {
	m := New(rolling(1, compose.UpdatePause), 3)
	now := t0
	var order []int
	for i := 0; i < 3; i++ {
		step := m.Next(now)
		if len(step.Replace) != 1 {
			t.Fatalf("batch %d: replace %v, want one replica", i+1, step.Replace)
		}
		r := step.Replace[0]
		order = append(order, r)
		if s := m.Next(now); len(s.Replace) != 0 || !s.Wake.IsZero() {
			t.Fatalf("replica %d not running yet, yet Next says %+v", r, s)
		}
		now = now.Add(2 * time.Second)
		m.Running(r, now)
		if s := m.Next(now.Add(4 * time.Second)); len(s.Replace) != 0 || !s.Wake.Equal(now.Add(5*time.Second)) {
			t.Fatalf("replica %d within its monitor period: %+v, want a wake at the period's end", r, s)
		}
		now = now.Add(5 * time.Second)
		if s := m.Next(now); len(s.Replace) != 0 && i < 2 {
			t.Fatalf("replica %d passed: the delay must come before the next batch, got %v", r, s.Replace)
		} else if i < 2 && !s.Wake.Equal(now.Add(time.Second)) {
			t.Fatalf("after replica %d: wake %v, want the delay's end %v", r, s.Wake, now.Add(time.Second))
		}
		now = now.Add(time.Second)
	}
	if !slices.Equal(order, []int{1, 2, 3}) {
		t.Errorf("order %v, want 1 2 3", order)
	}
	m.Next(now)
	if st, _ := m.State(); st != Completed {
		t.Errorf("state %v after every replica passed, want Completed", st)
	}
	if done, total := m.Progress(); done != 3 || total != 3 {
		t.Errorf("progress %d/%d, want 3/3", done, total)
	}
}

// Without update_config every replica is replaced at once, and a failure
// does not stop anything (docker compose).
func TestAllAtOnce(t *testing.T) {
	m := New(compose.AllAtOnce, 3)
	step := m.Next(t0)
	if !slices.Equal(step.Replace, []int{1, 2, 3}) {
		t.Fatalf("replace %v, want all three at once", step.Replace)
	}
	m.Running(1, t0)
	m.Failed(2, "failed to start", t0)
	m.Running(3, t0)
	m.Next(t0)
	if st, _ := m.State(); st != Completed {
		t.Errorf("state %v, want Completed despite a failure", st)
	}
}

func TestFailureActions(t *testing.T) {
	for _, tc := range []struct {
		action string
		want   State
	}{
		{compose.UpdatePause, Paused},
		{compose.UpdateRollback, RollingBack},
		{compose.UpdateContinue, Updating},
	} {
		m := New(rolling(1, tc.action), 3)
		now := t0
		m.Next(now)
		m.Running(1, now)
		now = now.Add(6 * time.Second)
		m.Next(now)
		now = now.Add(time.Second)
		if s := m.Next(now); !slices.Equal(s.Replace, []int{2}) {
			t.Fatalf("%s: second batch %v, want [2]", tc.action, s.Replace)
		}
		m.Running(2, now)
		m.Failed(2, "is unhealthy", now.Add(time.Second))
		st, why := m.State()
		if st != tc.want {
			t.Errorf("%s: state %v after a failure, want %v", tc.action, st, tc.want)
		}
		if tc.want != Updating && why != "replica 2 is unhealthy" {
			t.Errorf("%s: why %q", tc.action, why)
		}
		if tc.action == compose.UpdateRollback && !slices.Equal(m.RollBack(), []int{1, 2}) {
			t.Errorf("rollback of %v, want replicas 1 and 2", m.RollBack())
		}
		if tc.action == compose.UpdatePause {
			if s := m.Next(now.Add(time.Hour)); len(s.Replace) != 0 {
				t.Errorf("paused, yet Next replaces %v", s.Replace)
			}
		}
	}
}

// max_failure_ratio tolerates that share of failures.
func TestMaxFailureRatio(t *testing.T) {
	cfg := rolling(0, compose.UpdatePause)
	cfg.MaxFailureRatio = 0.5
	m := New(cfg, 4)
	m.Next(t0)
	m.Failed(1, "exited", t0)
	m.Failed(2, "exited", t0)
	if st, _ := m.State(); st != Updating {
		t.Fatalf("2 of 4 failed with max_failure_ratio 0.5: state %v, want still Updating", st)
	}
	m.Failed(3, "exited", t0)
	if st, _ := m.State(); st != Paused {
		t.Errorf("3 of 4 failed: state %v, want Paused", st)
	}
}

// Package rollout decides how a changed service's replicas are replaced
// (deploy.update_config): which replicas to replace next, when, and what a
// failure leads to. It is a pure machine, as actors/lifecycle is: the
// stack supervisor tells it what happened to the replicas it replaced and
// performs what Next says; time comes in as arguments.
package rollout

import (
	"fmt"
	"slices"
	"time"

	"sstack/compose"
)

// State of a rollout.
type State int

const (
	Updating State = iota
	// Completed: every replica was replaced (failures within
	// max_failure_ratio, or failure_action continue).
	Completed
	// Paused: failure_action pause; the replicas not replaced yet keep
	// the previous configuration.
	Paused
	// RollingBack: failure_action rollback; RollBack lists the replicas
	// that have the new configuration and must get the previous one.
	RollingBack
)

// Step is what the supervisor does now.
type Step struct {
	// Replace are the replicas (1-based) to replace now.
	Replace []int
	// Wake: nothing to do before then (zero: until a replica reports).
	Wake time.Time
}

// Machine is the rollout of one service.
type Machine struct {
	cfg      compose.UpdateConfig
	total    int
	pending  []int             // not replaced yet, in order
	watching map[int]time.Time // replaced: zero until it runs, then since when it runs
	passed   []int             // replaced, and ran through the monitor period
	failed   []int
	next     time.Time // the delay after a batch
	state    State
	why      string
}

// New starts the rollout of replicas 1..n with cfg.
func New(cfg compose.UpdateConfig, n int) *Machine {
	m := &Machine{cfg: cfg, total: n, watching: map[int]time.Time{}}
	for r := 1; r <= n; r++ {
		m.pending = append(m.pending, r)
	}
	return m
}

// State is where the rollout stands, and why it stopped (Paused,
// RollingBack).
func (m *Machine) State() (State, string) { return m.state, m.why }

// Progress: replicas replaced so far (passed or failed), of the total.
func (m *Machine) Progress() (done, total int) { return len(m.passed) + len(m.failed), m.total }

// RollBack are the replicas to give the previous configuration again:
// every one replaced so far.
func (m *Machine) RollBack() []int {
	out := append(slices.Clone(m.passed), m.failed...)
	for r := range m.watching {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Running: replaced replica r runs (and is healthy, where it has a
// healthcheck); the monitor period begins.
func (m *Machine) Running(r int, now time.Time) {
	if since, ok := m.watching[r]; ok && since.IsZero() {
		m.watching[r] = now
	}
}

// Failed: replaced replica r failed to start, exited, or turned unhealthy
// within the monitor period. reason says which.
func (m *Machine) Failed(r int, reason string, now time.Time) {
	if _, ok := m.watching[r]; !ok || m.state != Updating {
		return
	}
	delete(m.watching, r)
	m.failed = append(m.failed, r)
	if len(m.watching) == 0 {
		m.next = now.Add(m.cfg.Delay)
	}
	if float64(len(m.failed)) <= m.cfg.MaxFailureRatio*float64(m.total) {
		return
	}
	switch m.cfg.FailureAction {
	case compose.UpdatePause:
		m.state, m.why = Paused, fmt.Sprintf("replica %d %s", r, reason)
	case compose.UpdateRollback:
		m.state, m.why = RollingBack, fmt.Sprintf("replica %d %s", r, reason)
	}
}

// Next says what to do at now: the next batch once the previous one has
// run through its monitor period and the delay has passed.
func (m *Machine) Next(now time.Time) Step {
	if m.state != Updating {
		return Step{}
	}
	var wake time.Time
	for r, since := range m.watching {
		if since.IsZero() {
			continue // not running yet: its events will tell
		}
		if end := since.Add(m.cfg.Monitor); now.Before(end) {
			if wake.IsZero() || end.Before(wake) {
				wake = end
			}
			continue
		}
		delete(m.watching, r)
		m.passed = append(m.passed, r)
		if len(m.watching) == 0 {
			m.next = now.Add(m.cfg.Delay)
		}
	}
	if len(m.watching) > 0 {
		return Step{Wake: wake}
	}
	if len(m.pending) == 0 {
		m.state = Completed
		return Step{}
	}
	if now.Before(m.next) {
		return Step{Wake: m.next}
	}
	n := m.cfg.Parallelism
	if n <= 0 || n > len(m.pending) {
		n = len(m.pending)
	}
	batch := m.pending[:n:n]
	m.pending = m.pending[n:]
	for _, r := range batch {
		m.watching[r] = time.Time{}
	}
	return Step{Replace: batch}
}

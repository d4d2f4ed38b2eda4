// Package supervision holds the stack supervisor's decisions, pure, as
// actors/lifecycle holds a replica's: the stack's phase, a replica's ps
// row derived from its events, the status a service's replicas give its
// dependents, when a foreground stack is over, and the teardown walk in
// reverse dependency order. No actor, no clock, no I/O: the stack actor
// (actors/stack.go, teardown.go) feeds it what happened and performs what
// it says; its tests are tables.
package supervision

import (
	"sort"

	"sstack/actors/lifecycle"
	"sstack/internal/api"
)

// Phase is where the whole stack is. It only moves forward.
type Phase int

const (
	// Running: replicas start, run and restart by their policies.
	Running Phase = iota
	// Stopping: the teardown was asked for (Ctrl-C, down, an abort, a
	// failure): services stop in reverse dependency order.
	Stopping
	// Killing: as Stopping, and every stop is a kill (a second Ctrl-C).
	Killing
	// Finished: every replica is gone; the stack's end is reported.
	Finished
)

// TearingDown: the stack is being, or has been, taken down; no replica
// is started or replaced any more.
func (p Phase) TearingDown() bool { return p >= Stopping }

// Stop moves to Stopping; it reports whether the teardown starts now.
func (p *Phase) Stop() bool {
	if *p != Running {
		return false
	}
	*p = Stopping
	return true
}

// Kill moves to Killing (from Running or Stopping).
func (p *Phase) Kill() {
	if *p < Killing {
		*p = Killing
	}
}

// Finish moves to Finished; it reports whether the stack ends now (once).
func (p *Phase) Finish() bool {
	if *p == Finished {
		return false
	}
	*p = Finished
	return true
}

// Apply derives a replica's ps row from one of its events. healthcheck:
// the replica's service has one, so a new run starts as "starting".
func Apply(row *api.Replica, ev api.Event, healthcheck bool) {
	if ev.State != "" && ev.State != row.State {
		row.State, row.Since = ev.State, ev.Time
	}
	switch ev.Kind {
	case api.EventStarted:
		row.Ran = true
		row.Pid = ev.Pid
		row.Reason = ""
		switch {
		case healthcheck:
			row.Health = api.HealthStarting
		case row.Health == api.HealthNone && ev.Health != "":
			row.Health = ev.Health
		}
	case api.EventDied:
		row.ExitCode, row.Pid, row.Health = ev.ExitCode, 0, api.HealthNone
	case api.EventHealth:
		row.Health = ev.Health
	case api.EventRestarting:
		if ev.Dependency == "" && !ev.User {
			row.Restarts++
		}
	case api.EventFailed:
		row.Reason = ev.Message
	case api.EventDestroyed:
		row.Pid, row.Health = 0, api.HealthNone
	}
}

// Gone: the replica has neither process nor instance.
func Gone(row api.Replica) bool { return row.State == api.StateStopped }

// Member is what the decisions need of one replica of a service.
type Member struct {
	Row api.Replica
	// Removing: scaled down; it no longer counts for its dependents.
	Removing bool
}

// Status is what a service's replicas tell its dependents (depends_on
// conditions): started once every replica's process has started,
// healthy while each runs healthy, exited once each has exited (the
// first non-zero code), failed with the first failure's reason.
func Status(service string, reps []Member) lifecycle.DepStatus {
	u := lifecycle.DepStatus{Service: service, Started: true, Healthy: true, Exited: true}
	for _, m := range reps {
		if m.Removing {
			continue
		}
		r := m.Row
		if !r.Ran {
			u.Started = false
		}
		if r.Health != api.HealthHealthy || r.State != api.StateRunning {
			u.Healthy = false
		}
		if r.Health == api.HealthUnhealthy {
			u.Unhealthy = true
		}
		if r.State == api.StateExited {
			if r.ExitCode != 0 && u.ExitCode == 0 {
				u.ExitCode = r.ExitCode
			}
		} else {
			u.Exited = false
		}
		if r.State == api.StateFailed && !u.Failed {
			u.Failed, u.Reason = true, r.Reason
		}
	}
	return u
}

// Over: every replica has exited for good, failed or was stopped, so a
// foreground up ends, as docker compose's does.
func Over(rows []api.Replica) bool {
	for _, r := range rows {
		switch r.State {
		case api.StateExited, api.StateFailed, api.StateStopped:
		default:
			return false
		}
	}
	return true
}

// Teardown is the walk that stops services in reverse dependency order: a
// service is sent its stop once every service that depends on it is gone.
type Teardown struct {
	sent map[string]bool
}

// Next says which services to send their stop to now, each once, in name
// order, and whether every service is gone. dependents are, per service,
// the services that depend on it; gone says whether all of a service's
// replicas are.
func (t *Teardown) Next(services []string, dependents map[string][]string, gone func(service string) bool) (stop []string, all bool) {
	if t.sent == nil {
		t.sent = map[string]bool{}
	}
	names := append([]string(nil), services...)
	sort.Strings(names)
	all = true
	for _, name := range names {
		if !gone(name) {
			all = false
		}
		if t.sent[name] {
			continue
		}
		ready := true
		for _, d := range dependents[name] {
			if !gone(d) {
				ready = false
				break
			}
		}
		if ready {
			t.sent[name] = true
			stop = append(stop, name)
		}
	}
	return stop, all
}

// SendAll marks every service as sent its stop (a kill goes to all at
// once).
func (t *Teardown) SendAll(services []string) {
	if t.sent == nil {
		t.sent = map[string]bool{}
	}
	for _, s := range services {
		t.sent[s] = true
	}
}

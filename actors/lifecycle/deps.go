package lifecycle

import (
	"fmt"

	"sstack/compose"
	"sstack/internal/api"
)

// DepStatus is what one dependency (all its replicas together) has
// reached; the supervisor computes it, the dependent decides what it means
// for its depends_on condition.
type DepStatus struct {
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

// depsSatisfied reports whether every dependency meets its condition, and
// the reason the replica can never start if a required one never will. An
// optional dependency (required: false) that never will only warns, once.
func (m *Machine) depsSatisfied(out *effects) (ok bool, failure string) {
	ok = true
	for _, d := range m.cfg.Deps {
		st, seen := m.deps[d.Service]
		met, never, why := conditionMet(d, st, seen)
		switch {
		case never && d.Required:
			return false, fmt.Sprintf("dependency %q %s", d.Service, why)
		case never:
			if !m.warned[d.Service] {
				m.warned[d.Service] = true
				ev := m.event(api.EventWarning)
				ev.Message = fmt.Sprintf("optional dependency %q %s; starting without it (required: false)", d.Service, why)
				m.emit(out, ev)
			}
		case !met:
			ok = false
		}
	}
	return ok, ""
}

// conditionMet interprets a dependency's status for a depends_on
// condition: met, or never going to be met (and why).
func conditionMet(d compose.Dependency, u DepStatus, seen bool) (met, never bool, why string) {
	if !seen {
		return false, false, ""
	}
	if u.Failed {
		return false, true, "failed: " + u.Reason
	}
	switch d.Condition {
	case compose.ConditionHealthy:
		switch {
		case u.Healthy:
			return true, false, ""
		case u.Unhealthy:
			return false, true, "is unhealthy"
		case u.Exited:
			return false, true, fmt.Sprintf("exited with code %d before it became healthy", u.ExitCode)
		}
	case compose.ConditionCompletedSuccessfully:
		if u.Exited {
			if u.ExitCode == 0 {
				return true, false, ""
			}
			return false, true, fmt.Sprintf("did not complete successfully: exit %d", u.ExitCode)
		}
	default:
		if u.Started {
			return true, false, ""
		}
		if u.Exited {
			return false, true, fmt.Sprintf("exited with code %d before its process started", u.ExitCode)
		}
	}
	return false, false, ""
}

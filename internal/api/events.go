package api

import (
	"fmt"
	"strings"
	"time"
)

// EventKind says what happened. Replica events carry the docker compose
// events action they correspond to (Action); the others are sstack's own.
type EventKind string

const (
	// Replica life cycle.
	EventCreating   EventKind = "creating"      // instance start begun
	EventCreated    EventKind = "create"        // instance started
	EventStarted    EventKind = "start"         // process started
	EventDied       EventKind = "die"           // process exited (ExitCode; Restart/GaveUp say what follows)
	EventRestarting EventKind = "restart"       // process started again (Recreate: instance was gone)
	EventHealth     EventKind = "health_status" // Health changed
	EventStopping   EventKind = "stop"          // stop signal sent (Signal)
	EventKilled     EventKind = "kill"          // SIGKILL after the grace period, or a signal a user sent (Signal, User)
	EventDestroyed  EventKind = "destroy"       // instance stopped and gone
	EventFailed     EventKind = "failed"        // cannot start, or start failed (Message)
	EventFollowDep  EventKind = "follow"        // restarting because Dependency restarted (depends_on.restart)
	EventScaled     EventKind = "scale"         // replica added or removed by scale (Message)
	EventWarning    EventKind = "warning"       // something the user should know (Message)
	EventState      EventKind = "state"         // a change of State nothing else tells (not printed)

	// Converging a running stack to an edited compose file (up).
	EventRecreate        EventKind = "recreate"         // replaced: its configuration changed
	EventRunning         EventKind = "running"          // up to date: left running
	EventUpdated         EventKind = "update"           // a rolling update replaced a replica (Updated of Total)
	EventUpdateCompleted EventKind = "update_completed" // a rolling update replaced every replica
	EventUpdatePaused    EventKind = "update_paused"    // a rolling update stopped (Message: why)
	EventRollback        EventKind = "rollback"         // a rolling update is undone (Message: why)
	EventRolledBack      EventKind = "rolled_back"      // the previous configuration runs again
	EventConverged       EventKind = "converged"        // up has applied the file (not printed)

	// Stack-wide (Service empty).
	EventAttaching   EventKind = "attach"       // Names are the replicas started
	EventAborting    EventKind = "abort"        // --abort-on-container-exit and friends
	EventStopStack   EventKind = "stop_stack"   // graceful teardown asked for (Message: why)
	EventKillStack   EventKind = "kill_stack"   // immediate teardown asked for
	EventStackNotice EventKind = "stack_notice" // stack-level message (Message)
)

// Event is one thing that happened in a stack. The supervisor emits it;
// the console prints Line, the metrics count it, ps derives replica
// state from it, and `sstack events` streams it.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"action"`
	Project  string    `json:"project"`
	Service  string    `json:"service,omitempty"`
	Replica  int       `json:"replica,omitempty"`
	Name     string    `json:"name,omitempty"`     // display name, web-1
	Instance string    `json:"instance,omitempty"` // Apptainer instance
	// State is the replica's state after the event.
	State State `json:"state,omitempty"`

	ExitCode int    `json:"exitCode,omitempty"`
	Health   Health `json:"health,omitempty"`
	Signal   string `json:"signal,omitempty"`
	Pid      int    `json:"pid,omitempty"`

	// Died: what the restart policy decided.
	Restart     bool          `json:"restart,omitempty"`
	Delay       time.Duration `json:"delay,omitempty"`
	Attempt     int           `json:"attempt,omitempty"`
	MaxAttempts int           `json:"maxAttempts,omitempty"`
	GaveUp      bool          `json:"gaveUp,omitempty"`
	// OOMKilled: the kernel killed the process for exceeding the memory
	// limit of its instance (Died).
	OOMKilled bool `json:"oomKilled,omitempty"`
	// Requested: sstack or its user caused this exit or stop, so no
	// policy applies and nothing aborts.
	Requested bool `json:"requested,omitempty"`
	// Final (Died): the replica was being stopped for good, by the stack's
	// teardown (Ctrl-C, an abort, down) or a scale down; a user's stop or
	// restart is not final.
	Final bool `json:"final,omitempty"`

	// Restarting: the instance was gone and is recreated.
	Recreate bool `json:"recreate,omitempty"`
	// Killed: the grace period that expired.
	Grace time.Duration `json:"grace,omitempty"`
	// Destroyed: there never was an instance (nothing to say on the console).
	NoInstance bool `json:"noInstance,omitempty"`
	// User: a user's kill or stop (not the teardown).
	User bool `json:"user,omitempty"`
	// FollowDep: the dependency that restarted.
	Dependency string `json:"dependency,omitempty"`
	// Updated: replicas of the service replaced so far, of Total.
	Updated int `json:"updated,omitempty"`
	Total   int `json:"total,omitempty"`
	// Attaching: the replicas.
	Names   []string `json:"names,omitempty"`
	Message string   `json:"message,omitempty"`
}

// Line is the console status line of the event: the one place where
// sstack's status text is built. "" means the event is not printed.
// Warning is a warning about the project, or with service about one of
// its services: what up's checks found, printed and published as every
// other event is.
func Warning(service, format string, args ...any) Event {
	return Event{Kind: EventWarning, Service: service, Message: fmt.Sprintf(format, args...)}
}

// OrphansWarning is docker compose's warning about the instances of
// services no longer in the compose file (up and down leave them).
func OrphansWarning(instances []string) Event {
	return Warning("", "Found orphan instances (%s) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.", strings.Join(instances, ", "))
}

func (e Event) Line() string {
	switch e.Kind {
	case EventCreating:
		return "Instance " + e.Instance + "  Creating"
	case EventCreated:
		return "Instance " + e.Instance + "  Created"
	case EventStarted:
		return "Instance " + e.Instance + "  Started"
	case EventDied:
		if e.Final {
			// docker compose prints no exit once its teardown has begun
			// (no "exited with code 143" after Ctrl-C or an abort): the
			// exit is what was asked for, and Stopping/Stopped tell it.
			return ""
		}
		return e.diedLine()
	case EventRestarting:
		if e.Recreate {
			return fmt.Sprintf("%s: instance %s is gone, recreating it", e.Name, e.Instance)
		}
		return fmt.Sprintf("%s: restarting the process in instance %s", e.Name, e.Instance)
	case EventHealth:
		switch e.Health {
		case HealthHealthy:
			return e.Name + " is healthy"
		case HealthUnhealthy:
			return e.Name + " is unhealthy: " + e.Message
		}
		return ""
	case EventStopping:
		return "Instance " + e.Instance + "  Stopping"
	case EventKilled:
		if e.User {
			return fmt.Sprintf("%s: sent %s", e.Name, e.Signal)
		}
		if e.Message != "" {
			return e.Name + ": " + e.Message
		}
		return fmt.Sprintf("%s did not stop within %s, killing it", e.Name, e.Grace)
	case EventDestroyed:
		if e.NoInstance {
			return ""
		}
		if e.Message != "" {
			return e.Instance + ": " + e.Message
		}
		return "Instance " + e.Instance + "  Stopped"
	case EventFailed:
		return e.Name + " cannot start: " + e.Message
	case EventFollowDep:
		return fmt.Sprintf("%s restarting because its dependency %s restarted", e.Name, e.Dependency)
	case EventWarning:
		switch {
		case e.Name != "": // a replica's
			return e.Name + ": " + e.Message
		case e.Service != "":
			return fmt.Sprintf("WARN service %q: %s", e.Service, e.Message)
		}
		return "WARN " + e.Message
	case EventScaled:
		return e.Name + ": " + e.Message
	case EventRecreate:
		return "Instance " + e.Instance + "  Recreate"
	case EventRunning:
		return "Instance " + e.Instance + "  Running"
	case EventUpdated:
		return fmt.Sprintf("%s updated %d/%d", e.Name, e.Updated, e.Total)
	case EventUpdateCompleted:
		return fmt.Sprintf("update of %s completed", e.Service)
	case EventUpdatePaused:
		return fmt.Sprintf("update of %s paused: %s", e.Service, e.Message)
	case EventRollback:
		return fmt.Sprintf("rolling %s back: %s", e.Service, e.Message)
	case EventRolledBack:
		return e.Service + " rolled back"
	case EventAttaching:
		return "Attaching to " + strings.Join(e.Names, ", ")
	case EventAborting:
		return "Aborting on container exit..."
	case EventKillStack:
		return "Killing..."
	case EventStopStack, EventStackNotice:
		return e.Message
	}
	return ""
}

// diedLine renders an exit and what follows it, e.g.
//
//	db-1 exited with code 3, restarting in 2s (attempt 2 of 5)
//	db-1 exited with code 3, giving up after 5 attempts
//	db-1 exited with code 0
func (e Event) diedLine() string {
	head := fmt.Sprintf("%s exited with code %d", e.Name, e.ExitCode)
	if e.OOMKilled {
		head += " (OOM-killed: it exceeded its memory limit)"
	}
	switch {
	case e.Restart:
		attempt := fmt.Sprintf("attempt %d", e.Attempt)
		if e.MaxAttempts > 0 {
			attempt += fmt.Sprintf(" of %d", e.MaxAttempts)
		}
		if e.Delay <= 0 {
			return head + ", restarting now (" + attempt + ")"
		}
		return head + ", restarting in " + FormatDelay(e.Delay) + " (" + attempt + ")"
	case e.GaveUp:
		if e.Attempt == 1 {
			return head + ", giving up after 1 attempt"
		}
		return fmt.Sprintf("%s, giving up after %d attempts", head, e.Attempt)
	}
	return head
}

// FormatDelay is time.Duration.String without zero trailing units:
// "100ms", "2s", "1m", "1m30s", "1h".
func FormatDelay(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Action is the docker compose events action of the event.
func (e Event) Action() string { return string(e.Kind) }

// Attributes are the key=value pairs `sstack events` prints in brackets,
// as docker compose events does.
func (e Event) Attributes() []string {
	var a []string
	add := func(k, v string) {
		if v != "" {
			a = append(a, k+"="+v)
		}
	}
	add("name", e.Name)
	add("service", e.Service)
	if e.Kind == EventDied {
		add("exitCode", fmt.Sprint(e.ExitCode))
		if e.OOMKilled {
			add("oomKilled", "true")
		}
	}
	add("health", string(e.Health))
	add("signal", e.Signal)
	if e.Kind != EventHealth {
		add("message", e.Message)
	}
	return a
}

// Text is the line `sstack events` prints for the event, in docker compose
// events' format: time, type, action, id, attributes.
func (e Event) Text() string {
	id := e.Instance
	if id == "" {
		id = e.Project
	}
	typ := "container"
	if e.Service == "" {
		typ = "project"
	}
	s := e.Time.Format("2006-01-02 15:04:05.000000") + " " + typ + " " + e.Action() + " " + id
	if attrs := e.Attributes(); len(attrs) > 0 {
		s += " (" + strings.Join(attrs, ", ") + ")"
	}
	return s
}

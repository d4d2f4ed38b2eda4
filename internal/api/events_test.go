package api

import (
	"slices"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestDiedLine(t *testing.T) {
	died := func(code int) Event { return Event{Kind: EventDied, Name: "db-1", ExitCode: code} }
	restarting := func(code int, delay time.Duration, attempt, max int) Event {
		e := died(code)
		e.Restart, e.Delay, e.Attempt, e.MaxAttempts = true, delay, attempt, max
		return e
	}
	gaveUp := func(code, attempts int) Event {
		e := died(code)
		e.GaveUp, e.Attempt, e.MaxAttempts = true, attempts, attempts
		return e
	}
	tests := []struct {
		e    Event
		want string
	}{
		{restarting(3, 2*time.Second, 2, 5), "db-1 exited with code 3, restarting in 2s (attempt 2 of 5)"},
		{restarting(3, 200*ms, 3, 0), "db-1 exited with code 3, restarting in 200ms (attempt 3)"},
		{restarting(0, 100*ms, 1, 0), "db-1 exited with code 0, restarting in 100ms (attempt 1)"},
		{restarting(1, time.Minute, 11, 0), "db-1 exited with code 1, restarting in 1m (attempt 11)"},
		{restarting(1, 1600*ms, 5, 0), "db-1 exited with code 1, restarting in 1.6s (attempt 5)"},
		{restarting(1, 0, 1, 3), "db-1 exited with code 1, restarting now (attempt 1 of 3)"},
		{gaveUp(3, 5), "db-1 exited with code 3, giving up after 5 attempts"},
		{gaveUp(3, 1), "db-1 exited with code 3, giving up after 1 attempt"},
		{died(0), "db-1 exited with code 0"},
		{died(143), "db-1 exited with code 143"},
		// A user's stop still shows its exit, as docker compose's does.
		{Event{Kind: EventDied, Name: "db-1", ExitCode: 143, Requested: true}, "db-1 exited with code 143"},
		// Once the teardown stops it, docker compose prints no exit.
		{Event{Kind: EventDied, Name: "db-1", ExitCode: 143, Requested: true, Final: true}, ""},
	}
	for _, tc := range tests {
		if got := tc.e.Line(); got != tc.want {
			t.Errorf("Line(%+v) = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		e    Event
		want string
	}{
		{Event{Kind: EventCreating, Instance: "p.db.1"}, "Instance p.db.1  Creating"},
		{Event{Kind: EventStarted, Instance: "p.db.1"}, "Instance p.db.1  Started"},
		{Event{Kind: EventRestarting, Name: "db-1", Instance: "p.db.1", Recreate: true}, "db-1: instance p.db.1 is gone, recreating it"},
		{Event{Kind: EventRestarting, Name: "db-1", Instance: "p.db.1"}, "db-1: restarting the process in instance p.db.1"},
		{Event{Kind: EventHealth, Name: "db-1", Health: HealthHealthy}, "db-1 is healthy"},
		{Event{Kind: EventHealth, Name: "db-1", Health: HealthUnhealthy, Message: "no"}, "db-1 is unhealthy: no"},
		{Event{Kind: EventKilled, Name: "db-1", Grace: 2 * time.Second}, "db-1 did not stop within 2s, killing it"},
		{Event{Kind: EventKilled, Name: "db-1", Signal: "SIGUSR1", User: true}, "db-1: sent SIGUSR1"},
		{Event{Kind: EventDestroyed, Instance: "p.db.1"}, "Instance p.db.1  Stopped"},
		{Event{Kind: EventDestroyed, Instance: "p.db.1", NoInstance: true}, ""},
		{Event{Kind: EventFailed, Name: "web-1", Message: `dependency "db" failed`}, `web-1 cannot start: dependency "db" failed`},
		{Event{Kind: EventFollowDep, Name: "web-1", Dependency: "db"}, "web-1 restarting because its dependency db restarted"},
		{Event{Kind: EventAttaching, Names: []string{"db-1", "web-1"}}, "Attaching to db-1, web-1"},
		{Event{Kind: EventAborting}, "Aborting on container exit..."},
		{Event{Kind: EventKillStack}, "Killing..."},
	}
	for _, tc := range tests {
		if got := tc.e.Line(); got != tc.want {
			t.Errorf("Line(%s) = %q, want %q", tc.e.Kind, got, tc.want)
		}
	}
}

func TestEventText(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456000, time.UTC)
	e := Event{Time: at, Kind: EventDied, Project: "p", Service: "db", Name: "db-1", Instance: "p.db.1", ExitCode: 3}
	if got, want := e.Text(), "2026-12-02 10:00:00.123456 container die p.db.1 (name=db-1, service=db, exitCode=3)"; got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
}

func TestFormatDelay(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{100 * ms, "100ms"},
		{1600 * ms, "1.6s"},
		{2 * time.Second, "2s"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{time.Hour + 10*time.Minute, "1h10m"},
		{time.Hour + time.Second, "1h0m1s"},
	}
	for _, tc := range tests {
		if got := FormatDelay(tc.d); got != tc.want {
			t.Errorf("FormatDelay(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestReplicaStatus(t *testing.T) {
	tests := []struct {
		r    Replica
		want string
	}{
		{Replica{State: StateRunning, Supervised: true}, "running"},
		{Replica{State: StateRunning, Health: HealthHealthy, Supervised: true}, "running (healthy)"},
		{Replica{State: StateExited, ExitCode: 3, Supervised: true}, "exited (3)"},
		{Replica{State: StateRestarting, Supervised: true}, "restarting"},
		{Replica{State: StateStopped, Supervised: true}, "stopped"},
	}
	for _, tc := range tests {
		if got := tc.r.Status(); got != tc.want {
			t.Errorf("Status(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

// A warning reads as the loader's: WARN, then the service it is about;
// a replica's names the replica.
func TestWarningLine(t *testing.T) {
	for _, c := range []struct {
		e    Event
		want string
	}{
		{Warning("db", "ports: not published: %s", "why"), `WARN service "db": ports: not published: why`},
		{Warning("", "Found orphan instances (%s)", "p.c.1"), "WARN Found orphan instances (p.c.1)"},
		{Event{Kind: EventWarning, Service: "db", Name: "db-1", Message: "stop signal failed"}, "db-1: stop signal failed"},
	} {
		if got := c.e.Line(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
}

// ps shows active replicas unless -a, of the services named.
func TestPsOptionsFilter(t *testing.T) {
	rows := []Replica{
		{Name: "web-1", Service: "web", State: StateRunning},
		{Name: "web-2", Service: "web", State: StateExited},
		{Name: "db-1", Service: "db", State: StateRunning},
	}
	names := func(rs []Replica) (out []string) {
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	for _, c := range []struct {
		opts PsOptions
		want []string
	}{
		{PsOptions{}, []string{"web-1", "db-1"}},
		{PsOptions{All: true}, []string{"web-1", "web-2", "db-1"}},
		{PsOptions{All: true, Services: []string{"web"}}, []string{"web-1", "web-2"}},
		{PsOptions{Services: []string{"db"}}, []string{"db-1"}},
	} {
		if got := names(c.opts.Filter(rows)); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v, want %v", c.opts, got, c.want)
		}
	}
}

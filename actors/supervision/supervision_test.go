package supervision

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"sstack/actors/lifecycle"
	"sstack/internal/api"
)

func TestPhase(t *testing.T) {
	var p Phase
	if p.TearingDown() {
		t.Fatal("a new stack is tearing down")
	}
	if !p.Stop() || p != Stopping || !p.TearingDown() {
		t.Fatalf("first stop: %v", p)
	}
	if p.Stop() {
		t.Error("a second stop starts the teardown again")
	}
	p.Kill()
	if p != Killing || p.Stop() {
		t.Errorf("kill during a stop: %v", p)
	}
	if !p.Finish() || p.Finish() {
		t.Error("the end is reported other than once")
	}
	p.Kill()
	if p != Finished {
		t.Errorf("a kill after the end: %v", p)
	}
	// A kill straight from running; a stop after it does nothing.
	q := Running
	q.Kill()
	if q != Killing || q.Stop() {
		t.Errorf("kill from running: %v", q)
	}
}

func TestApply(t *testing.T) {
	t0 := time.Unix(100, 0)
	for _, c := range []struct {
		name        string
		row         api.Replica
		ev          api.Event
		healthcheck bool
		want        api.Replica
	}{
		{"started", api.Replica{State: api.StateStarting, Reason: "old"}, api.Event{Kind: api.EventStarted, State: api.StateRunning, Pid: 42, Time: t0}, false,
			api.Replica{State: api.StateRunning, Since: t0, Pid: 42, Ran: true}},
		{"started with a healthcheck", api.Replica{State: api.StateStarting}, api.Event{Kind: api.EventStarted, State: api.StateRunning, Pid: 7, Time: t0}, true,
			api.Replica{State: api.StateRunning, Since: t0, Pid: 7, Ran: true, Health: api.HealthStarting}},
		{"started, health carried (a replica re-read)", api.Replica{}, api.Event{Kind: api.EventStarted, State: api.StateRunning, Health: api.HealthHealthy, Time: t0}, false,
			api.Replica{State: api.StateRunning, Since: t0, Ran: true, Health: api.HealthHealthy}},
		{"died", api.Replica{State: api.StateRunning, Pid: 7, Health: api.HealthHealthy, Ran: true}, api.Event{Kind: api.EventDied, State: api.StateExited, ExitCode: 3, Time: t0}, false,
			api.Replica{State: api.StateExited, Since: t0, ExitCode: 3, Ran: true}},
		{"restart by policy counts", api.Replica{State: api.StateExited}, api.Event{Kind: api.EventRestarting, State: api.StateRestarting, Time: t0}, false,
			api.Replica{State: api.StateRestarting, Since: t0, Restarts: 1}},
		{"a user's restart does not", api.Replica{Restarts: 2}, api.Event{Kind: api.EventRestarting, User: true}, false, api.Replica{Restarts: 2}},
		{"a dependency's restart does not", api.Replica{}, api.Event{Kind: api.EventRestarting, Dependency: "db"}, false, api.Replica{}},
		{"failed", api.Replica{}, api.Event{Kind: api.EventFailed, State: api.StateFailed, Message: "no image", Time: t0}, false,
			api.Replica{State: api.StateFailed, Since: t0, Reason: "no image"}},
		{"destroyed", api.Replica{State: api.StateStopping, Pid: 3, Health: api.HealthUnhealthy}, api.Event{Kind: api.EventDestroyed, State: api.StateStopped, Time: t0}, false,
			api.Replica{State: api.StateStopped, Since: t0}},
		{"same state keeps its time", api.Replica{State: api.StateRunning, Since: t0}, api.Event{Kind: api.EventHealth, State: api.StateRunning, Health: api.HealthHealthy, Time: t0.Add(time.Hour)}, false,
			api.Replica{State: api.StateRunning, Since: t0, Health: api.HealthHealthy}},
	} {
		row := c.row
		Apply(&row, c.ev, c.healthcheck)
		if !reflect.DeepEqual(row, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, row, c.want)
		}
	}
}

func TestStatus(t *testing.T) {
	running := func(h api.Health) Member {
		return Member{Row: api.Replica{State: api.StateRunning, Ran: true, Health: h}}
	}
	exited := func(code int) Member {
		return Member{Row: api.Replica{State: api.StateExited, Ran: true, ExitCode: code}}
	}
	waiting := Member{Row: api.Replica{State: api.StateWaiting}}
	failed := Member{Row: api.Replica{State: api.StateFailed, Reason: "no image"}}
	base := lifecycle.DepStatus{Service: "db"}
	with := func(f func(*lifecycle.DepStatus)) lifecycle.DepStatus { s := base; f(&s); return s }
	for _, c := range []struct {
		name string
		reps []Member
		want lifecycle.DepStatus
	}{
		{"no replicas: every condition holds", nil, with(func(s *lifecycle.DepStatus) { s.Started, s.Healthy, s.Exited = true, true, true })},
		{"all running, healthy", []Member{running(api.HealthHealthy), running(api.HealthHealthy)}, with(func(s *lifecycle.DepStatus) { s.Started, s.Healthy = true, true })},
		{"one still starting its healthcheck", []Member{running(api.HealthHealthy), running(api.HealthStarting)}, with(func(s *lifecycle.DepStatus) { s.Started = true })},
		{"one unhealthy", []Member{running(api.HealthUnhealthy)}, with(func(s *lifecycle.DepStatus) { s.Started, s.Unhealthy = true, true })},
		{"one not started yet", []Member{running(api.HealthNone), waiting}, base},
		{"exited, first non-zero code", []Member{exited(0), exited(2), exited(5)}, with(func(s *lifecycle.DepStatus) { s.Started, s.Exited, s.ExitCode = true, true, 2 })},
		{"failed", []Member{failed, running(api.HealthNone)}, with(func(s *lifecycle.DepStatus) { s.Failed, s.Reason = true, "no image" })},
		{"a replica being removed does not count", []Member{running(api.HealthHealthy), {Row: waiting.Row, Removing: true}}, with(func(s *lifecycle.DepStatus) { s.Started, s.Healthy = true, true })},
	} {
		if got := Status("db", c.reps); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestOver(t *testing.T) {
	rows := func(states ...api.State) []api.Replica {
		var out []api.Replica
		for _, s := range states {
			out = append(out, api.Replica{State: s})
		}
		return out
	}
	if !Over(rows(api.StateExited, api.StateFailed, api.StateStopped)) {
		t.Error("every replica ended, yet not over")
	}
	for _, s := range []api.State{api.StateRunning, api.StateRestarting, api.StateWaiting, api.StateCreated, api.StateStopping} {
		if Over(rows(api.StateExited, s)) {
			t.Errorf("over with a replica %s", s)
		}
	}
}

// web depends on api, api on db and cache: web stops first, api once web
// is gone, db and cache once api is; a kill sends to all at once.
func TestTeardownInReverseDependencyOrder(t *testing.T) {
	services := []string{"db", "cache", "api", "web"}
	dependents := map[string][]string{"db": {"api"}, "cache": {"api"}, "api": {"web"}}
	gone := map[string]bool{}
	isGone := func(s string) bool { return gone[s] }
	var w Teardown
	steps := []struct {
		goneNow []string
		stop    []string
		all     bool
	}{
		{nil, []string{"web"}, false},
		{nil, nil, false}, // nothing new until web is gone
		{[]string{"web"}, []string{"api"}, false},
		{[]string{"api"}, []string{"cache", "db"}, false},
		{[]string{"db"}, nil, false},
		{[]string{"cache"}, nil, true},
	}
	for i, st := range steps {
		for _, g := range st.goneNow {
			gone[g] = true
		}
		stop, all := w.Next(services, dependents, isGone)
		if !slices.Equal(stop, st.stop) || all != st.all {
			t.Errorf("step %d: stop %v all %v, want %v %v", i, stop, all, st.stop, st.all)
		}
	}

	var k Teardown
	k.SendAll(services)
	if stop, all := k.Next(services, dependents, func(string) bool { return false }); stop != nil || all {
		t.Errorf("after a kill: stop %v again, all %v", stop, all)
	}
}

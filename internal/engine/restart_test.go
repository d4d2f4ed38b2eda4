package engine

import (
	"slices"
	"testing"

	"sstack/compose"
	"sstack/internal/api"
)

// The death of the run a restart stops is not the restart's end; the new
// run's start, a failure, or an exit nothing restarts is.
func TestRestartDone(t *testing.T) {
	for _, c := range []struct {
		ev   api.Event
		want bool
	}{
		{api.Event{Kind: api.EventDied, Requested: true}, false},
		{api.Event{Kind: api.EventStopping}, false},
		{api.Event{Kind: api.EventRestarting}, false},
		{api.Event{Kind: api.EventStarted}, true},
		{api.Event{Kind: api.EventFailed}, true},
		{api.Event{Kind: api.EventDied, Restart: true}, false},
		{api.Event{Kind: api.EventDied}, true},
		{api.Event{Kind: api.EventDestroyed, State: api.StateStopped}, true},
	} {
		if got := restartDone(c.ev); got != c.want {
			t.Errorf("restartDone(%+v) = %v, want %v", c.ev, got, c.want)
		}
	}
}

// Followers of a restart: running replicas of services that depend on a
// restarted one with restart: true, down the chain; not those without it,
// nor those not running.
func TestFollowers(t *testing.T) {
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "db"},
		{Name: "web", DependsOn: []compose.Dependency{{Service: "db", Restart: true}}},
		{Name: "proxy", DependsOn: []compose.Dependency{{Service: "web", Restart: true}}},
		{Name: "api", DependsOn: []compose.Dependency{{Service: "db"}}},
		{Name: "job", DependsOn: []compose.Dependency{{Service: "db", Restart: true}}},
	}}
	rows := []api.Replica{
		{Name: "db-1", Service: "db", State: api.StateRunning},
		{Name: "web-1", Service: "web", State: api.StateRunning},
		{Name: "web-2", Service: "web", State: api.StateRunning},
		{Name: "proxy-1", Service: "proxy", State: api.StateRunning},
		{Name: "api-1", Service: "api", State: api.StateRunning},
		{Name: "job-1", Service: "job", State: api.StateExited},
	}
	if got, want := followersOf(plan, []string{"db-1"}, rows), []string{"web-1", "web-2", "proxy-1"}; !slices.Equal(got, want) {
		t.Errorf("restart db: followers %v, want %v", got, want)
	}
	if got, want := followersOf(plan, []string{"web-1", "web-2"}, rows), []string{"proxy-1"}; !slices.Equal(got, want) {
		t.Errorf("restart web: followers %v, want %v", got, want)
	}
	if got := followersOf(plan, []string{"api-1"}, rows); len(got) != 0 {
		t.Errorf("restart api: followers %v, want none", got)
	}
}

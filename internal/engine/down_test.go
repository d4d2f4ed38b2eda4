package engine

import (
	"slices"
	"testing"

	"sstack/compose"
	"sstack/internal/api"
)

func TestWithDependents(t *testing.T) {
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "db"},
		{Name: "web", DependsOn: []compose.Dependency{{Service: "db"}}},
		{Name: "proxy", DependsOn: []compose.Dependency{{Service: "web", Required: false}}},
		{Name: "other"},
	}}
	for _, c := range []struct{ names, want []string }{
		{[]string{"db"}, []string{"db", "web", "proxy"}},
		{[]string{"web"}, []string{"web", "proxy"}},
		{[]string{"other", "proxy"}, []string{"proxy", "other"}},
	} {
		if got := WithDependents(plan, c.names); !slices.Equal(got, c.want) {
			t.Errorf("WithDependents(%v) = %v, want %v", c.names, got, c.want)
		}
	}
}

// down --rmi: local removes what was built under compose's own name, all
// also what was pulled; a path given as image: is never removed.
func TestAttached(t *testing.T) {
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "db"},
		{Name: "web", DependsOn: []compose.Dependency{{Service: "db"}}},
		{Name: "other"},
	}}
	shown := func(m map[string]bool) []string {
		if m == nil {
			return nil
		}
		var out []string
		for _, s := range plan.ServiceNames() {
			if m[s] {
				out = append(out, s)
			}
		}
		return out
	}
	for _, c := range []struct {
		services, attach, noAttach []string
		deps                       bool
		want                       []string
	}{
		{nil, nil, nil, false, nil},
		{[]string{"web"}, nil, nil, false, []string{"web"}},
		{[]string{"web"}, nil, nil, true, []string{"db", "web"}},
		{nil, []string{"db"}, nil, false, []string{"db"}},
		{nil, nil, []string{"db"}, false, []string{"other", "web"}},
		{[]string{"web"}, nil, []string{"db"}, true, []string{"web"}},
	} {
		if got := shown(Attached(plan, c.services, c.attach, c.noAttach, c.deps)); !slices.Equal(got, c.want) {
			t.Errorf("Attached(%v, --attach %v, --no-attach %v, deps %v) = %v, want %v", c.services, c.attach, c.noAttach, c.deps, got, c.want)
		}
	}
}

// The rows kept when a stack ends: a replica whose instance the end
// removed shows how its process exited, with no pid.
func TestLastRows(t *testing.T) {
	dir := t.TempDir()
	if got := LastRows(dir); got != nil {
		t.Errorf("nothing recorded: %v", got)
	}
	recordLastRows(dir, []api.Replica{
		{Name: "web-1", State: api.StateStopped, Ran: true, ExitCode: 143, Pid: 7},
		{Name: "job-1", State: api.StateExited, Ran: true, ExitCode: 3},
		{Name: "never-1", State: api.StateStopped},
	})
	got := LastRows(dir)
	if len(got) != 3 || got[0].Status() != "exited (143)" || got[0].Pid != 0 || got[1].Status() != "exited (3)" || got[2].State != api.StateStopped {
		t.Errorf("recorded rows: %+v", got)
	}
}

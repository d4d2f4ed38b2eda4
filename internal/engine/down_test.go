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
func TestImagesToRemove(t *testing.T) {
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "app", ImageSource: &compose.ImageSource{Target: "/i/p-app+latest.sif", Build: &compose.ImageBuild{}}},
		{Name: "cache", ImageRef: "redis:7", ImageSource: &compose.ImageSource{Target: "/i/redis+7.sif", Pull: "docker://redis:7"}},
		{Name: "cache2", ImageRef: "redis:7", ImageSource: &compose.ImageSource{Target: "/i/redis+7.sif", Pull: "docker://redis:7"}},
		{Name: "named", ImageRef: "me/app:1", ImageSource: &compose.ImageSource{Target: "/i/me%app+1.sif", Pull: "docker://me/app:1", Build: &compose.ImageBuild{}}},
		{Name: "local", ImageRef: "./x.sif", ImageSource: &compose.ImageSource{Target: "/p/x.sif"}},
		{Name: "byhand"},
	}}
	if got, want := ImagesToRemove(plan, "local"), []string{"/i/p-app+latest.sif"}; !slices.Equal(got, want) {
		t.Errorf("local: %v, want %v", got, want)
	}
	if got, want := ImagesToRemove(plan, "all"), []string{"/i/p-app+latest.sif", "/i/redis+7.sif", "/i/me%app+1.sif"}; !slices.Equal(got, want) {
		t.Errorf("all: %v, want %v", got, want)
	}
}

// What up shows: --attach, else the services named (their dependencies
// with --attach-dependencies), else all; less --no-attach.
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

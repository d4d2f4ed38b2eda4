package engine

import (
	"slices"
	"testing"

	"sstack/compose"
)

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

package compose

import (
	"slices"
	"testing"
)

func TestWithDependents(t *testing.T) {
	plan := &Plan{Services: []Service{
		{Name: "db"},
		{Name: "web", DependsOn: []Dependency{{Service: "db"}}},
		{Name: "proxy", DependsOn: []Dependency{{Service: "web", Required: false}}},
		{Name: "other"},
	}}
	for _, c := range []struct{ names, want []string }{
		{[]string{"db"}, []string{"db", "web", "proxy"}},
		{[]string{"web"}, []string{"web", "proxy"}},
		{[]string{"other", "proxy"}, []string{"proxy", "other"}},
	} {
		if got := plan.WithDependents(c.names); !slices.Equal(got, c.want) {
			t.Errorf("WithDependents(%v) = %v, want %v", c.names, got, c.want)
		}
	}
}

// down --rmi: local removes what was built under compose's own name, all
// also what was pulled; a path given as image: is never removed.

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

// A restart follows depends_on restart: true down the chain, and only it.
func TestRestartFollowers(t *testing.T) {
	plan := &Plan{Services: []Service{
		{Name: "db"},
		{Name: "api", DependsOn: []Dependency{{Service: "db", Restart: true}}},
		{Name: "web", DependsOn: []Dependency{{Service: "api", Restart: true}}},
		{Name: "worker", DependsOn: []Dependency{{Service: "db"}}},
	}}
	for _, c := range []struct {
		restarted, want []string
	}{
		{[]string{"db"}, []string{"api", "web"}},
		{[]string{"api"}, []string{"web"}},
		{[]string{"web"}, nil},
		{[]string{"worker"}, nil},
	} {
		got := plan.RestartFollowers(c.restarted)
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("RestartFollowers(%v) = %v, want %v", c.restarted, got, c.want)
		}
	}
}

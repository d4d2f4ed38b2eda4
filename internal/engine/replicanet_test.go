package engine

import (
	"slices"
	"testing"

	"sstack/compose"
	"sstack/internal/stacknet"
)

func TestDNSNames(t *testing.T) {
	plan := &compose.Plan{
		Services: []compose.Service{
			{Name: "web", Network: compose.NetworkProject, Replicas: 3},
			{Name: "db", Network: compose.NetworkProject, ContainerName: "postgres"},
			{Name: "side", Network: compose.NetworkProject, NetworkShare: "web"},
			{Name: "idle", Network: compose.NetworkProject, Replicas: 0},
			{Name: "api", Network: compose.NetworkProject, ExtraHosts: []compose.HostEntry{
				{Host: "database", IP: "127.0.0.1", Service: "db"}, // links: [db:database]
				{Host: "web", IP: "127.0.0.1", Service: "db"},      // a link alias that is a service's name
				{Host: "somehost", IP: "10.1.2.3"},
			}},
			{Name: "onhost", Network: compose.NetworkHost},
		},
		Hosts: []compose.HostEntry{
			{Host: "web", IP: "127.0.0.1", Service: "web"},
			{Host: "frontend", IP: "127.0.0.1", Service: "web"}, // an alias
			{Host: "web-slot-2", IP: "127.0.0.1", Service: "web", Replica: 2},
			{Host: "postgres", IP: "127.0.0.1", Service: "db"},
		},
	}
	up := []upReplica{
		{"web", 1, "10.0.2.101"}, {"web", 2, "10.0.2.102"}, {"web", 3, "10.0.2.103"},
		{"db", 1, "10.0.2.104"}, {"side", 1, "10.0.2.101"},
	}
	got := dnsNames(plan, up)
	want := stacknet.Names{
		"web":        {"10.0.2.101", "10.0.2.102", "10.0.2.103"},
		"web-1":      {"10.0.2.101"},
		"web-2":      {"10.0.2.102"},
		"web-3":      {"10.0.2.103"},
		"frontend":   {"10.0.2.101", "10.0.2.102", "10.0.2.103"},
		"web-slot-2": {"10.0.2.102"},
		"db":         {"10.0.2.104"},
		"db-1":       {"10.0.2.104"},
		"postgres":   {"10.0.2.104"},
		"database":   {"10.0.2.104"},
		"side":       {"10.0.2.101"},
		"side-1":     {"10.0.2.101"},
		"idle":       nil,
		"api":        nil,
	}
	for name, addrs := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: not answered", name)
			continue
		}
		slices.Sort(g)
		if !slices.Equal(g, addrs) {
			t.Errorf("%s: %v, want %v", name, g, addrs)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s answered (%v), but is no name of the stack's", name, got[name])
		}
	}
	// Scaled down, a service's name follows.
	got = dnsNames(plan, up[:1])
	if !slices.Equal(got["web"], []string{"10.0.2.101"}) || got["web-2"] != nil {
		t.Errorf("after scale down: web %v, web-2 %v", got["web"], got["web-2"])
	}
}

package compose

import (
	"slices"
	"strings"
	"testing"
)

func loadPlacement(t *testing.T, yaml string) (*Plan, error) {
	t.Helper()
	f := newFixture(t, map[string]string{"compose.yaml": yaml}, "busybox.sif")
	return f.load(t, f.opts())
}

func mustPlacement(t *testing.T, yaml string) *Plan {
	t.Helper()
	p, err := loadPlacement(t, yaml)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var threeNodes = []Node{{Name: "n1"}, {Name: "n2", Labels: map[string]string{"rack": "a"}}, {Name: "n3", Labels: map[string]string{"rack": "b", "gpu": "true"}}}

func TestPlacementLoads(t *testing.T) {
	p := mustPlacement(t, `
services:
  db:
    image: ../images/busybox.sif
    deploy:
      placement:
        constraints: ["node.hostname==n2", "node.labels.disk != hdd"]
        max_replicas_per_node: 2
        preferences: [{spread: node.labels.rack}]
x-sstack:
  node_labels:
    n2: {disk: ssd, fast: true}
`)
	pl := p.Service("db").Placement
	if pl == nil || len(pl.Constraints) != 2 || pl.Constraints[0].String() != "node.hostname == n2" || pl.Constraints[1].String() != "node.labels.disk != hdd" ||
		pl.MaxPerNode != 2 || !slices.Equal(pl.Spread, []string{"node.labels.rack"}) {
		t.Errorf("placement: %+v", pl)
	}
	if p.NodeLabels["n2"]["disk"] != "ssd" || p.NodeLabels["n2"]["fast"] != "true" {
		t.Errorf("node labels: %v", p.NodeLabels)
	}
	if hasWarning(p, "db", "deploy.placement") {
		t.Error("placement is still warned about")
	}
}

func TestPlacementErrors(t *testing.T) {
	for _, c := range []struct{ placement, want string }{
		{`constraints: ["node.role == manager"]`, "not by node.role"},
		{`constraints: ["node.hostname = n2"]`, "is not KEY == VALUE"},
		{`constraints: ["engine.labels.x == y"]`, "not by engine.labels.x"},
		{`preferences: [{spread: node.id}]`, "spreads over node.hostname or node.labels.NAME"},
	} {
		_, err := loadPlacement(t, "services:\n  db:\n    image: ../images/busybox.sif\n    deploy:\n      placement:\n        "+c.placement+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "db") || !strings.Contains(err.Error(), "deploy.placement") {
			t.Errorf("%s: %v, want %q", c.placement, err, c.want)
		}
	}
	_, err := loadPlacement(t, "services:\n  db:\n    image: ../images/busybox.sif\nx-sstack:\n  node_labels: [n1]\n")
	if err == nil || !strings.Contains(err.Error(), "x-sstack.node_labels") {
		t.Errorf("bad node_labels: %v", err)
	}
}

func service(name string, replicas int, pl *Placement) Service {
	return Service{Name: name, Replicas: replicas, Placement: pl}
}

func TestPlace(t *testing.T) {
	eq := func(v string) Constraint { return Constraint{Key: "node.hostname", Equal: true, Value: v} }
	for _, c := range []struct {
		name     string
		services []Service
		want     Assignment
		unplaced []string
	}{
		{"spread over all nodes", []Service{service("web", 10, nil)},
			Assignment{"web": {"n1", "n2", "n3", "n1", "n2", "n3", "n1", "n2", "n3", "n1"}}, nil},
		{"the stack is spread too", []Service{service("a", 1, nil), service("b", 1, nil), service("c", 1, nil)},
			Assignment{"a": {"n1"}, "b": {"n2"}, "c": {"n3"}}, nil},
		{"hostname ==", []Service{service("db", 2, &Placement{Constraints: []Constraint{eq("n2")}})},
			Assignment{"db": {"n2", "n2"}}, nil},
		{"hostname !=", []Service{service("w", 2, &Placement{Constraints: []Constraint{{Key: "node.hostname", Value: "n1"}}})},
			Assignment{"w": {"n2", "n3"}}, nil},
		{"label", []Service{service("g", 1, &Placement{Constraints: []Constraint{{Key: "node.labels.gpu", Equal: true, Value: "true"}}})},
			Assignment{"g": {"n3"}}, nil},
		{"label != matches nodes without it", []Service{service("g", 2, &Placement{Constraints: []Constraint{{Key: "node.labels.gpu", Value: "true"}}})},
			Assignment{"g": {"n1", "n2"}}, nil},
		{"max per node", []Service{service("w", 3, &Placement{MaxPerNode: 1})},
			Assignment{"w": {"n1", "n2", "n3"}}, nil},
		{"max per node too small", []Service{service("w", 4, &Placement{MaxPerNode: 1}), service("x", 1, nil)},
			Assignment{"x": {"n1"}}, []string{"w: deploy.placement.max_replicas_per_node"}},
		{"no node", []Service{service("db", 1, &Placement{Constraints: []Constraint{eq("n9")}})},
			Assignment{}, []string{"db: deploy.placement.constraints: node.hostname == n9 matches no node of n1, n2, n3"}},
		{"spread by rack", []Service{service("w", 4, &Placement{Spread: []string{"node.labels.rack"}})},
			// Racks "", a, b: one each, then the fourth to the emptiest rack.
			Assignment{"w": {"n1", "n2", "n3", "n1"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &Plan{Services: c.services}
			got, un := p.Place(threeNodes)
			var reasons []string
			for _, u := range un {
				reasons = append(reasons, u.Service+": "+u.Reason)
			}
			for i, w := range c.unplaced {
				if i >= len(reasons) || !strings.HasPrefix(reasons[i], w) {
					t.Errorf("unplaced %v, want %v", reasons, c.unplaced)
				}
			}
			if len(reasons) != len(c.unplaced) {
				t.Errorf("unplaced %v, want %v", reasons, c.unplaced)
			}
			if len(got) != len(c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if !slices.Equal(got[k], v) {
					t.Errorf("%s: got %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestPlaceOne(t *testing.T) {
	p := &Plan{Services: []Service{service("w", 2, &Placement{MaxPerNode: 1}), service("x", 1, &Placement{Constraints: []Constraint{{Key: "node.hostname", Equal: true, Value: "n9"}}})}}
	cur := Assignment{"w": {"n1", "n2"}}
	if n, err := p.PlaceOne("w", threeNodes, cur); err != nil || n != "n3" {
		t.Errorf("third: %q %v", n, err)
	}
	cur["w"] = append(cur["w"], "n3")
	if _, err := p.PlaceOne("w", threeNodes, cur); err == nil || !strings.Contains(err.Error(), "max_replicas_per_node") {
		t.Errorf("fourth: %v", err)
	}
	if _, err := p.PlaceOne("x", threeNodes, cur); err == nil || !strings.Contains(err.Error(), "n9") {
		t.Errorf("x: %v", err)
	}
}

func TestPlacedHosts(t *testing.T) {
	p := mustPlacement(t, `
services:
  db:
    image: ../images/busybox.sif
  web:
    image: ../images/busybox.sif
    deploy: {replicas: 2}
    extra_hosts: ["ext=10.0.0.1"]
`)
	addr := map[string][]string{"db": {"127.0.0.12"}, "web": {"127.0.0.11", "127.0.0.13"}}
	got := HostsText(p.PlacedHosts(p.Service("web"), func(s string) []string { return addr[s] }))
	for _, want := range []string{"127.0.0.12 db\n", "127.0.0.12 db-1\n", "127.0.0.11 web\n", "127.0.0.13 web\n", "127.0.0.11 web-1\n", "127.0.0.13 web-2\n", "10.0.0.1 ext\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "127.0.0.1 db") || strings.Contains(got, "127.0.0.1 web") {
		t.Errorf("a placed service left on 127.0.0.1:\n%s", got)
	}
}

// HostsText renders entries as "IP NAME" lines, for tests.
func HostsText(entries []HostEntry) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.IP + " " + e.Host + "\n")
	}
	return b.String()
}

package compose

import (
	"fmt"
	"reflect"
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

// withDB is a compose file whose first service is db, with keys (lines of
// YAML under it), and rest after it (other services, top-level keys).
func withDB(keys, rest string) string {
	return "services:\n  db:\n    image: ../images/busybox.sif\n" + keys + rest
}

// placedDB is withDB with the lines of placement under db's
// deploy.placement.
func placedDB(placement, rest string) string {
	return withDB("    deploy:\n      placement:\n"+placement, rest)
}

var threeNodes = []Node{{Name: "n1"}, {Name: "n2", Labels: map[string]string{"rack": "a"}}, {Name: "n3", Labels: map[string]string{"rack": "b", "gpu": "true"}}}

func TestPlacementLoads(t *testing.T) {
	p := mustPlacement(t, placedDB(`        constraints: ["node.hostname==n2", "node.labels.disk != hdd"]
        max_replicas_per_node: 2
        preferences: [{spread: node.labels.rack}]
`, `x-sstack:
  node_labels:
    n2: {disk: ssd, fast: true}
`))
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

func TestPlacementConstraintsParse(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"node.hostname == n2", "node.hostname == n2"},
		{"node.hostname!=n1", "node.hostname != n1"},
		{"node.labels.gpu == true", "node.labels.gpu == true"},
		{"  node.labels.zone==us east  ", "node.labels.zone == us east"},
		{"node.labels.rack-id != r1.a", "node.labels.rack-id != r1.a"},
	} {
		p := mustPlacement(t, placedDB("        constraints: ['"+c.in+"']\n", ""))
		pl := p.Service("db").Placement
		if pl == nil || len(pl.Constraints) != 1 || pl.Constraints[0].String() != c.want {
			t.Errorf("%q: %+v, want %s", c.in, pl, c.want)
		}
	}
}

func TestPlacementErrors(t *testing.T) {
	const supported = "sstack places by node.hostname (the Slurm node name) and node.labels.NAME"
	for _, c := range []struct{ placement, key, want string }{
		{`constraints: ["node.role == manager"]`, "deploy.placement.constraints", supported + " (Slurm features, x-sstack.node_labels), not by node.role"},
		{`constraints: ["node.id == abc"]`, "deploy.placement.constraints", "not by node.id"},
		{`constraints: ["node.platform.os == linux"]`, "deploy.placement.constraints", "not by node.platform.os"},
		{`constraints: ["engine.labels.x == y"]`, "deploy.placement.constraints", "not by engine.labels.x"},
		{`constraints: ["node.labels. == y"]`, "deploy.placement.constraints", "not by node.labels."},
		{`constraints: ["node.hostname = n2"]`, "deploy.placement.constraints", `"node.hostname = n2" is not KEY == VALUE or KEY != VALUE`},
		{`constraints: ["node.hostname >= n2"]`, "deploy.placement.constraints", "is not KEY == VALUE"},
		{`constraints: ["node.hostname"]`, "deploy.placement.constraints", "is not KEY == VALUE"},
		{`constraints: ["== n2"]`, "deploy.placement.constraints", "is not KEY == VALUE"},
		{`constraints: ["node.hostname == "]`, "deploy.placement.constraints", "is not KEY == VALUE"},
		{`constraints: ["node.hostname == a == b"]`, "deploy.placement.constraints", "is not KEY == VALUE"},
		{`constraints: [""]`, "deploy.placement.constraints", "is not KEY == VALUE"},
		{`preferences: [{spread: node.id}]`, "deploy.placement.preferences", `spread: "node.id": sstack spreads over node.hostname or node.labels.NAME`},
		{`preferences: [{spread: node.labels.}]`, "deploy.placement.preferences", "sstack spreads over node.hostname or node.labels.NAME"},
	} {
		_, err := loadPlacement(t, placedDB("        "+c.placement+"\n", ""))
		if want := `service "db": ` + c.key + ": "; err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q and %q", c.placement, err, want, c.want)
		}
	}
}

func TestNodeLabels(t *testing.T) {
	p := mustPlacement(t, withDB("", `x-sstack:
  node_labels:
    n1:
    n2: {role: db, rack: r1, cores: 64, ratio: 1.5}
`))
	want := map[string]map[string]string{"n1": {}, "n2": {"role": "db", "rack": "r1", "cores": "64", "ratio": "1.5"}}
	if !reflect.DeepEqual(p.NodeLabels, want) {
		t.Errorf("node labels: %v, want %v", p.NodeLabels, want)
	}
	p = mustPlacement(t, withDB("", "x-sstack:\n  node_lables: {n1: {a: b}}\n"))
	if !hasWarning(p, "", "x-sstack.node_lables") || p.NodeLabels != nil {
		t.Errorf("a misspelt key: warnings %v, labels %v", p.Warnings, p.NodeLabels)
	}

	for _, c := range []struct{ xsstack, want string }{
		{"[n1]", "x-sstack: want a mapping"},
		{"{node_labels: [n1]}", "x-sstack.node_labels: want a mapping of node names to label mappings"},
		{"{node_labels: {n1: gpu}}", "x-sstack.node_labels.n1: want a mapping of labels to values"},
		{"{node_labels: {n1: {gpu: [a, b]}}}", "x-sstack.node_labels.n1.gpu: want a string, number or boolean value"},
	} {
		_, err := loadPlacement(t, withDB("", "x-sstack: "+c.xsstack+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("x-sstack: %s: %v, want %q", c.xsstack, err, c.want)
		}
	}
	// Errors come in node order, whatever the map order.
	_, err := loadPlacement(t, withDB("", "x-sstack: {node_labels: {h: 1, g: 1, f: 1, e: 1, d: 1, c: 1, b: 1, a: 1}}\n"))
	got := problems(err)
	if !slices.IsSorted(got) || len(got) != 8 {
		t.Errorf("errors not in node order: %q", got)
	}
}

func TestPlacementPrinted(t *testing.T) {
	p := mustPlacement(t, placedDB(`        constraints: ["node.labels.disk==ssd"]
        max_replicas_per_node: 99999999999999999999
        preferences: [{spread: node.labels.rack}, {spread: node.hostname}]
`, `  web:
    image: ../images/busybox.sif
x-sstack:
  node_labels:
    n2: {disk: ssd}
`))
	if got := p.Service("db").Placement.MaxPerNode; got != MaxReplicas {
		t.Errorf("a huge max_replicas_per_node is %d, want %d", got, MaxReplicas)
	}
	var b strings.Builder
	if err := p.Print(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"node_labels:\n  \"n2\": {\"disk\": \"ssd\"}\n",
		"    placement:\n      constraints: [\"node.labels.disk == ssd\"]\n      max_replicas_per_node: 10000\n      spread: [\"node.labels.rack\", \"node.hostname\"]\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
	if strings.Count(b.String(), "placement:") != 1 {
		t.Errorf("placement printed for a service without one:\n%s", b.String())
	}
}

func service(name string, replicas int, pl *Placement) Service {
	return Service{Name: name, Replicas: replicas, Placement: pl}
}

func TestPlace(t *testing.T) {
	eq := func(v string) Constraint { return Constraint{Key: "node.hostname", Equal: true, Value: v} }
	racks := []Node{{Name: "n1", Labels: map[string]string{"rack": "a"}}, {Name: "n2", Labels: map[string]string{"rack": "a"}}, {Name: "n3", Labels: map[string]string{"rack": "b"}}}
	for _, c := range []struct {
		name     string
		nodes    []Node // threeNodes when nil
		labels   map[string]map[string]string
		services []Service
		want     Assignment
		unplaced []string
	}{
		{name: "spread over all nodes", services: []Service{service("web", 10, nil)},
			want: Assignment{"web": {"n1", "n2", "n3", "n1", "n2", "n3", "n1", "n2", "n3", "n1"}}},
		{name: "the stack is spread too", services: []Service{service("a", 1, nil), service("b", 1, nil), service("c", 1, nil)},
			want: Assignment{"a": {"n1"}, "b": {"n2"}, "c": {"n3"}}},
		{name: "ties go to the emptiest node of the stack", services: []Service{service("a", 2, nil), service("b", 2, nil)},
			want: Assignment{"a": {"n1", "n2"}, "b": {"n3", "n1"}}},
		{name: "a service with no replica gets nothing", services: []Service{service("z", 0, nil), service("a", 1, nil)},
			want: Assignment{"a": {"n1"}}},
		{name: "hostname ==", services: []Service{service("db", 2, &Placement{Constraints: []Constraint{eq("n2")}})},
			want: Assignment{"db": {"n2", "n2"}}},
		{name: "hostname is the exact name", services: []Service{service("db", 1, &Placement{Constraints: []Constraint{eq("n2")}})},
			nodes: []Node{{Name: "n2.cluster"}, {Name: "n22"}}, unplaced: []string{"db: deploy.placement.constraints: node.hostname == n2 matches no node of n2.cluster, n22"}},
		{name: "hostname !=", services: []Service{service("w", 2, &Placement{Constraints: []Constraint{{Key: "node.hostname", Value: "n1"}}})},
			want: Assignment{"w": {"n2", "n3"}}},
		{name: "label", services: []Service{service("g", 1, &Placement{Constraints: []Constraint{{Key: "node.labels.gpu", Equal: true, Value: "true"}}})},
			want: Assignment{"g": {"n3"}}},
		{name: "label != matches nodes without it", services: []Service{service("g", 2, &Placement{Constraints: []Constraint{{Key: "node.labels.gpu", Value: "true"}}})},
			want: Assignment{"g": {"n1", "n2"}}},
		{name: "label from x-sstack", labels: map[string]map[string]string{"n1": {"disk": "ssd"}},
			services: []Service{service("db", 2, &Placement{Constraints: []Constraint{{Key: "node.labels.disk", Equal: true, Value: "ssd"}}})},
			want:     Assignment{"db": {"n1", "n1"}}},
		{name: "x-sstack wins over the node's own", labels: map[string]map[string]string{"n3": {"gpu": "false"}},
			services: []Service{service("g", 1, &Placement{Constraints: []Constraint{{Key: "node.labels.gpu", Equal: true, Value: "true"}}})},
			unplaced: []string{"g: deploy.placement.constraints: node.labels.gpu == true matches no node of n1, n2, n3"}},
		{name: "every constraint holds", services: []Service{service("w", 3, &Placement{Constraints: []Constraint{{Key: "node.hostname", Value: "n1"}, {Key: "node.labels.gpu", Value: "true"}}})},
			want: Assignment{"w": {"n2", "n2", "n2"}}},
		{name: "max per node", services: []Service{service("w", 3, &Placement{MaxPerNode: 1})},
			want: Assignment{"w": {"n1", "n2", "n3"}}},
		{name: "max per node fills the rest", services: []Service{service("w", 4, &Placement{MaxPerNode: 2, Constraints: []Constraint{{Key: "node.hostname", Value: "n3"}}})},
			want: Assignment{"w": {"n1", "n2", "n1", "n2"}}},
		{name: "max per node too small", services: []Service{service("w", 4, &Placement{MaxPerNode: 1}), service("x", 1, nil)},
			want:     Assignment{"x": {"n1"}},
			unplaced: []string{"w: deploy.placement.max_replicas_per_node: 4 replicas need 4 nodes with at most 1 each, and 3 of n1, n2, n3 match"}},
		{name: "max per node and constraints", services: []Service{service("w", 3, &Placement{MaxPerNode: 1, Constraints: []Constraint{{Key: "node.hostname", Value: "n1"}}})},
			unplaced: []string{"w: deploy.placement.max_replicas_per_node: 3 replicas need 3 nodes with at most 1 each, and 2 of n1, n2, n3 match"}},
		{name: "max per node rounds up", services: []Service{service("w", 7, &Placement{MaxPerNode: 2})},
			unplaced: []string{"w: deploy.placement.max_replicas_per_node: 7 replicas need 4 nodes with at most 2 each, and 3 of n1, n2, n3 match"}},
		{name: "no node", services: []Service{service("db", 1, &Placement{Constraints: []Constraint{eq("n9")}}), service("web", 1, nil)},
			want:     Assignment{"web": {"n1"}},
			unplaced: []string{"db: deploy.placement.constraints: node.hostname == n9 matches no node of n1, n2, n3"}},
		{name: "the constraint that empties the list is named", services: []Service{service("db", 1, &Placement{Constraints: []Constraint{{Key: "node.hostname", Value: "n1"}, eq("n1")}})},
			unplaced: []string{"db: deploy.placement.constraints: node.hostname == n1 matches no node of n1, n2, n3"}},
		{name: "no nodes at all", nodes: []Node{}, services: []Service{service("web", 1, nil)},
			unplaced: []string{"web: there is no node to place it on"}},
		{name: "spread by label", services: []Service{service("w", 4, &Placement{Spread: []string{"node.labels.rack"}})},
			// Racks "", a, b: one each, then the fourth to the emptiest rack.
			want: Assignment{"w": {"n1", "n2", "n3", "n1"}}},
		{name: "spread by uneven racks", nodes: racks, services: []Service{service("w", 4, &Placement{Spread: []string{"node.labels.rack"}})},
			// Rack a has two nodes, b one: b gets half the replicas.
			want: Assignment{"w": {"n1", "n3", "n2", "n3"}}},
		{name: "no spread on uneven racks", nodes: racks, services: []Service{service("w", 4, nil)},
			want: Assignment{"w": {"n1", "n2", "n3", "n1"}}},
		{name: "spread then max per node", nodes: racks, services: []Service{service("w", 3, &Placement{MaxPerNode: 1, Spread: []string{"node.labels.rack"}})},
			want: Assignment{"w": {"n1", "n3", "n2"}}},
		{name: "spread ignores other services", nodes: racks, services: []Service{service("a", 1, nil), service("w", 2, &Placement{Spread: []string{"node.labels.rack"}})},
			want: Assignment{"a": {"n1"}, "w": {"n2", "n3"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			nodes := c.nodes
			if nodes == nil {
				nodes = threeNodes
			}
			p := &Plan{Services: c.services, NodeLabels: c.labels}
			got, un := p.Place(nodes)
			var reasons []string
			for _, u := range un {
				reasons = append(reasons, u.Service+": "+u.Reason)
			}
			if !slices.Equal(reasons, c.unplaced) {
				t.Errorf("unplaced\n%q\nwant\n%q", reasons, c.unplaced)
			}
			want := c.want
			if want == nil {
				want = Assignment{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
			if again, _ := p.Place(nodes); !reflect.DeepEqual(again, got) {
				t.Errorf("not deterministic: %v, then %v", got, again)
			}
			// The caller's nodes are not changed by the merge of x-sstack labels.
			if c.labels != nil && (threeNodes[0].Labels != nil || threeNodes[2].Labels["gpu"] != "true") {
				t.Errorf("threeNodes changed: %v", threeNodes)
			}
		})
	}
}

func TestPlaceTenOverThree(t *testing.T) {
	p := &Plan{Services: []Service{service("web", 10, nil)}}
	got, _ := p.Place(threeNodes)
	per := map[string]int{}
	for _, n := range got["web"] {
		per[n]++
	}
	if want := map[string]int{"n1": 4, "n2": 3, "n3": 3}; !reflect.DeepEqual(per, want) {
		t.Errorf("per node %v, want %v", per, want)
	}
}

func TestPlacementFromFile(t *testing.T) {
	p := mustPlacement(t, placedDB("        constraints: [node.labels.role == db]\n", `  web:
    image: ../images/busybox.sif
    depends_on: [db]
    deploy:
      replicas: 3
      placement:
        constraints: ["node.hostname!=n2"]
        max_replicas_per_node: 2
x-sstack:
  node_labels:
    n2: {role: db}
`))
	got, un := p.Place([]Node{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}})
	if want := (Assignment{"db": {"n2"}, "web": {"n1", "n3", "n1"}}); len(un) != 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("got %v %v, want %v", got, un, want)
	}
}

func TestPlaceOne(t *testing.T) {
	p := &Plan{
		Services: []Service{
			service("w", 2, &Placement{MaxPerNode: 1}),
			service("x", 1, &Placement{Constraints: []Constraint{{Key: "node.hostname", Equal: true, Value: "n9"}}}),
			service("s", 1, &Placement{Spread: []string{"node.labels.rack"}}),
			service("d", 1, &Placement{Constraints: []Constraint{{Key: "node.labels.disk", Equal: true, Value: "ssd"}}}),
			service("free", 1, nil),
		},
		NodeLabels: map[string]map[string]string{"n2": {"disk": "ssd"}},
	}
	for _, c := range []struct {
		name, service string
		nodes         []Node // threeNodes when nil
		current       Assignment
		want, err     string
	}{
		{name: "the free node", service: "w", current: Assignment{"w": {"n1", "n2"}}, want: "n3"},
		{name: "an unplaced replica counts for nothing", service: "w", current: Assignment{"w": {"n1", "", "n3"}}, want: "n2"},
		{name: "full", service: "w", current: Assignment{"w": {"n1", "n2", "n3"}},
			err: `service "w": deploy.placement.max_replicas_per_node: each of the 3 nodes of n1, n2, n3 that match is at its bound of 1; raise it or add nodes to the allocation`},
		{name: "no match", service: "x", current: Assignment{},
			err: `service "x": deploy.placement.constraints: node.hostname == n9 matches no node of n1, n2, n3`},
		{name: "the least busy node of the stack", service: "free", current: Assignment{"free": {"n1"}, "w": {"n2", "n3"}, "x": {"n2"}}, want: "n3"},
		{name: "the emptiest rack", service: "s", current: Assignment{"s": {"n2", "n1"}}, want: "n3"},
		{name: "labels from x-sstack", service: "d", current: Assignment{"d": {"n2"}}, want: "n2"},
		{name: "no such service", service: "nope", err: `service "nope" is not in the project`},
		{name: "no nodes", service: "free", nodes: []Node{}, err: `service "free": there is no node to place it on`},
	} {
		t.Run(c.name, func(t *testing.T) {
			nodes := c.nodes
			if nodes == nil {
				nodes = threeNodes
			}
			got, err := p.PlaceOne(c.service, nodes, c.current)
			if msg := fmt.Sprint(err); err != nil && msg != c.err || err == nil && c.err != "" {
				t.Errorf("error %v, want %q", err, c.err)
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestPlacedHosts(t *testing.T) {
	p := mustPlacement(t, withDB("", `  web:
    image: ../images/busybox.sif
    deploy: {replicas: 2}
    extra_hosts: ["ext=10.0.0.1"]
`))
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

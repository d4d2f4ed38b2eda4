package compose

// deploy.placement: where replicas run when the stack is spread over the
// nodes of a Slurm allocation. Placing is pure: nodes in, an assignment
// out, so it is tested without Slurm.

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Placement is a service's deploy.placement.
type Placement struct {
	Constraints []Constraint `json:"constraints,omitempty"`
	// MaxPerNode is max_replicas_per_node; 0: no bound.
	MaxPerNode int `json:"max_replicas_per_node,omitempty"`
	// Spread are the preferences' spread keys (node.hostname or
	// node.labels.NAME), in order.
	Spread []string `json:"spread,omitempty"`
}

// Constraint is one placement constraint, as docker swarm writes them:
// node.hostname == n2, node.labels.gpu != true.
type Constraint struct {
	Key   string `json:"key"` // node.hostname or node.labels.NAME
	Equal bool   `json:"equal"`
	Value string `json:"value"`
}

func (c Constraint) String() string {
	op := "=="
	if !c.Equal {
		op = "!="
	}
	return c.Key + " " + op + " " + c.Value
}

// Node is where replicas can run: a node of the Slurm allocation, or this
// host.
type Node struct {
	Name   string            // Slurm node name (or this host's name)
	Addr   string            // address services on other nodes use to reach it
	Labels map[string]string // Slurm node features ("true") merged with x-sstack.node_labels (those win)
}

func (n Node) value(key string) (string, bool) {
	if key == "node.hostname" {
		return n.Name, true
	}
	v, ok := n.Labels[strings.TrimPrefix(key, "node.labels.")]
	return v, ok
}

func (c Constraint) matches(n Node) bool {
	v, ok := n.value(c.Key)
	return (ok && v == c.Value) == c.Equal
}

// Assignment is the node of each replica of each service (index r-1 for
// replica r).
type Assignment map[string][]string

// Unplaced is a service whose replicas cannot all be placed, and why.
type Unplaced struct {
	Service string
	Reason  string
}

// constraintRE is swarm's syntax: KEY == VALUE or KEY != VALUE, spaces
// optional; a value may hold inner spaces, as in swarm, but no = or !.
var constraintRE = regexp.MustCompile(`^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*([^=!\s](?:[^=!]*[^=!\s])?)\s*$`)

// placement reads deploy.placement.
func (t *translator) placement(sc types.ServiceConfig) *Placement {
	if sc.Deploy == nil {
		return nil
	}
	dp := sc.Deploy.Placement
	if len(dp.Constraints) == 0 && len(dp.Preferences) == 0 && dp.MaxReplicas == 0 {
		return nil
	}
	// Beyond MaxReplicas the bound binds nothing; clamped so int cannot wrap.
	pl := &Placement{MaxPerNode: int(min(dp.MaxReplicas, MaxReplicas))}
	for _, c := range dp.Constraints {
		m := constraintRE.FindStringSubmatch(c)
		if m == nil {
			t.fail(sc.Name, "deploy.placement.constraints", "%q is not KEY == VALUE or KEY != VALUE (e.g. node.hostname == n2)", c)
			continue
		}
		if !placementKey(m[1]) {
			t.fail(sc.Name, "deploy.placement.constraints", "%q: sstack places by node.hostname (the Slurm node name) and node.labels.NAME (Slurm features, x-sstack.node_labels), not by %s", c, m[1])
			continue
		}
		pl.Constraints = append(pl.Constraints, Constraint{Key: m[1], Equal: m[2] == "==", Value: m[3]})
	}
	for _, p := range dp.Preferences {
		if !placementKey(p.Spread) {
			t.fail(sc.Name, "deploy.placement.preferences", "spread: %q: sstack spreads over node.hostname or node.labels.NAME", p.Spread)
			continue
		}
		pl.Spread = append(pl.Spread, p.Spread)
	}
	return pl
}

func placementKey(k string) bool {
	return k == "node.hostname" || strings.HasPrefix(k, "node.labels.") && len(k) > len("node.labels.")
}

// nodeLabels reads the top-level x-sstack.node_labels, in name order so
// that errors come out the same every time.
func (t *translator) nodeLabels() map[string]map[string]string {
	x := t.p.Extensions["x-sstack"]
	if x == nil {
		return nil
	}
	m, ok := x.(map[string]any)
	if !ok {
		t.fail("", "x-sstack", "want a mapping (node_labels: {NODE: {LABEL: VALUE}})")
		return nil
	}
	for _, k := range sortedKeys(m) {
		if k != "node_labels" && k != "network" {
			t.warn("", "x-sstack."+k, "ignored: the top-level x-sstack has only node_labels and network")
		}
	}
	raw := m["node_labels"]
	if raw == nil {
		return nil
	}
	nodes, ok := raw.(map[string]any)
	if !ok {
		t.fail("", "x-sstack.node_labels", "want a mapping of node names to label mappings, e.g. n2: {gpu: \"true\"}")
		return nil
	}
	out := map[string]map[string]string{}
	for _, node := range sortedKeys(nodes) {
		labels, ok := nodes[node].(map[string]any)
		if !ok && nodes[node] != nil {
			t.fail("", "x-sstack.node_labels."+node, "want a mapping of labels to values, e.g. {gpu: \"true\"}")
			continue
		}
		out[node] = map[string]string{}
		for _, k := range sortedKeys(labels) {
			switch lv := labels[k].(type) {
			case string:
				out[node][k] = lv
			case bool, int, int64, uint64, float64:
				out[node][k] = fmt.Sprint(lv)
			default:
				t.fail("", "x-sstack.node_labels."+node+"."+k, "want a string, number or boolean value, not %T; quote it", lv)
			}
		}
	}
	return out
}

// placement prints a service's deploy.placement for config.
func (e *emitter) placement(pl *Placement) {
	if pl == nil {
		return
	}
	e.line(2, "placement:")
	if len(pl.Constraints) > 0 {
		c := make([]string, len(pl.Constraints))
		for i, x := range pl.Constraints {
			c[i] = x.String()
		}
		e.list(3, "constraints", c)
	}
	if pl.MaxPerNode > 0 {
		e.line(3, "max_replicas_per_node: "+strconv.Itoa(pl.MaxPerNode))
	}
	e.list(3, "spread", pl.Spread)
}

// nodeLabels prints x-sstack.node_labels for config, in name order.
func (e *emitter) nodeLabels(nl map[string]map[string]string) {
	if len(nl) == 0 {
		return
	}
	e.line(0, "node_labels:")
	for _, node := range sortedKeys(nl) {
		var kv []string
		for _, k := range sortedKeys(nl[node]) {
			kv = append(kv, quote(k)+": "+quote(nl[node][k]))
		}
		e.line(1, quote(node)+": {"+strings.Join(kv, ", ")+"}")
	}
}

// placer counts replicas per node while placing.
type placer struct {
	total   map[string]int            // node -> replicas of the stack
	service map[string]map[string]int // service -> node -> replicas
}

func newPlacer(a Assignment) *placer {
	pl := &placer{total: map[string]int{}, service: map[string]map[string]int{}}
	for svc, ns := range a {
		for _, n := range ns {
			if n != "" {
				pl.add(svc, n)
			}
		}
	}
	return pl
}

func (pl *placer) add(svc, node string) {
	if pl.service[svc] == nil {
		pl.service[svc] = map[string]int{}
	}
	pl.service[svc][node]++
	pl.total[node]++
}

// eligible are the nodes s's constraints allow, and why none is when so.
func eligible(s *Service, nodes []Node) ([]Node, string) {
	if len(nodes) == 0 {
		return nil, "there is no node to place it on"
	}
	out := slices.Clone(nodes)
	if s.Placement == nil {
		return out, ""
	}
	for _, c := range s.Placement.Constraints {
		out = slices.DeleteFunc(out, func(n Node) bool { return !c.matches(n) })
		if len(out) == 0 {
			return nil, fmt.Sprintf("deploy.placement.constraints: %s matches no node of %s", c, names(nodes))
		}
	}
	return out, ""
}

func (s *Service) maxPerNode() int {
	if s.Placement == nil {
		return 0
	}
	return s.Placement.MaxPerNode
}

func names(nodes []Node) string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = n.Name
	}
	return strings.Join(s, ", ")
}

// next is the node for one more replica of s among ok (the nodes its
// constraints allow), "" when each is full (max_replicas_per_node).
func (pl *placer) next(s *Service, ok []Node) string {
	max := s.maxPerNode()
	counts := pl.service[s.Name]
	var free []Node
	for _, n := range ok {
		if max == 0 || counts[n.Name] < max {
			free = append(free, n)
		}
	}
	if len(free) == 0 {
		return ""
	}
	// Spread preferences first, as swarm does: key by key, keep the nodes
	// of the label value (missing: "") with the fewest replicas of s.
	var spread []string
	if s.Placement != nil {
		spread = s.Placement.Spread
	}
	for _, key := range spread {
		per := map[string]int{}
		for _, n := range ok {
			v, _ := n.value(key)
			per[v] += counts[n.Name]
		}
		least := -1
		for _, n := range free {
			v, _ := n.value(key)
			if least < 0 || per[v] < least {
				least = per[v]
			}
		}
		free = slices.DeleteFunc(free, func(n Node) bool { v, _ := n.value(key); return per[v] != least })
	}
	best := free[0]
	for _, n := range free[1:] {
		if counts[n.Name] < counts[best.Name] || counts[n.Name] == counts[best.Name] && pl.total[n.Name] < pl.total[best.Name] {
			best = n
		}
	}
	return best.Name
}

// labelled merges the plan's x-sstack.node_labels into copies of nodes
// (those win, as for the callers that merge them already), so that a
// caller may pass the Slurm features alone.
func (p *Plan) labelled(nodes []Node) []Node {
	if len(p.NodeLabels) == 0 {
		return nodes
	}
	out := slices.Clone(nodes)
	for i, n := range out {
		if extra := p.NodeLabels[n.Name]; len(extra) > 0 {
			labels := maps.Clone(n.Labels)
			if labels == nil {
				labels = map[string]string{}
			}
			maps.Copy(labels, extra)
			out[i].Labels = labels
		}
	}
	return out
}

// Place puts every replica of every service on a node: within its
// constraints and max_replicas_per_node, spread over the label values of
// its spread preferences, then on the node with the fewest replicas of
// the service, then of the stack, then the first in nodes' order.
// Services are placed in plan order. A service that cannot be placed
// whole is in Unplaced, and not in the Assignment: the caller decides
// whether that is an error (inside an allocation) or a skip (outside).
func (p *Plan) Place(nodes []Node) (Assignment, []Unplaced) {
	nodes = p.labelled(nodes)
	a := Assignment{}
	var un []Unplaced
	pl := newPlacer(nil)
	for i := range p.Services {
		s := &p.Services[i]
		if s.Replicas <= 0 {
			continue
		}
		ok, why := eligible(s, nodes)
		if max := s.maxPerNode(); why == "" && max > 0 && max*len(ok) < s.Replicas {
			why = fmt.Sprintf("deploy.placement.max_replicas_per_node: %d replicas need %d nodes with at most %d each, and %d of %s match",
				s.Replicas, (s.Replicas+max-1)/max, max, len(ok), names(nodes))
		}
		if why != "" {
			un = append(un, Unplaced{Service: s.Name, Reason: why})
			continue
		}
		got := make([]string, s.Replicas)
		for r := range got {
			// Never "": the bound was checked above.
			got[r] = pl.next(s, ok)
			pl.add(s.Name, got[r])
		}
		a[s.Name] = got
	}
	return a, un
}

// PlaceOne places one more replica of service (scale), given what is
// placed already; the error says why it fits no node.
func (p *Plan) PlaceOne(service string, nodes []Node, current Assignment) (string, error) {
	s := p.Service(service)
	if s == nil {
		return "", fmt.Errorf("service %q is not in the project", service)
	}
	nodes = p.labelled(nodes)
	ok, why := eligible(s, nodes)
	if why != "" {
		return "", fmt.Errorf("service %q: %s", service, why)
	}
	n := newPlacer(current).next(s, ok)
	if n == "" {
		return "", fmt.Errorf("service %q: deploy.placement.max_replicas_per_node: each of the %d nodes of %s that match is at its bound of %d; raise it or add nodes to the allocation",
			service, len(ok), names(nodes), s.maxPerNode())
	}
	return n, nil
}

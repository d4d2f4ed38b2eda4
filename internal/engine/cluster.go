package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/agent"
	"sstack/internal/api"
	"sstack/internal/prepare"
	"sstack/internal/slurm"
	"sstack/singularity"
)

// cluster is a stack spread over the nodes of a Slurm allocation: the
// actors stay here, each node runs an agent in a job step that lasts as
// long as the stack, and every replica's instance lives in its node's
// step (README, "Across the nodes of a Slurm allocation").
type cluster struct {
	job    string
	plan   *compose.Plan
	nodes  []compose.Node
	addr   map[string]string // node name -> address
	placed *agent.Placed

	mu     sync.Mutex
	assign compose.Assignment
	hosts  map[string]string // service -> its hosts file, once prepared
}

var _ actors.Placer = (*cluster)(nil)

// newCluster places every replica on a node of alloc; a replica that
// fits no node is an error, before anything starts.
func newCluster(plan *compose.Plan, rt *singularity.Apptainer, alloc *slurm.Allocation, log io.Writer) (*cluster, error) {
	c := &cluster{job: alloc.JobID, plan: plan, addr: map[string]string{}}
	for _, n := range alloc.Nodes {
		// Detect resolved NodeAddr (or the host name) where it could.
		addr := n.Addr
		if net.ParseIP(addr) == nil {
			return nil, fmt.Errorf("node %[2]s of Slurm job %[1]s: its address %[3]q does not resolve to an IP: services on other nodes could not reach it; set NodeAddr in slurm.conf or fix the name's resolution", alloc.JobID, n.Name, addr)
		}
		labels := map[string]string{}
		for _, f := range n.Features {
			labels[f] = "true"
		}
		for k, v := range plan.NodeLabels[n.Name] {
			labels[k] = v
		}
		c.nodes = append(c.nodes, compose.Node{Name: n.Name, Addr: addr, Labels: labels})
		c.addr[n.Name] = addr
	}
	assign, unplaced := plan.Place(c.nodes)
	if len(unplaced) > 0 {
		var errs []error
		for _, u := range unplaced {
			errs = append(errs, fmt.Errorf("service %q: %s; the Slurm job %s has %s: change the constraint or the allocation (salloc -w / sbatch --nodelist)", u.Service, u.Reason, alloc.JobID, nodeNames(c.nodes)))
		}
		return nil, errors.Join(errs...)
	}
	c.assign = assign
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("the agents run this sstack binary on every node: %w", err)
	}
	var remotes []*agent.Remote
	log = &dropLines{w: log, drop: slurm.NoBindingWarning}
	for _, n := range alloc.Nodes {
		argv := slurm.AgentStep("srun", alloc.JobID, n, []string{exe, "agent", "--runtime", rt.Binary, "--listen", net.JoinHostPort(c.addr[n.Name], "0")})
		remotes = append(remotes, &agent.Remote{Node: n.Name, Log: log, Command: func() *exec.Cmd {
			cmd := exec.Command(argv[0], argv[1:]...)
			// Its own process group: a Ctrl-C at the terminal is the
			// supervisor's to handle; srun would take the first as a
			// status request and the second as a kill.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			return cmd
		}})
	}
	c.placed = agent.NewPlaced(remotes)
	for svc, nodes := range assign {
		for i, node := range nodes {
			if err := c.placed.Place(compose.InstanceName(plan.Project, svc, i+1), node); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func nodeNames(nodes []compose.Node) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return fmt.Sprint(names)
}

// parallelFor is the bound of parallel starts and stops: the default
// bound is per node, as each node's Apptainer does its own work; one given
// (--parallel, COMPOSE_PARALLEL_LIMIT) is the stack's.
func parallelFor(given int, c *cluster) int {
	if given != 0 || c == nil {
		return given
	}
	return singularity.DefaultParallel() * len(c.nodes)
}

// start launches the agents of the nodes that have replicas, at once.
func (c *cluster) start(ctx context.Context) error {
	return c.placed.StartAll(ctx, func(node string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, nodes := range c.assign {
			if slices.Contains(nodes, node) {
				return true
			}
		}
		return false
	})
}

func (c *cluster) close() { c.placed.Close(context.Background()) }

// Place gives replica r of service its node, placing a new one (scale).
func (c *cluster) Place(service string, r int) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nodes := c.assign[service]; r <= len(nodes) && nodes[r-1] != "" {
		return nodes[r-1], nil
	}
	node, err := c.plan.PlaceOne(service, c.nodes, c.assign)
	if err != nil {
		return "", err
	}
	for len(c.assign[service]) < r {
		c.assign[service] = append(c.assign[service], "")
	}
	c.assign[service][r-1] = node
	if err := c.placed.Place(compose.InstanceName(c.plan.Project, service, r), node); err != nil {
		return "", err
	}
	c.rewriteHosts()
	return node, nil
}

// nodeOf is the node of replica r of service, "" if not placed.
func (c *cluster) nodeOf(service string, r int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nodes := c.assign[service]; r <= len(nodes) {
		return nodes[r-1]
	}
	return ""
}

// Forget frees the node of a replica scaled away.
func (c *cluster) Forget(service string, r int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nodes := c.assign[service]; r == len(nodes) {
		c.assign[service] = nodes[:r-1]
		c.rewriteHosts()
	}
}

// addrs is hostsOf's view of the assignment; c.mu is held.
func (c *cluster) addrs(service string) []string {
	nodes := c.assign[service]
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = c.addr[n]
	}
	return out
}

// hostsOf is a service's /etc/hosts: every name on its replicas' nodes.
func (c *cluster) hostsOf(svc *compose.Service) []compose.HostEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plan.PlacedHosts(svc, c.addrs)
}

// rewriteHosts rewrites every hosts file in place (the same file is bound
// into the running instances, which so learn of a replica added by scale);
// c.mu is held.
func (c *cluster) rewriteHosts() {
	for name, path := range c.hosts {
		if svc := c.plan.Service(name); svc != nil {
			_ = os.WriteFile(path, []byte(prepare.HostsFile(compose.GatewayAt(c.plan.PlacedHosts(svc, c.addrs), "127.0.0.1"))), 0o600)
		}
	}
}

// skipElsewhere, outside an allocation, leaves out the services whose
// placement names another host, as singularity-stack does, so that one
// file can be deployed on each host by hand. It says so for each.
func skipElsewhere(plan *compose.Plan, warn warnFunc) {
	host, _ := os.Hostname()
	here := []compose.Node{{Name: host, Addr: "127.0.0.1", Labels: plan.NodeLabels[host]}}
	_, unplaced := plan.Place(here)
	if len(unplaced) == 0 {
		return
	}
	gone := map[string]bool{}
	for _, u := range unplaced {
		gone[u.Service] = true
		warn(api.Warning(u.Service, "not started on this host (%s): %s", host, u.Reason))
	}
	kept := plan.Services[:0]
	for _, s := range plan.Services {
		if gone[s.Name] {
			continue
		}
		deps := s.DependsOn[:0]
		for _, d := range s.DependsOn {
			if gone[d.Service] {
				warn(api.Warning(s.Name, "depends_on %q, which runs on another host: starting without waiting for it", d.Service))
				continue
			}
			deps = append(deps, d)
		}
		s.DependsOn = deps
		kept = append(kept, s)
	}
	plan.Services = kept
}

// dropLines passes whole lines on to w, but not drop: srun's warning about
// --cpu-bind=none where nothing binds, at every agent launch.
type dropLines struct {
	mu   sync.Mutex
	w    io.Writer
	drop string
	buf  []byte
}

func (d *dropLines) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf, p...)
	for {
		i := bytes.IndexByte(d.buf, '\n')
		if i < 0 {
			break
		}
		line := d.buf[:i+1]
		if strings.TrimSpace(string(line)) != d.drop {
			_, _ = d.w.Write(line)
		}
		d.buf = d.buf[i+1:]
	}
	return len(p), nil
}

// converge takes an edited plan (up on a running stack): the replicas of
// fresh services are placed now, so that one that fits no node refuses
// the change before anything changes.
func (c *cluster) converge(plan *compose.Plan, fresh []string) error {
	c.mu.Lock()
	old := c.plan
	c.plan = plan
	c.mu.Unlock()
	var errs []error
	for _, name := range fresh {
		for r := 1; r <= plan.Service(name).Replicas; r++ {
			if _, err := c.Place(name, r); err != nil {
				errs = append(errs, fmt.Errorf("service %q: %w", name, err))
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.mu.Lock()
		c.plan = old
		for _, name := range fresh {
			delete(c.assign, name)
		}
		c.mu.Unlock()
		return err
	}
	return nil
}

// setHosts records the services' hosts files, which placements rewrite.
func (c *cluster) setHosts(hosts map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hosts = hosts
}

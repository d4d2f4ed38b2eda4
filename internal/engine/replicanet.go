package engine

// A network namespace and an address for every replica on the stack
// network (issue 16), and the names the stack's DNS server answers. The
// namespaces are routed by the stack holder's namespace (internal/stacknet,
// replicas.go); the service actors attach a replica before its instance
// starts and detach it once the instance is gone (actors/netattach.go).

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/stacknet"
	"sstack/singularity"
)

// replicaNets implements actors.ReplicaNetworks on a stack network.
type replicaNets struct {
	stack *stacknet.Net
	plan  *compose.Plan

	mu    sync.Mutex
	addrs *stacknet.Addresses
	// held are the namespaces, by owner (see owner); attached maps each
	// replica attached ("SERVICE/N") to the namespace it is in.
	held     map[string]*heldNet
	attached map[string]string
}

type heldNet struct {
	net   singularity.Network
	users int
	// made is closed once a namespace reserved ahead (reserve) is made
	// or has failed (err); nil for one Attach made itself.
	made chan struct{}
	err  error
}

var _ actors.ReplicaNetworks = (*replicaNets)(nil)

// newReplicaNets gives the services with ipv4_address theirs first.
func newReplicaNets(stack *stacknet.Net, plan *compose.Plan) (*replicaNets, error) {
	rn := &replicaNets{stack: stack, plan: plan, addrs: stacknet.NewAddresses(), held: map[string]*heldNet{}, attached: map[string]string{}}
	var errs []error
	for _, s := range plan.Services {
		if addr := s.IPv4Address(); addr != "" && s.Network == compose.NetworkProject && s.NetworkShare == "" {
			if err := rn.addrs.Want(replicaKey(s.Name, 1), addr); err != nil {
				errs = append(errs, &compose.Error{Service: s.Name, Key: "networks", Message: "ipv4_address " + err.Error()})
			}
		}
	}
	return rn, errors.Join(errs...)
}

// setPlan takes an edited plan (up on a running stack): the networks,
// aliases and names of the replicas attached from now on are its.
func (rn *replicaNets) setPlan(plan *compose.Plan) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.plan = plan
}

// on is where svc's replicas are: the networks of the service whose
// namespace they live in, and whether one of them leads out.
func (rn *replicaNets) on(svc *compose.Service) stacknet.On {
	if svc.NetworkShare != "" {
		if owner := rn.plan.Service(svc.NetworkShare); owner != nil {
			svc = owner
		}
	}
	return onNetworks(rn.plan, svc)
}

// onNetworks: a service with no networks (a plan made by hand) is on the
// default one; internal networks lead nowhere.
func onNetworks(plan *compose.Plan, svc *compose.Service) stacknet.On {
	names := svc.NetworkNames()
	if len(names) == 0 {
		names = []string{compose.DefaultNetwork}
	}
	on := stacknet.On{Networks: names}
	for _, n := range names {
		if nw := plan.Network(n); nw == nil || !nw.Internal {
			on.Outbound = true
		}
	}
	return on
}

func replicaKey(service string, replica int) string {
	return service + "/" + strconv.Itoa(replica)
}

// owner is the namespace replica of svc lives in: its own, or with
// network_mode: service:NAME, NAME's first replica's (as docker compose
// joins the first container of NAME).
func owner(svc *compose.Service, replica int) string {
	if svc.NetworkShare != "" {
		return replicaKey(svc.NetworkShare, 1)
	}
	return replicaKey(svc.Name, replica)
}

// address is the address of replica of svc, given it now if it has none.
func (rn *replicaNets) address(svc *compose.Service, replica int) (string, error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.addrs.Of(owner(svc, replica))
}

// Attach implements actors.ReplicaNetworks.
func (rn *replicaNets) Attach(svc *compose.Service, replica int) (singularity.Network, error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	me, own := replicaKey(svc.Name, replica), owner(svc, replica)
	// A namespace reserved ahead (reserve): wait for it without holding
	// up the other replicas' attaches; one that failed is tried again.
	for h := rn.held[own]; h != nil && h.made != nil; h = rn.held[own] {
		rn.mu.Unlock()
		<-h.made
		rn.mu.Lock()
		if rn.held[own] == h && h.made != nil {
			h.made = nil
			if h.err != nil {
				delete(rn.held, own)
			}
		}
	}
	if h := rn.held[own]; h != nil && rn.attached[me] == own {
		return h.net, nil
	}
	addr, err := rn.addrs.Of(own)
	if err != nil {
		return singularity.Network{}, err
	}
	h := rn.held[own]
	if h == nil {
		r, err := rn.stack.AddReplica(nsName(own), addr, rn.on(svc))
		if err != nil {
			return singularity.Network{}, err
		}
		h = &heldNet{net: singularity.Network{Holder: r.Pid, UserNS: r.UserNS}}
		rn.held[own] = h
	}
	h.users++
	rn.attached[me] = own
	if err := rn.stack.SetNames(rn.names()); err != nil {
		rn.detach(me)
		return singularity.Network{}, err
	}
	return h.net, nil
}

// reserve makes, one after the other in a goroutine of its own, the
// namespaces of the replicas that up is about to start: those of the
// services named on the stack network, each with its own namespace
// (network_mode: service:NAME joins NAME's). Made while the rest of up
// runs and before the instance starts compete for the CPU, they cost an
// Attach nothing but the wait for its own: made by Attach, each in turn
// under the lock, they came one after the other among the starts (7 to
// 100 ms each at load 8, 0.4 s for 10 replicas), holding back each start.
// The addresses are given in the plan's order. A namespace reserved for
// a replica that never starts (its dependency failed) is held until the
// stack ends, when the stack network goes with all of them.
func (rn *replicaNets) reserve(services []string) {
	type job struct {
		own, addr string
		on        stacknet.On
		h         *heldNet
		made      chan struct{}
	}
	var jobs []job
	rn.mu.Lock()
	for _, name := range services {
		svc := rn.plan.Service(name)
		if svc == nil || svc.Network != compose.NetworkProject || svc.NetworkShare != "" {
			continue
		}
		for r := 1; r <= svc.Replicas; r++ {
			own := replicaKey(svc.Name, r)
			if rn.held[own] != nil {
				continue
			}
			addr, err := rn.addrs.Of(own)
			if err != nil {
				continue // Attach says it
			}
			h := &heldNet{made: make(chan struct{})}
			rn.held[own] = h
			jobs = append(jobs, job{own: own, addr: addr, on: rn.on(svc), h: h, made: h.made})
		}
	}
	rn.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	go func() {
		for _, j := range jobs {
			r, err := rn.stack.AddReplica(nsName(j.own), j.addr, j.on)
			rn.mu.Lock()
			j.h.net, j.h.err = singularity.Network{Holder: r.Pid, UserNS: r.UserNS}, err
			rn.mu.Unlock()
			close(j.made)
		}
	}()
}

// Detach implements actors.ReplicaNetworks.
func (rn *replicaNets) Detach(svc *compose.Service, replica int) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.detach(replicaKey(svc.Name, replica)) {
		_ = rn.stack.SetNames(rn.names())
	}
}

// detach forgets replica me; its namespace goes with its last user.
func (rn *replicaNets) detach(me string) bool {
	own, ok := rn.attached[me]
	if !ok {
		return false
	}
	delete(rn.attached, me)
	if h := rn.held[own]; h != nil {
		if h.users--; h.users <= 0 {
			delete(rn.held, own)
			// The stack's holder may be gone already (teardown after a
			// killed holder): nothing is left to remove then.
			_ = rn.stack.RemoveReplica(nsName(own))
		}
	}
	return true
}

// nsName names a namespace in the holder and in its process title:
// "[PROJECT.web.1.network]".
func nsName(own string) string { return strings.ReplaceAll(own, "/", ".") }

// net is the namespace replica of service is in now, if any.
func (rn *replicaNets) net(service string, replica int) (singularity.Network, bool) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if own, ok := rn.attached[replicaKey(service, replica)]; ok {
		return rn.held[own].net, true
	}
	return singularity.Network{}, false
}

// addressOf is ps's address of a replica attached now, or "".
func (rn *replicaNets) addressOf(service string, replica int) string {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	own, ok := rn.attached[replicaKey(service, replica)]
	if !ok {
		return ""
	}
	addr, _ := rn.addrs.Of(own)
	return addr
}

// names is the DNS table for the replicas attached now, and the networks
// of their addresses.
func (rn *replicaNets) names() (stacknet.Names, stacknet.Networks) {
	var up []upReplica
	nets := stacknet.Networks{}
	for me, own := range rn.attached {
		service, n, _ := strings.Cut(me, "/")
		replica, _ := strconv.Atoi(n)
		addr, _ := rn.addrs.Of(own)
		up = append(up, upReplica{service: service, replica: replica, addr: addr})
		if svc := rn.plan.Service(service); svc != nil {
			nets[addr] = rn.on(svc).Networks
		}
	}
	return dnsNames(rn.plan, up), nets
}

// upReplica is a replica with an address.
type upReplica struct {
	service string
	replica int
	addr    string
}

// dnsNames is what the stack's DNS server answers, as docker's embedded
// DNS does: each service on the stack network by its name, with every
// replica's address (none while it has none: the name is still the
// stack's, not asked of the host's resolvers); each replica by its
// display name (SERVICE-N, or container_name) and by SERVICE-N; and the
// project's other names of a service (hostname, network aliases, a
// templated name of one replica) from the plan's hosts lines. Link
// aliases (links: SERVICE:ALIAS) are answered to every service, where no
// name of the project is the same.
func dnsNames(plan *compose.Plan, up []upReplica) stacknet.Names {
	names := stacknet.Names{}
	add := func(name, addr string) {
		name = strings.ToLower(name)
		if addr != "" && !slices.Contains(names[name], addr) {
			names[name] = append(names[name], addr)
		} else if _, ok := names[name]; !ok {
			names[name] = nil
		}
	}
	for _, s := range plan.Services {
		if s.Network == compose.NetworkProject {
			add(s.Name, "")
		}
	}
	up = slices.Clone(up)
	slices.SortFunc(up, func(a, b upReplica) int {
		return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.replica, b.replica))
	})
	for _, r := range up {
		svc := plan.Service(r.service)
		if svc == nil {
			continue
		}
		add(svc.Name, r.addr)
		add(svc.Name+"-"+strconv.Itoa(r.replica), r.addr)
		add(svc.DisplayName(r.replica), r.addr)
		for _, e := range plan.Hosts {
			if e.Service != svc.Name || (e.Replica != 0 && e.Replica != r.replica) {
				continue
			}
			// container_name names replica 1 only (DisplayName).
			if svc.ContainerName != "" && e.Host == svc.DisplayName(1) && r.replica != 1 {
				continue
			}
			add(e.Host, r.addr)
		}
	}
	project := map[string]bool{}
	for name := range names {
		project[name] = true
	}
	for _, s := range plan.Services {
		for _, e := range s.ExtraHosts {
			if e.Service == "" || project[strings.ToLower(e.Host)] {
				continue
			}
			for _, r := range up {
				if r.service == e.Service {
					add(e.Host, r.addr)
				}
			}
		}
	}
	return names
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/stacknet"
	"sstack/singularity"
)

// networks is the stack's network as up sets it: the stack network (nil
// when no service runs on it) and each service's Network.
type networks struct {
	stack *stacknet.Net
	// of is replaced as a whole by up on a running stack (converge.go),
	// under mu.
	mu sync.RWMutex
	of map[string]singularity.Network
	// gateway is what host-gateway stands for from the services on the
	// stack network: an address of the host other than loopback.
	gateway string
	// replicas gives every replica on the stack network a namespace of
	// its own (replicanet.go); nil for a one-off run's.
	replicas *replicaNets
	// named: the stack's DNS server answers the services' names (a
	// stack with replicas, or a run joining one); /etc/hosts does not.
	named bool
}

// hostNetworkHint is how to run without a stack network.
const hostNetworkHint = "or run every service on the host's network: sstack up --network host (or x-sstack: {network: host} at the top of the compose file)"

// checkAndStartNetworks runs the clash check and starts the networks:
// at once, each mostly waiting on other processes, unless a killed sstack
// left a network record, which the check must first say is not in use
// (its instances are gone) before startNetworks ends that network's
// processes. Across an allocation nothing starts here but warnings, which
// a clash must not be preceded by.
func checkAndStartNetworks(ctx context.Context, rt *singularity.Apptainer, plan *compose.Plan, listed Listing, clustered bool, warn warnFunc) (*networks, error) {
	if clustered || stacknet.Recorded(plan.StateDir) {
		if err := checkClash(ctx, rt, plan.Project, plan.StateDir, listed); err != nil {
			return nil, err
		}
		return startNetworks(ctx, plan, clustered, warn)
	}
	clash := make(chan error, 1)
	go func() { clash <- checkClash(ctx, rt, plan.Project, plan.StateDir, listed) }()
	nw, err := startNetworks(ctx, plan, clustered, warn)
	if cerr := <-clash; cerr != nil {
		nw.close()
		return nil, cerr
	}
	return nw, err
}

// startNetworks makes the stack network when a service runs on it (never
// across a Slurm allocation, where services use their node's network:
// README) and publishes the services' ports; nothing else is started
// when it fails. clustered: inside an allocation.
func startNetworks(ctx context.Context, plan *compose.Plan, clustered bool, warn warnFunc) (*networks, error) {
	nw := &networks{of: map[string]singularity.Network{}}
	project := false
	for _, s := range plan.Services {
		switch s.Network {
		case compose.NetworkNone:
			nw.of[s.Name] = singularity.Network{None: true}
		case compose.NetworkProject:
			if clustered {
				if len(s.Ports) > 0 {
					warn(api.Warning(s.Name, "ports: not published: across a Slurm allocation the services use their nodes' network and listen on its ports themselves"))
				}
				continue
			}
			project = true
		}
	}
	if !project {
		return nw, nil
	}
	// A network left by a killed sstack whose instances are gone (the
	// clash check passed): its processes serve nobody now.
	stacknet.Cleanup(plan.StateDir)
	n, err := stacknet.Start(ctx, plan.StateDir, plan.Project)
	if err != nil {
		return nil, fmt.Errorf("the stack's own network cannot be made on this host: %v; %s", err, hostNetworkHint)
	}
	nw.stack = n
	for _, s := range plan.Services {
		if s.Network == compose.NetworkProject {
			nw.of[s.Name] = n.Network()
		}
	}
	if err := n.Prepare(); err != nil {
		n.Close()
		return nil, fmt.Errorf("the stack network's routing: %v; %s", err, hostNetworkHint)
	}
	if nw.replicas, err = newReplicaNets(n, plan); err != nil {
		n.Close()
		return nil, err
	}
	nw.named = true
	if err := nw.publish(plan); err != nil {
		n.Close()
		return nil, err
	}
	nw.gateway = stacknet.HostAddress()
	return nw, nil
}

// publish forwards every published port of the services on the stack
// network, each checked free first so that a taken one is said with the
// service and the key. With an address for each replica, a port goes to
// replica 1's, and a range of host ports to as many replicas as it has
// ports, one each, as docker compose spreads them.
func (nw *networks) publish(plan *compose.Plan) error {
	var errs []error
	for _, s := range plan.Services {
		if s.Network != compose.NetworkProject {
			continue
		}
		for _, p := range s.Ports {
			lo, hi := p.HostPorts()
			spread := 1
			if nw.replicas != nil && hi > lo {
				spread = max(1, min(s.Replicas, hi-lo+1))
			}
			from := lo
			for r := 1; r <= spread; r++ {
				pub, err := choosePort(p, from)
				if err == nil && nw.replicas != nil {
					pub.GuestAddr, err = nw.replicas.address(&s, r)
				}
				if err == nil {
					pub.Service = s.Name
					err = nw.stack.Publish(pub)
				}
				if err != nil {
					errs = append(errs, &compose.Error{Service: s.Name, Key: "ports", Message: err.Error()})
					break
				}
				from = pub.HostPort + 1
			}
		}
	}
	return errors.Join(errs...)
}

// choosePort picks the host port of p: the one written, the first free
// one of a range from port from on, or one the kernel chooses when none
// is written.
func choosePort(p compose.Port, from int) (stacknet.Published, error) {
	pub := stacknet.Published{HostIP: p.HostAddr(), Target: p.Target, Protocol: p.Protocol}
	if p.Protocol != "tcp" && p.Protocol != "udp" {
		return pub, fmt.Errorf("%s: only tcp and udp ports can be published", p.Written())
	}
	lo, hi := p.HostPorts()
	lo = max(lo, from)
	var last error
	for port := lo; port <= hi; port++ {
		got, err := tryListen(p.Protocol, pub.HostIP, port)
		if err == nil {
			pub.HostPort = got
			return pub, nil
		}
		last = err
	}
	switch {
	case errors.Is(last, syscall.EADDRINUSE):
		return pub, fmt.Errorf("%s: host port %s is already in use; stop the program that holds it (ss -lntup shows which), or publish another port", p.Written(), p.Published)
	case errors.Is(last, syscall.EACCES):
		return pub, fmt.Errorf("%s: only root may bind host port %s on this host (ports below net.ipv4.ip_unprivileged_port_start); publish a port of 1024 or above (the service may listen on any port inside)", p.Written(), p.Published)
	case errors.Is(last, syscall.EADDRNOTAVAIL):
		return pub, fmt.Errorf("%s: %s is not an address of this host", p.Written(), pub.HostIP)
	}
	return pub, fmt.Errorf("%s: %v", p.Written(), last)
}

// tryListen binds addr:port (0: any) for a moment and says which port.
func tryListen(proto, addr string, port int) (int, error) {
	hostPort := net.JoinHostPort(addr, strconv.Itoa(port))
	if proto == "udp" {
		c, err := net.ListenPacket("udp", hostPort)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", hostPort)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// hosts adapts a service's /etc/hosts lines to its network: host-gateway
// is the host's address from the stack network and 127.0.0.1 from the
// host's; from the stack network a service on the host's network is
// reached at the host's address too.
func (nw *networks) hosts(plan *compose.Plan, svc *compose.Service, entries []compose.HostEntry) ([]compose.HostEntry, error) {
	if nw.of[svc.Name].Holder == 0 {
		return compose.GatewayAt(entries, "127.0.0.1"), nil
	}
	out := make([]compose.HostEntry, 0, len(entries))
	for _, e := range entries {
		switch {
		case e.IP == compose.HostGateway:
			if nw.gateway == "" {
				return nil, &compose.Error{Service: svc.Name, Key: "extra_hosts", Message: e.Host + ":host-gateway: this host has no address other than loopback for the stack network to reach it at; " + hostNetworkHint}
			}
			e.IP = nw.gateway
		case e.Service != "" && nw.gateway != "":
			if other := plan.Service(e.Service); other != nil && other.Network == compose.NetworkHost {
				e.IP = nw.gateway
			}
		}
		// A service on the stack network with addresses of its own is
		// answered by the stack's DNS server, which follows its replicas.
		if e.Service != "" && nw.named {
			if other := plan.Service(e.Service); other != nil && other.Network == compose.NetworkProject {
				continue
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// resolvConf is the /etc/resolv.conf of the services on the stack
// network, or "" to keep the host's (Apptainer binds it): a host resolver
// on 127.x cannot be reached from the namespace, so its queries go to
// slirp4netns's forwarder instead, which asks the host's resolvers.
func resolvConf(dir string) (string, error) {
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return "", nil
	}
	content, ok := stackResolvConf(string(host))
	if !ok {
		return "", nil
	}
	path := filepath.Join(dir, "resolv.conf")
	return path, os.WriteFile(path, []byte(content), 0o644)
}

// stackResolvConf is the resolv.conf for the stack network given the
// host's, and whether the host's cannot serve (a resolver on loopback).
func stackResolvConf(host string) (string, bool) {
	var keep []string
	loopback := false
	for _, line := range strings.Split(host, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip != nil && ip.IsLoopback() {
				loopback = true
			}
			continue
		}
		if len(f) > 0 && (f[0] == "search" || f[0] == "domain" || f[0] == "options") {
			keep = append(keep, line)
		}
	}
	if !loopback {
		return "", false
	}
	return "# generated by sstack: the host's resolver is on loopback\nnameserver " + stacknet.DNSAddr + "\n" + strings.Join(keep, "\n") + "\n", true
}

// resolvConf is the /etc/resolv.conf of the services on the stack network
// (see resolvConf): with addresses of their own, the stack's DNS server.
func (nw *networks) resolvConf(dir string) (string, error) {
	if nw == nil || !nw.named {
		return resolvConf(dir)
	}
	host, _ := os.ReadFile("/etc/resolv.conf")
	path := filepath.Join(dir, "resolv.conf")
	return path, os.WriteFile(path, []byte(stacknet.ResolvConf(string(host))), 0o644)
}

// replicaNetworks gives the replicas on the stack network their own
// namespaces; nil without a stack network.
func (nw *networks) replicaNetworks() actors.ReplicaNetworks {
	if nw == nil || nw.replicas == nil {
		return nil
	}
	return nw.replicas
}

// execNet is the network exec enters for replica of service: the
// replica's own namespace, else the service's.
func (nw *networks) execNet(service string, replica int) singularity.Network {
	if nw.replicas != nil {
		if n, ok := nw.replicas.net(service, replica); ok {
			return n
		}
	}
	return nw.network(service)
}

// annotate adds what the network knows to a ps row: its published ports
// and the replica's address.
func (nw *networks) annotate(row *api.Replica) {
	row.Publishers = nw.publishers(row.Service)
	if nw != nil && nw.replicas != nil {
		row.Address = nw.replicas.addressOf(row.Service, row.Replica)
	}
}

// publishers are ps's PORTS of a service.
func (nw *networks) publishers(service string) []api.Publisher {
	if nw == nil || nw.stack == nil {
		return nil
	}
	var out []api.Publisher
	for _, p := range nw.stack.Ports() {
		if p.Service == service {
			out = append(out, api.Publisher{URL: p.HostIP, TargetPort: p.Target, PublishedPort: p.HostPort, Protocol: p.Protocol})
		}
	}
	return out
}

func (nw *networks) close() {
	if nw != nil && nw.stack != nil {
		nw.stack.Close()
	}
}

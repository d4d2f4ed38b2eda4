package compose

// Network modes, /etc/hosts entries and ports. The services of a stack
// share one network: by default a namespace of the stack's own
// (internal/stacknet), with network_mode: host the host's; either way
// every service is reachable on 127.0.0.1 under its names.

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Network modes of a service (Service.Network).
const (
	NetworkProject = "project" // the stack's own network namespace (the default)
	NetworkHost    = "host"    // the host's network (network_mode: host, up --network host)
	NetworkNone    = "none"    // loopback only (network_mode: none)
)

// HostGateway is the address extra_hosts' host-gateway stands for, as the
// plan writes it: on the project network the engine puts the host's
// address there (the host's 127.0.0.1 is not reachable from inside);
// on the host's network it is 127.0.0.1.
const HostGateway = "host-gateway"

// networkMode reads network_mode; service:NAME is resolved later, once
// every service is known (sharedNetworks).
func (t *translator) networkMode(sc types.ServiceConfig) string {
	nm := sc.NetworkMode
	switch {
	case nm == "host":
		return NetworkHost
	case nm == "none":
		return NetworkNone
	case strings.HasPrefix(nm, "service:"):
		return nm
	case strings.HasPrefix(nm, "container:"):
		t.fail(sc.Name, "network_mode", "%q: there are no containers outside the project to share a network with; use service:NAME for a service of the project", nm)
	case nm == "" || nm == "default":
	case nm == "bridge":
		t.warn(sc.Name, "network_mode", "bridge: the service runs on the project's network, with the other services")
	default:
		t.warn(sc.Name, "network_mode", "%q is not a network sstack knows: the service runs on the project's network (host, none and service:NAME are the others)", nm)
	}
	if t.hostNetwork {
		return NetworkHost
	}
	return NetworkProject
}

// sharedNetworks resolves network_mode: service:NAME to NAME's network
// (a stack's services share one namespace already), then warns about
// ports each mode cannot honour and refuses host ports published twice.
func (t *translator) sharedNetworks(order []string, services map[string]*Service) {
	var resolve func(name string, seen map[string]bool) string
	resolve = func(name string, seen map[string]bool) string {
		s := services[name]
		target, ok := strings.CutPrefix(s.Network, "service:")
		if !ok {
			return s.Network
		}
		switch {
		case seen[name]:
			t.fail(name, "network_mode", "service:%s: the services' network_mode form a cycle", target)
			return NetworkProject
		case services[target] == nil:
			t.fail(name, "network_mode", "service:%s: no such service is started; name a service of the project", target)
			return NetworkProject
		}
		seen[name] = true
		mode := resolve(target, seen)
		if mode == NetworkNone {
			t.warn(name, "network_mode", "service:%s: %s has network_mode none, so this service gets a loopback of its own, not %s's", target, target, target)
		}
		return mode
	}
	// The service whose namespace each joins: the end of its chain.
	shares := map[string]string{}
	for _, name := range order {
		seen := map[string]bool{name: true}
		for target, ok := strings.CutPrefix(services[name].Network, "service:"); ok && services[target] != nil && !seen[target]; target, ok = strings.CutPrefix(services[target].Network, "service:") {
			seen[target] = true
			shares[name] = target
		}
	}
	for _, name := range order {
		s := services[name]
		s.Network = resolve(name, map[string]bool{})
		if s.Network == NetworkProject {
			s.NetworkShare = shares[name]
			if s.NetworkShare == "" {
				s.Networks = t.serviceNetworks(name)
			}
		}
		switch {
		case len(s.Ports) == 0:
		case s.Network == NetworkHost:
			t.portsOnHost(s)
		case s.Network == NetworkNone:
			t.warn(name, "ports", "not published: with network_mode none the service has no network to publish from")
		}
	}
	t.publishedTwice(order, services)
}

var localhostEntries = []HostEntry{
	{Host: "localhost", IP: "127.0.0.1"},
	{Host: "localhost", IP: "::1"},
	{Host: "ip6-localhost", IP: "::1"},
	{Host: "ip6-loopback", IP: "::1"},
}

// commonHosts are the /etc/hosts entries every service gets: localhost,
// then each started service under its name, container_name, hostname and
// network aliases, all on 127.0.0.1 as instances share the host network.
func (t *translator) commonHosts(services map[string]*Service) []HostEntry {
	hosts := slices.Clone(localhostEntries)
	seen := map[string]bool{"localhost": true, "ip6-localhost": true, "ip6-loopback": true}
	var replicas int
	var service string
	add := func(h string) {
		// A name with a slot template names each replica (web-{{.Task.Slot}}:
		// web-1, web-2); all are on 127.0.0.1 anyway.
		for _, n := range slots(replicas, h) {
			if x := expandSlot(h, n); x != "" && !seen[x] {
				seen[x] = true
				e := HostEntry{Host: x, IP: "127.0.0.1", Service: service}
				if x != h {
					e.Replica = n
				}
				hosts = append(hosts, e)
			}
		}
	}
	for _, name := range sortedKeys(services) {
		service = name
		sc := t.p.Services[name]
		replicas = services[name].Replicas
		add(name)
		add(sc.ContainerName)
		add(sc.Hostname)
		var aliases []string
		for _, n := range sc.Networks {
			if n != nil {
				aliases = append(aliases, n.Aliases...)
			}
		}
		slices.Sort(aliases)
		for _, a := range aliases {
			add(a)
		}
	}
	return hosts
}

// serviceHosts are the service's own entries, after the common ones
// (whose names are in common): link aliases that are not already there,
// and extra_hosts.
func (t *translator) serviceHosts(sc types.ServiceConfig, common map[string]bool) []HostEntry {
	var hosts []HostEntry
	seen := map[string]bool{}
	for _, l := range sc.Links {
		if target, alias, ok := strings.Cut(l, ":"); ok && !common[alias] && !seen[alias] {
			seen[alias] = true
			hosts = append(hosts, HostEntry{Host: alias, IP: "127.0.0.1", Service: target})
		}
	}
	for _, h := range sortedKeys(sc.ExtraHosts) {
		for _, ip := range sc.ExtraHosts[h] {
			e := HostEntry{Host: h, IP: ip}
			if ip == HostGateway {
				e.IP, e.Comment = HostGateway, HostGateway
			} else if net.ParseIP(strings.Trim(ip, "[]")) == nil {
				t.fail(sc.Name, "extra_hosts", "%s: %q is not an IP address", h, ip)
				continue
			} else {
				e.IP = strings.Trim(ip, "[]")
			}
			hosts = append(hosts, e)
		}
	}
	return hosts
}

// checkPorts refuses ports that are not well formed.
func (t *translator) checkPorts(sc types.ServiceConfig) {
	for _, p := range sc.Ports {
		if p.Target < 1 || p.Target > 65535 {
			t.fail(sc.Name, "ports", "target %d is not a port number; give 1 to 65535", p.Target)
		}
		if p.Published != "" && !validPortRange(p.Published) {
			t.fail(sc.Name, "ports", "published %q is not a port or a range of ports; give a number from 0 to 65535, or a range such as 8000-8010", p.Published)
		}
		switch p.Protocol {
		case "", "tcp", "udp", "sctp":
		default:
			t.fail(sc.Name, "ports", "protocol %q: use tcp, udp or sctp", p.Protocol)
		}
		if p.HostIP != "" && !validHostIP(p.HostIP) {
			t.fail(sc.Name, "ports", "host_ip %q is not an IP address", p.HostIP)
		}
	}
}

func validPortRange(s string) bool {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	if !isRange {
		return err1 == nil
	}
	b, err2 := strconv.ParseUint(hi, 10, 16)
	return err1 == nil && err2 == nil && a <= b
}

// portConflicts warns when two instances would listen on the same port
// of one network namespace: the host's, or a replica's on the project
// network, which services joining it (network_mode: service:NAME) share.
// A service with network_mode none is alone in its own.
func (t *translator) portConflicts(order []string, services map[string]*Service) {
	users := map[string][]string{} // "network port/proto" -> services
	var ports []string
	for _, name := range order {
		svc := services[name]
		if svc == nil || svc.Network == NetworkNone {
			continue
		}
		seen := map[string]bool{}
		for _, p := range t.p.Services[name].Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			// On the project network every replica has a namespace of
			// its own, shared only by services that join it.
			network := svc.Network
			if network == NetworkProject {
				network += ":" + cmp.Or(svc.NetworkShare, name)
			}
			port := network + " " + fmt.Sprintf("%d/%s", p.Target, proto)
			if seen[port] {
				continue
			}
			seen[port] = true
			if users[port] == nil {
				ports = append(ports, port)
			}
			users[port] = append(users[port], name)
		}
	}
	for _, key := range ports {
		network, port, _ := strings.Cut(key, " ")
		where := "the host's network"
		if network != NetworkHost {
			where = "the network namespace they share"
		}
		names := users[key]
		for _, name := range names {
			switch {
			case len(names) > 1:
				t.warn(name, "ports", "port %s is also used by %s: on %s only one can listen", port, strings.Join(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name }), ", "), where)
			case services[name].Replicas > 1 && network == NetworkHost:
				t.warn(name, "ports", "port %s: only one of the %d replicas can listen on it on %s", port, services[name].Replicas, where)
			}
		}
	}
}

// networkSetting reads the top-level x-sstack.network: "project" (the
// default) or "host" (every service on the host's network, for hosts
// where a stack network cannot be made).
func (t *translator) networkSetting() string {
	x, ok := t.p.Extensions["x-sstack"].(map[string]any)
	if !ok || x["network"] == nil {
		return NetworkProject
	}
	switch v := x["network"]; v {
	case NetworkProject, NetworkHost:
		return v.(string)
	default:
		t.fail("", "x-sstack.network", "%v: give project (the stack's own network, the default) or host (the host's network)", v)
		return NetworkProject
	}
}

// GatewayAt is entries with host-gateway written as addr.
func GatewayAt(entries []HostEntry, addr string) []HostEntry {
	out := slices.Clone(entries)
	for i := range out {
		if out[i].IP == HostGateway {
			out[i].IP = addr
		}
	}
	return out
}

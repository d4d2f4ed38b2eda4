package compose

// /etc/hosts entries and ports: instances share the host network, so
// every service is reachable on 127.0.0.1 under its names.

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

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
			if ip == "host-gateway" {
				// The host's own address, as seen from the host network.
				e.IP, e.Comment = "127.0.0.1", "host-gateway"
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

// checkPorts refuses ports that are not well formed: sstack does not map
// them (the instances share the host network), but a port the user
// mistyped should be said at once, not ignored.
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
		if p.HostIP != "" && net.ParseIP(strings.Trim(p.HostIP, "[]")) == nil {
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

// portConflicts warns when two instances would listen on the same port of
// the shared host network.
func (t *translator) portConflicts(order []string, services map[string]*Service) {
	users := map[string][]string{}
	var ports []string
	for _, name := range order {
		seen := map[string]bool{}
		for _, p := range t.p.Services[name].Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			port := fmt.Sprintf("%d/%s", p.Target, proto)
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
	for _, port := range ports {
		names := users[port]
		for _, name := range names {
			switch {
			case len(names) > 1:
				t.warn(name, "ports", "port %s is also used by %s: on the shared host network only one can listen", port, strings.Join(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name }), ", "))
			case services[name].Replicas > 1:
				t.warn(name, "ports", "port %s: only one of the %d replicas can listen on it on the shared host network", port, services[name].Replicas)
			}
		}
	}
}

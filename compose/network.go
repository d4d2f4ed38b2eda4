package compose

// /etc/hosts entries and ports: instances share the host network, so
// every service is reachable on 127.0.0.1 under its names.

import (
	"fmt"
	"net"
	"slices"
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
	add := func(h string) {
		// A name with a slot template names each replica (web-{{.Task.Slot}}:
		// web-1, web-2); all are on 127.0.0.1 anyway.
		for _, n := range slots(replicas, h) {
			if h := expandSlot(h, n); h != "" && !seen[h] {
				seen[h] = true
				hosts = append(hosts, HostEntry{Host: h, IP: "127.0.0.1"})
			}
		}
	}
	for _, name := range sortedKeys(services) {
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

// serviceHosts adds the service's own link aliases and extra_hosts to the
// common entries.
func (t *translator) serviceHosts(sc types.ServiceConfig, common []HostEntry) []HostEntry {
	hosts := slices.Clone(common)
	seen := map[string]bool{}
	for _, h := range hosts {
		seen[h.Host] = true
	}
	for _, l := range sc.Links {
		if _, alias, ok := strings.Cut(l, ":"); ok && !seen[alias] {
			seen[alias] = true
			hosts = append(hosts, HostEntry{Host: alias, IP: "127.0.0.1"})
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

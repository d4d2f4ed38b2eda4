package compose

// Compose networks: on the stack network (internal/stacknet) every
// replica has an address of its own, and a service reaches only the
// services that share one of its networks (docker compose's `default`
// when it names none); an internal network has no way out. All networks
// of a stack share slirp4netns's address space, StackSubnet.

import (
	"net/netip"
	"slices"
)

// StackSubnet is the address space of every network of a stack.
const StackSubnet = "10.0.2.0/24"

// Network is one of the project's networks that a service is on.
type Network struct {
	Name string `json:"name"`
	// Internal: no traffic leaves the stack from it (compose internal).
	Internal bool `json:"internal,omitempty"`
}

// ServiceNetwork is a service's place on one network.
type ServiceNetwork struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases,omitempty"`
	// IPv4Address is replica 1's address (compose ipv4_address).
	IPv4Address string `json:"ipv4_address,omitempty"`
}

// DefaultNetwork is the network of a service that names none.
const DefaultNetwork = "default"

// serviceNetworks are the networks of a service on the project network
// with a namespace of its own: those it names, sorted, or the default.
func (t *translator) serviceNetworks(name string) []ServiceNetwork {
	sc := t.p.Services[name]
	if len(sc.Networks) == 0 {
		return []ServiceNetwork{{Name: DefaultNetwork}}
	}
	var out []ServiceNetwork
	for _, n := range sortedKeys(sc.Networks) {
		sn := ServiceNetwork{Name: n}
		if c := sc.Networks[n]; c != nil {
			sn.Aliases = slices.Clone(c.Aliases)
			if c.Ipv4Address != "" {
				// Not an error: compose files written for Docker give
				// addresses of their own subnets; names still work.
				if why := replicaAddress(c.Ipv4Address); why != "" {
					t.warn(name, "networks."+n+".ipv4_address", "%s is not honoured: %s; replica 1 gets an address of its own, and its names resolve to it", c.Ipv4Address, why)
				} else {
					sn.IPv4Address = c.Ipv4Address
				}
			}
			for key, set := range map[string]bool{
				"ipv6_address": c.Ipv6Address != "", "mac_address": c.MacAddress != "", "link_local_ips": len(c.LinkLocalIPs) > 0,
				"driver_opts": len(c.DriverOpts) > 0, "interface_name": c.InterfaceName != "", "priority": c.Priority != 0, "gw_priority": c.GatewayPriority != 0,
			} {
				if set {
					t.warn(name, "networks."+n+"."+key, "not honoured: a replica has one interface, eth0, with one IPv4 address of "+StackSubnet)
				}
			}
		}
		out = append(out, sn)
	}
	return out
}

// replicaAddress says why addr cannot be a replica's address, or "".
func replicaAddress(addr string) string {
	ip, err := netip.ParseAddr(addr)
	subnet := netip.MustParsePrefix(StackSubnet)
	switch {
	case err != nil || !ip.Is4():
		return "not an IPv4 address"
	case !subnet.Contains(ip):
		return "outside " + StackSubnet + ", the address space every network of a stack shares (slirp4netns's); give an address from 10.0.2.4 to 10.0.2.254"
	case slices.Contains([]byte{0, 1, 2, 3, 100, 255}, ip.As4()[3]):
		return "reserved on the stack network (10.0.2.2 is the gateway, .3 slirp4netns's DNS forwarder, .100 the stack's own); give an address from 10.0.2.4 to 10.0.2.254 but those"
	}
	return ""
}

// projectNetworks are the networks the services on the project network
// are on, checked: an external network cannot be joined (a stack has no
// one else's networks: it has its own namespace); what sstack cannot
// honour is warned about.
func (t *translator) projectNetworks(order []string, services map[string]*Service) []Network {
	used := map[string]bool{}
	for _, name := range order {
		for _, n := range services[name].Networks {
			used[n.Name] = true
		}
	}
	var out []Network
	for _, name := range sortedKeys(used) {
		c, declared := t.p.Networks[name]
		if !declared && name != DefaultNetwork {
			t.fail("", "networks", "%s: no such network; declare it under the top-level networks:", name)
			continue
		}
		key := "networks." + name
		if c.External {
			t.fail("", key+".external", "external networks cannot be joined: the stack's networks are its own, inside its own namespace, and no other stack's or Docker's are there; remove external: true to give the stack a network of that name")
		}
		if c.Driver != "" && c.Driver != "bridge" {
			t.warn("", key+".driver", "%q is not used: every network of a stack is routed by the stack's own namespace", c.Driver)
		}
		if len(c.DriverOpts) > 0 {
			t.warn("", key+".driver_opts", "not used: every network of a stack is routed by the stack's own namespace")
		}
		for _, pool := range c.Ipam.Config {
			if pool != nil && pool.Subnet != "" && pool.Subnet != StackSubnet {
				t.warn("", key+".ipam", "subnet %s is not honoured: every network of a stack shares %s (slirp4netns's)", pool.Subnet, StackSubnet)
			}
		}
		if c.EnableIPv6 != nil && *c.EnableIPv6 {
			t.warn("", key+".enable_ipv6", "not honoured: the stack network is IPv4 only")
		}
		out = append(out, Network{Name: name, Internal: c.Internal})
	}
	// Ports of a service with no way out answer nothing (Docker
	// publishes none on internal networks).
	internal := map[string]bool{}
	for _, n := range out {
		internal[n.Name] = n.Internal
	}
	for _, name := range order {
		s := services[name]
		if len(s.Ports) > 0 && len(s.Networks) > 0 && !slices.ContainsFunc(s.Networks, func(n ServiceNetwork) bool { return !internal[n.Name] }) {
			t.warn(name, "ports", "not reachable: the service is on internal networks only, from which no traffic leaves the stack")
		}
	}
	// Two services asking for one address.
	owner := map[string]string{}
	for _, name := range order {
		for _, n := range services[name].Networks {
			if n.IPv4Address == "" {
				continue
			}
			if other, taken := owner[n.IPv4Address]; taken && other != name {
				t.fail(name, "networks."+n.Name+".ipv4_address", "%s is also %s's; give each service an address of its own", n.IPv4Address, other)
			}
			owner[n.IPv4Address] = name
		}
	}
	return out
}

// NetworkNames are the names of the networks s is on.
func (s *Service) NetworkNames() []string {
	var out []string
	for _, n := range s.Networks {
		out = append(out, n.Name)
	}
	return out
}

// IPv4Address is the address s asks for its replica 1, if any.
func (s *Service) IPv4Address() string {
	for _, n := range s.Networks {
		if n.IPv4Address != "" {
			return n.IPv4Address
		}
	}
	return ""
}

// Network is the project network of that name, if a service is on it.
func (p *Plan) Network(name string) *Network {
	for i := range p.Networks {
		if p.Networks[i].Name == name {
			return &p.Networks[i]
		}
	}
	return nil
}

package compose

// ports: on the project network (the default) each is published from the
// host into the stack's namespace, as docker compose does; on the host's
// network a service listens on the host's ports itself and the published
// side cannot differ. The plan keeps them as written, so that `up` can
// check, before anything starts, that the host ports are free.

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Port is one entry of compose `ports:`.
type Port struct {
	Target   int    `json:"target"`   // the port the service listens on
	Protocol string `json:"protocol"` // "tcp" or "udp"
	// Published is the host port or range as written ("" : one the host
	// chooses); HostIP the host address ("": all of them).
	Published string `json:"published,omitempty"`
	HostIP    string `json:"host_ip,omitempty"`
}

func (p Port) String() string { return strconv.Itoa(p.Target) + "/" + p.Protocol }

// Published ports: the host port range written ([0,0]: any free port).
func (p Port) HostPorts() (lo, hi int) {
	if p.Published == "" {
		return 0, 0
	}
	a, b, isRange := strings.Cut(p.Published, "-")
	lo, _ = strconv.Atoi(a)
	hi = lo
	if isRange {
		hi, _ = strconv.Atoi(b)
	}
	return lo, hi
}

// HostAddr is the host address a published port is bound on.
func (p Port) HostAddr() string {
	if ip := strings.Trim(p.HostIP, "[]"); ip != "" && ip != "::" {
		return ip
	}
	return "0.0.0.0"
}

// Written is the entry as a compose file writes it ([HOST_IP:][PUBLISHED:]TARGET/PROTO).
func (p Port) Written() string {
	s := strconv.Itoa(p.Target) + "/" + p.Protocol
	if p.HostIP != "" {
		return p.HostIP + ":" + p.Published + ":" + s
	}
	if p.Published != "" {
		s = p.Published + ":" + s
	}
	return s
}

// ports records the service's ports, each distinct entry once.
func (t *translator) ports(sc types.ServiceConfig, s *Service) {
	seen := map[Port]bool{}
	for _, p := range sc.Ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		port := Port{Target: int(p.Target), Protocol: proto, Published: p.Published, HostIP: p.HostIP}
		if port.Target > 0 && !seen[port] {
			seen[port] = true
			s.Ports = append(s.Ports, port)
		}
	}
}

// portsOnHost warns about what the host's network cannot honour: a
// published port other than the target, a host address.
func (t *translator) portsOnHost(s *Service) {
	var remapped, restricted []string
	for _, p := range s.Ports {
		if p.Published != "" && p.Published != strconv.Itoa(p.Target) {
			remapped = append(remapped, fmt.Sprintf("%s->%d", p.Published, p.Target))
		}
		if ip := strings.Trim(p.HostIP, "[]"); ip != "" && ip != "0.0.0.0" && ip != "::" {
			restricted = append(restricted, p.Written())
		}
	}
	if len(remapped) > 0 {
		t.warn(s.Name, "ports", "%s not remapped: on the host's network (network_mode: host) the service listens on its own ports of the host", strings.Join(remapped, ", "))
	}
	if len(restricted) > 0 {
		t.warn(s.Name, "ports", "%s: the host address is not honoured on the host's network (network_mode: host): the service is reachable on every address it listens on itself", strings.Join(restricted, ", "))
	}
}

// publishedTwice refuses two entries of the project network that publish
// one host port on overlapping addresses: the second could not be bound.
func (t *translator) publishedTwice(order []string, services map[string]*Service) {
	type hostPort struct {
		proto string
		port  int
	}
	owners := map[hostPort][]string{} // -> "service@addr"
	for _, name := range order {
		s := services[name]
		if s.Network != NetworkProject {
			continue
		}
		for _, p := range s.Ports {
			lo, hi := p.HostPorts()
			if lo == 0 || lo != hi {
				continue // chosen among free ports
			}
			k := hostPort{p.Protocol, lo}
			addr := p.HostAddr()
			for _, o := range owners[k] {
				svc, oaddr, _ := strings.Cut(o, "@")
				if oaddr == addr || oaddr == "0.0.0.0" || addr == "0.0.0.0" {
					who := "service " + svc
					if svc == name {
						who = "another of its entries"
					}
					t.fail(name, "ports", "host port %s:%d/%s is also published by %s; publish each host port once", addr, lo, p.Protocol, who)
				}
			}
			owners[k] = append(owners[k], name+"@"+addr)
		}
	}
}

func validHostIP(ip string) bool { return net.ParseIP(strings.Trim(ip, "[]")) != nil }

// ParsePort reads one short-syntax port ([HOST_IP:][PUBLISHED:]TARGET[/PROTO]),
// as run -p takes it; a range of targets gives one Port each.
func ParsePort(s string) ([]Port, error) {
	cfgs, err := types.ParsePortConfig(s)
	if err != nil {
		return nil, err
	}
	out := make([]Port, 0, len(cfgs))
	for _, c := range cfgs {
		proto := strings.ToLower(c.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, Port{Target: int(c.Target), Protocol: proto, Published: c.Published, HostIP: c.HostIP})
	}
	return out, nil
}

package compose

// ports: instances share the host network, so a service listens on the
// host's ports itself. The plan keeps them so that `up` can check, before
// anything starts, that they are free.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Port is one port a service listens on, from compose `ports:`.
type Port struct {
	Target   int    `json:"target"`   // the port the service listens on (on the host: there is no mapping)
	Protocol string `json:"protocol"` // "tcp" or "udp"
	// Published and HostIP are as written; neither is honoured.
	Published string `json:"published,omitempty"`
	HostIP    string `json:"host_ip,omitempty"`
}

func (p Port) String() string { return strconv.Itoa(p.Target) + "/" + p.Protocol }

// ports records the service's ports and warns about host_ip, which the
// shared host network cannot honour (the other ports warnings are given
// with the keys sstack does not honour).
func (t *translator) ports(sc types.ServiceConfig, s *Service) {
	var restricted []string
	seen := map[Port]bool{}
	for _, p := range sc.Ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		port := Port{Target: int(p.Target), Protocol: proto, Published: p.Published, HostIP: p.HostIP}
		if ip := strings.Trim(p.HostIP, "[]"); ip != "" && ip != "0.0.0.0" && ip != "::" {
			restricted = append(restricted, fmt.Sprintf("%s:%s:%d", p.HostIP, p.Published, p.Target))
		}
		key := Port{Target: port.Target, Protocol: port.Protocol}
		if port.Target > 0 && !seen[key] {
			seen[key] = true
			s.Ports = append(s.Ports, port)
		}
	}
	if len(restricted) > 0 {
		t.warn(sc.Name, "ports", "%s: the host address is not honoured: instances share the host network, so the service is reachable on every address it listens on itself; configure the service to listen on that address if it must not be reachable on the others",
			strings.Join(restricted, ", "))
	}
}

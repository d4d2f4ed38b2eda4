package compose

import "strconv"

// PlacedHosts is s's /etc/hosts when the replicas run on several nodes
// (a Slurm allocation): a name that reaches a service goes to the node
// of each of its replicas (one line per node, in replica order), a
// replica's own name (SERVICE-N, or a slot-templated name) to its node.
// addrs gives the address of each replica of a service (index r-1), ""
// for one not placed: a name of no placed replica stays on 127.0.0.1.
func (p *Plan) PlacedHosts(s *Service, addrs func(service string) []string) []HostEntry {
	var out []HostEntry
	seen := map[string]bool{}
	add := func(e HostEntry) {
		if k := e.Host + " " + e.IP; !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	for _, e := range p.HostsOf(s) {
		svc := p.Service(e.Service)
		if svc == nil || e.Comment != "" {
			add(e)
			continue
		}
		at := addrs(svc.Name)
		if e.Replica > 0 {
			if e.Replica <= len(at) && at[e.Replica-1] != "" {
				e.IP = at[e.Replica-1]
			}
			add(e)
			continue
		}
		placed := false
		for _, a := range at {
			if a != "" {
				placed = true
				add(HostEntry{Host: e.Host, IP: a, Service: e.Service})
			}
		}
		if !placed {
			add(e)
		}
		// Each replica by its SERVICE-N name, as docker compose's
		// containers are reachable by theirs.
		if e.Host == svc.Name {
			for i, a := range at {
				if a != "" {
					add(HostEntry{Host: svc.Name + "-" + strconv.Itoa(i+1), IP: a, Service: svc.Name, Replica: i + 1})
				}
			}
		}
	}
	return out
}

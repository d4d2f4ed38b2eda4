package compose

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Print writes the plan as YAML for `sstack config`: what will run, with
// every default and path resolved. Secret values are never printed.
func (p *Plan) Print(w io.Writer) error {
	b := bufio.NewWriter(w)
	e := &emitter{w: b}
	e.scalar(0, "project", p.Project)
	e.scalar(0, "working_dir", p.WorkingDir)
	e.scalar(0, "state_dir", p.StateDir)
	if len(p.Warnings) > 0 {
		e.line(0, "warnings:")
		for _, w := range p.Warnings {
			e.line(1, "- "+quote(w.String()))
		}
	}
	e.hosts(0, "hosts", p.Hosts)
	e.nodeLabels(p.NodeLabels)
	e.line(0, "services:")
	for _, s := range p.Services {
		e.service(s)
	}
	if len(p.Networks) > 0 {
		e.line(0, "networks:")
		for _, n := range p.Networks {
			e.line(1, fmt.Sprintf("%s: {internal: %t}", quote(n.Name), n.Internal))
		}
	}
	return b.Flush()
}

type emitter struct{ w *bufio.Writer }

func (e *emitter) line(indent int, s string) {
	e.w.WriteString(strings.Repeat("  ", indent) + s + "\n")
}

func (e *emitter) scalar(indent int, key, value string) {
	e.line(indent, key+": "+quote(value))
}

func (e *emitter) list(indent int, key string, values []string) {
	if values == nil {
		return
	}
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = quote(v)
	}
	e.line(indent, key+": ["+strings.Join(q, ", ")+"]")
}

func (e *emitter) service(s Service) {
	e.line(1, quote(s.Name)+":")
	e.line(2, "replicas: "+strconv.Itoa(s.Replicas))
	e.placement(s.Placement)
	if s.ContainerName != "" {
		e.scalar(2, "container_name", s.ContainerName)
	}
	e.scalar(2, "image", s.Image)
	e.scalar(2, "image_ref", s.ImageRef)
	e.imageSource(s.ImageSource)
	e.list(2, "entrypoint", s.Entrypoint)
	e.list(2, "command", s.Command)
	if len(s.Environment) > 0 {
		e.line(2, "environment:")
		for _, kv := range s.Environment {
			e.line(3, "- "+quote(kv))
		}
	}
	if s.WorkingDir != "" {
		e.scalar(2, "working_dir", s.WorkingDir)
	}
	if s.ReadOnly {
		e.line(2, "read_only: true")
	}
	if s.Hostname != "" {
		e.scalar(2, "hostname", s.Hostname)
	}
	if s.Tty {
		e.line(2, "tty: true")
	}
	if s.HostIPC {
		e.line(2, "host_ipc: true")
	}
	if len(s.Ulimits) > 0 {
		e.line(2, "ulimits:")
		for _, u := range s.Ulimits {
			e.line(3, fmt.Sprintf("%s: {soft: %d, hard: %d}", u.Name, u.Soft, u.Hard))
		}
	}
	if len(s.Mounts) > 0 {
		e.line(2, "mounts:")
		for _, m := range s.Mounts {
			e.line(3, "- kind: "+string(m.Kind))
			if m.Source != "" {
				e.scalar(4, "source", m.Source)
			}
			e.scalar(4, "target", m.Target)
			if m.Volume != "" {
				e.scalar(4, "volume", m.Volume)
			}
			for _, f := range []struct {
				name string
				set  bool
			}{{"read_only", m.ReadOnly}, {"seed", m.Seed}, {"create_host_path", m.CreateHostPath}, {"generated", m.Content != nil}} {
				if f.set {
					e.line(4, f.name+": true")
				}
			}
		}
	}
	e.hosts(2, "extra_hosts", s.ExtraHosts)
	if len(s.DependsOn) > 0 {
		e.line(2, "depends_on:")
		for _, d := range s.DependsOn {
			e.line(3, fmt.Sprintf("%s: {condition: %s, required: %t, restart: %t}", quote(d.Service), quote(d.Condition), d.Required, d.Restart))
		}
	}
	e.line(2, "network_mode: "+s.Network)
	if s.NetworkShare != "" {
		e.scalar(2, "network_share", s.NetworkShare)
	}
	if len(s.Networks) > 0 {
		e.line(2, "networks:")
		for _, n := range s.Networks {
			var attrs []string
			if len(n.Aliases) > 0 {
				q := make([]string, len(n.Aliases))
				for i, a := range n.Aliases {
					q[i] = quote(a)
				}
				attrs = append(attrs, "aliases: ["+strings.Join(q, ", ")+"]")
			}
			if n.IPv4Address != "" {
				attrs = append(attrs, "ipv4_address: "+quote(n.IPv4Address))
			}
			e.line(3, quote(n.Name)+": {"+strings.Join(attrs, ", ")+"}")
		}
	}
	if len(s.Ports) > 0 {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = quote(p.Written())
		}
		e.line(2, "ports: ["+strings.Join(ports, ", ")+"]")
	}
	e.scalar(2, "stop_signal", s.StopSignal)
	e.line(2, "stop_grace_period: "+dur(s.StopGracePeriod))
	r := s.Restart
	e.line(2, fmt.Sprintf("restart: {source: %s, condition: %s, max_attempts: %d, delay: %s, window: %s}",
		quote(r.Source), quote(r.Condition), r.MaxAttempts, dur(r.Delay), dur(r.Window)))
	if h := s.Healthcheck; h != nil {
		e.line(2, "healthcheck:")
		e.list(3, "test", h.Test)
		e.line(3, "interval: "+dur(h.Interval))
		e.line(3, "timeout: "+dur(h.Timeout))
		e.line(3, "retries: "+strconv.Itoa(h.Retries))
		e.line(3, "start_period: "+dur(h.StartPeriod))
		e.line(3, "start_interval: "+dur(h.StartInterval))
	}
	e.resources(s.Resources)
	e.gpu(s.GPU)
}

// hosts prints /etc/hosts lines as a list under key.
func (e *emitter) hosts(indent int, key string, hosts []HostEntry) {
	if len(hosts) == 0 {
		return
	}
	e.line(indent, key+":")
	for _, h := range hosts {
		l := "- " + quote(h.IP+" "+h.Host)
		if h.Comment != "" {
			l += " # " + h.Comment
		}
		e.line(indent+1, l)
	}
}

// quote makes s a YAML double-quoted scalar; Go's escapes are a subset of
// YAML's.
func quote(s string) string { return strconv.Quote(s) }

func dur(d time.Duration) string { return d.String() }

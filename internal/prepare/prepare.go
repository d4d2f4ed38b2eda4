// Package prepare owns what the host and Apptainer are given for a
// project's replicas before they start: host ports checked free, hosts
// files, bind sources and named volumes (seeded from the image), and the
// instance and process specs of a replica. It runs nothing and keeps no
// state; the engine calls it at up and converge, the service actors for a
// replica added later, and `sstack run` for a one-off.
package prepare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"sstack/compose"
	"sstack/internal/statedir"
	"sstack/singularity"
)

// Plan checks that the services' ports are free (CheckPorts) and
// creates the project's state directory before anything starts: one
// hosts file per service (every service name on 127.0.0.1, since instances
// share the host network, plus extra_hosts), the named volume directories
// (seeded from the image the first time) and missing bind sources that
// compose would create. It returns the hosts file of each service.
// hostsOf gives a service's /etc/hosts lines (nil: plan.HostsOf, all on
// this host). rt seeds the volumes. Only the services selected get their
// mounts prepared and ports checked; the others' replicas prepare theirs
// when they start.
func Plan(ctx context.Context, plan *compose.Plan, rt singularity.Runtime, hostsOf func(*compose.Service) ([]compose.HostEntry, error), selected []string) (map[string]string, error) {
	only := &compose.Plan{}
	for _, svc := range plan.Services {
		if slices.Contains(selected, svc.Name) {
			only.Services = append(only.Services, svc)
		}
	}
	if err := CheckPorts(only); err != nil {
		return nil, err
	}
	hosts, err := HostsFiles(plan, hostsOf)
	if err != nil {
		return nil, err
	}
	seeded := map[string]bool{}
	for i := range plan.Services {
		svc := &plan.Services[i]
		if !slices.Contains(selected, svc.Name) {
			continue // its replicas prepare their mounts when they start
		}
		if !svc.HasSlotTemplate() {
			if err := Mounts(ctx, svc, rt, "", seeded); err != nil {
				return nil, err
			}
			continue
		}
		// {{.Task.Slot}} in a path: each replica has its own (a replica
		// added by scale prepares its own when it starts).
		for r := 1; r <= svc.Replicas; r++ {
			if err := Mounts(ctx, svc.ForReplica(r), rt, compose.InstanceName(plan.Project, svc.Name, r), seeded); err != nil {
				return nil, err
			}
		}
	}
	return hosts, nil
}

// HostsFiles writes the /etc/hosts file of every service and returns
// their paths. A file is rewritten in place, so that the instances that
// bind it see a name added later (up adding a service to a running stack).
func HostsFiles(plan *compose.Plan, hostsOf func(*compose.Service) ([]compose.HostEntry, error)) (map[string]string, error) {
	hostsDir := statedir.Hosts(plan.StateDir)
	if err := statedir.Private(hostsDir); err != nil {
		return nil, err
	}
	hosts := map[string]string{}
	for i := range plan.Services {
		svc := &plan.Services[i]
		path := filepath.Join(hostsDir, svc.Name)
		entries, err := hostsOf(svc)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(HostsFile(entries)), 0o600); err != nil {
			return nil, fmt.Errorf("service %q: hosts file: %w", svc.Name, err)
		}
		hosts[svc.Name] = path
	}
	return hosts, nil
}

// CheckPorts tries to listen on every port of the services on the host's
// network (on all addresses, as most services do): a port another program
// holds would make the service fail once started. Every port taken is
// reported, before anything starts. (Ports published from the stack
// network are checked as they are published.)
func CheckPorts(plan *compose.Plan) error {
	var errs []error
	checked := map[compose.Port]bool{}
	for _, svc := range plan.Services {
		if svc.Network != compose.NetworkHost {
			continue
		}
		for _, p := range svc.Ports {
			key := compose.Port{Target: p.Target, Protocol: p.Protocol}
			if checked[key] {
				continue
			}
			checked[key] = true
			if msg := portProblem(p); msg != "" {
				errs = append(errs, &compose.Error{Service: svc.Name, Key: "ports", Message: msg})
			}
		}
	}
	return errors.Join(errs...)
}

// portProblem is why the service could not listen on p, or "".
func portProblem(p compose.Port) string {
	addr := ":" + strconv.Itoa(p.Target)
	var err error
	switch p.Protocol {
	case "tcp":
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			l.Close()
		}
	case "udp":
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			c.Close()
		}
	default:
		return "" // sctp: nothing to try it with
	}
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("port %s is already in use on this host, and the service is on the host's network (network_mode: host): it could not listen on it; stop the program that holds it (ss -lntup shows which), or make the service listen on another port", p)
	case errors.Is(err, syscall.EACCES):
		return fmt.Sprintf("port %s: only root may listen on it on this host (ports below net.ipv4.ip_unprivileged_port_start), and the service is on the host's network (network_mode: host): make the service listen on a port of 1024 or above, or run it on the project network", p)
	}
	return fmt.Sprintf("port %s cannot be listened on on this host: %v", p, err)
}

// Mounts creates what the mounts of one service (or replica) need
// before its instance starts: named volume directories (seeded from the
// image the first time), files of secrets and configs given by value, and
// missing bind sources that compose would create. rt seeds the volumes,
// for instance (where it runs; "" where the volume is not one instance's).
// seeded records the volumes done, so that one shared by several services
// is seeded once.
func Mounts(ctx context.Context, svc *compose.Service, rt singularity.Runtime, instance string, seeded map[string]bool) error {
	for _, m := range svc.Mounts {
		switch {
		case m.Kind == compose.MountVolume:
			if seeded[m.Source] {
				continue
			}
			seeded[m.Source] = true
			if err := prepareVolume(ctx, svc, m, rt, instance); err != nil {
				return err
			}
		case m.Content != nil:
			// secrets and configs given by value: a private file to bind
			if err := os.MkdirAll(filepath.Dir(m.Source), 0o700); err != nil {
				return fmt.Errorf("service %q: %s %s: %w", svc.Name, m.Kind, m.Target, err)
			}
			if err := os.WriteFile(m.Source, []byte(*m.Content), 0o600); err != nil {
				return fmt.Errorf("service %q: %s %s: %w", svc.Name, m.Kind, m.Target, err)
			}
		case m.Kind == compose.MountBind && m.CreateHostPath:
			if _, err := os.Stat(m.Source); os.IsNotExist(err) {
				if err := os.MkdirAll(m.Source, 0o755); err != nil {
					return fmt.Errorf("service %q: volumes: creating bind source %s: %w", svc.Name, m.Source, err)
				}
			}
		}
	}
	return nil
}

func prepareVolume(ctx context.Context, svc *compose.Service, m compose.Mount, rt singularity.Runtime, instance string) error {
	if _, err := os.Stat(m.Source); err == nil {
		return nil // an existing volume keeps its content
	}
	// Seed into a temporary sibling and rename, so an interrupted seed is
	// not taken for a filled volume next time.
	tmp := m.Source + ".seeding"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("service %q: volume %q: %w", svc.Name, m.Volume, err)
	}
	if m.Seed {
		if err := rt.SeedVolume(ctx, singularity.SeedSpec{Instance: instance, Image: svc.Image, Path: m.Target, HostDir: tmp}); err != nil {
			_ = os.RemoveAll(tmp)
			return fmt.Errorf("service %q: volume %q: filling it from the image at %s: %w", svc.Name, m.Volume, m.Target, err)
		}
	}
	if err := os.Rename(tmp, m.Source); err != nil {
		return fmt.Errorf("service %q: volume %q: %w", svc.Name, m.Volume, err)
	}
	return nil
}

// HostsFile renders /etc/hosts lines.
func HostsFile(entries []compose.HostEntry) string {
	var b strings.Builder
	b.WriteString("# generated by sstack\n")
	for _, e := range entries {
		b.WriteString(e.IP + "\t" + e.Host + "\n")
	}
	return b.String()
}

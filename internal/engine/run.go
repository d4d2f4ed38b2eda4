package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/images"
	"sstack/internal/prepare"
	"sstack/internal/projects"
	"sstack/internal/stacknet"
	"sstack/internal/statedir"
	"sstack/singularity"
)

// RunOptions is a one-off run of a service (sstack run).
type RunOptions struct {
	Plan    *compose.Plan
	Runtime *singularity.Apptainer
	Service string
	// Command replaces the service's command; Entrypoint, when not nil,
	// its entrypoint.
	Command    []string
	Entrypoint []string
	Env        []string // KEY=VALUE, after the service's
	WorkDir    string
	Binds      []compose.Mount
	// Ports are published from the run's own network (--service-ports,
	// -p); refused when it joins a running stack's network.
	Ports []compose.Port
	Name  string // instance name suffix; "" picks run-<random>
}

// OneOff is a started one-off instance: Process says how to run its
// command attached, Close removes the instance and anything made for it.
type OneOff struct {
	Instance string
	Process  singularity.ProcessSpec
	close    []func()
	stop     func() // stops the instance (its processes end)
	once     sync.Once
}

// Stop stops the one-off's instance, ending its command: stop_signal,
// then SIGKILL after the grace period.
func (r *OneOff) Stop() {
	if r.stop != nil {
		r.stop()
	}
}

// Close removes the one-off's instance, its network and files; once.
func (r *OneOff) Close() {
	r.once.Do(func() {
		for i := len(r.close) - 1; i >= 0; i-- {
			r.close[i]()
		}
	})
}

// StartOneOff starts the instance of a one-off run: the service's
// configuration with the run's changes, on the running stack's network
// when the project runs one, else on a network of its own. It never
// restarts by policy: nothing supervises it but the caller.
func StartOneOff(ctx context.Context, opts RunOptions) (_ *OneOff, err error) {
	plan := opts.Plan
	base := plan.Service(opts.Service)
	if base == nil {
		return nil, &api.NoServiceError{Name: opts.Service, Known: plan.ServiceNames()}
	}
	svc := base.ForReplica(1)
	if opts.Command != nil {
		svc.Command = opts.Command
	}
	if opts.Entrypoint != nil {
		svc.Entrypoint, svc.Command = opts.Entrypoint, opts.Command
	}
	svc.Environment = append(append([]string(nil), svc.Environment...), opts.Env...)
	if opts.WorkDir != "" {
		svc.WorkingDir = opts.WorkDir
	}
	svc.Mounts = append(append([]compose.Mount(nil), svc.Mounts...), opts.Binds...)
	name := opts.Name
	if name == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name = "run-" + hex.EncodeToString(b)
	}
	instance := compose.OneOffInstanceName(plan.Project, svc.Name, name)
	if err := singularity.ValidateName(instance); err != nil {
		return nil, fmt.Errorf("--name %q: %w", opts.Name, err)
	}
	if err := images.Check(plan, []string{svc.Name}); err != nil {
		return nil, err
	}
	dir := filepath.Join(plan.StateDir, name)
	if err := statedir.Private(dir); err != nil {
		return nil, err
	}
	r := &OneOff{Instance: instance}
	r.close = append(r.close, func() { _ = os.RemoveAll(dir) })
	defer func() {
		if err != nil {
			r.Close()
		}
	}()

	nw := &networks{of: map[string]singularity.Network{}}
	// Across a Slurm allocation the stack's services are on their
	// nodes' networks, and the hosts file the supervisor keeps for the
	// service names their nodes: the one-off takes both.
	hostsFile, err := placedHosts(plan, svc)
	if err != nil {
		return nil, err
	}
	switch {
	case hostsFile != nil:
	case svc.Network == compose.NetworkNone:
		nw.of[svc.Name] = singularity.Network{None: true}
	case svc.Network == compose.NetworkProject:
		if err := r.network(ctx, nw, plan, svc, dir, name, opts.Ports); err != nil {
			return nil, err
		}
	}
	if hostsFile == nil {
		nw.gateway = stacknet.HostAddress()
		entries, err := nw.hosts(plan, svc, plan.HostsOf(svc))
		if err != nil {
			return nil, err
		}
		hostsFile = []byte(prepare.HostsFile(entries))
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, hostsFile, 0o600); err != nil {
		return nil, err
	}
	resolv, err := nw.resolvConf(dir)
	if err != nil {
		return nil, err
	}
	rt := opts.Runtime
	if err := prepare.Mounts(ctx, svc, rt, instance, map[string]bool{}); err != nil {
		return nil, err
	}
	runscript := false
	if svc.Entrypoint == nil {
		if runscript, err = rt.HasRunscript(ctx, svc.Image); err != nil {
			return nil, err
		}
	}
	spec := prepare.Spec{Service: svc, Instance: instance, HostsFile: hosts,
		Net: nw.of[svc.Name], ResolvConf: resolv, HasRunscript: runscript}
	ispec, pspec := spec.InstanceSpec(), spec.ProcessSpec()
	if err := statedir.Record(plan.StateDir, instance); err != nil {
		return nil, err
	}
	if err := rt.StartInstance(ctx, ispec); err != nil {
		statedir.Forget(plan.StateDir, instance)
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	r.stop = func() {
		stop, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = rt.StopInstance(stop, instance, svc.StopSignal, svc.StopGracePeriod)
	}
	r.close = append(r.close, func() {
		stop, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = rt.StopInstance(stop, instance, "SIGKILL", 0)
		statedir.Forget(plan.StateDir, instance)
	})
	r.Process = pspec
	return r, nil
}

// SplitEntrypoint splits run's --entrypoint as docker compose does (on
// white space).
func SplitEntrypoint(s string) []string { return strings.Fields(s) }

// network gives the one-off's service the running stack's network, or
// one of its own (with ports) when no stack runs, as docker compose run
// creates the project's network.
func (r *OneOff) network(ctx context.Context, nw *networks, plan *compose.Plan, svc *compose.Service, dir, name string, ports []compose.Port) error {
	if running, err := stacknet.Load(plan.StateDir); err == nil && running.Alive() {
		if len(ports) > 0 {
			return fmt.Errorf("service %q: run with published ports while the stack runs is not supported: its ports belong to the stack's network; run without --service-ports/-p", svc.Name)
		}
		// In the stack's namespace, which routes to every replica: the
		// replicas' addresses and the stack's DNS server are reachable.
		nw.of[svc.Name], nw.named = running.Network(), true
		return nil
	}
	var err error
	if nw.stack, err = stacknet.Start(ctx, dir, plan.Project+"."+name); err != nil {
		return fmt.Errorf("the run's own network cannot be made on this host: %v; %s", err, hostNetworkHint)
	}
	r.close = append(r.close, nw.stack.Close)
	nw.of[svc.Name] = nw.stack.Network()
	one := compose.Plan{Project: plan.Project, Services: []compose.Service{{Name: svc.Name, Network: compose.NetworkProject, Ports: ports}}}
	return nw.publish(&one)
}

// placedHosts is, inside a Slurm allocation where the project's stack
// runs, the hosts file its supervisor keeps for svc (every name on its
// replicas' nodes); nil otherwise.
func placedHosts(plan *compose.Plan, svc *compose.Service) ([]byte, error) {
	if _, ok := os.LookupEnv("SLURM_JOB_ID"); !ok || svc.Network != compose.NetworkProject || !projects.Locked(plan.StateDir) {
		return nil, nil
	}
	if _, err := stacknet.Load(plan.StateDir); err == nil {
		return nil, nil // the stack runs on one host, with its own network
	}
	b, err := os.ReadFile(filepath.Join(statedir.Hosts(plan.StateDir), svc.Name))
	if os.IsNotExist(err) {
		return nil, nil
	}
	return b, err
}

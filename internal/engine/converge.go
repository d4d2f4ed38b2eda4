package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/prepare"
	"sstack/singularity"
)

// converged is what converge keeps between two ups: what each service's
// running replicas were made from, and the runscripts of their images.
type converged struct {
	hashes     map[string]string
	runscripts map[string]bool
}

// hashesOf are the configuration hashes of the plan's services.
func hashesOf(plan *compose.Plan) map[string]string {
	out := map[string]string{}
	for i := range plan.Services {
		out[plan.Services[i].Name] = plan.Services[i].ConfigHash()
	}
	return out
}

// converge brings the running stack to the compose file the client loaded
// (up on a running project), as docker compose does: services whose
// configuration changed are recreated (following deploy.update_config),
// new ones created, unchanged ones left running, and services the file no
// longer has left running with a warning (removed with --remove-orphans).
// A file that fails a check changes nothing.
func (s *Supervisor) converge(ctx context.Context, opts api.UpOptions) error {
	if err := s.awaitStart(ctx); err != nil {
		return err
	}
	s.converging.Lock()
	defer s.converging.Unlock()
	// The client shows the events up to this one.
	defer s.sys.Announce(api.Event{Kind: api.EventConverged})
	var lo compose.Options
	if err := json.Unmarshal(opts.Project, &lo); err != nil {
		return fmt.Errorf("the compose file's load options: %w", err)
	}
	lo.Services = opts.Services
	plan, err := compose.Load(ctx, lo)
	if err != nil {
		return err
	}
	cur := s.plan()
	if plan.StateDir != cur.StateDir {
		return fmt.Errorf("the compose file is of project %q (state %s), not of the running %q", plan.Project, plan.StateDir, cur.Project)
	}
	plan, selected, err := checkPlan(ctx, plan, s.rt, opts.Services, opts.NoDeps, opts.Scale, s.opts.NoLimits, s.sys.Announce)
	if err != nil {
		return err
	}
	cl := s.cluster
	if cl == nil {
		skipElsewhere(plan, s.sys.Announce)
	}

	rows, err := s.sys.Ps()
	if err != nil {
		return err
	}
	running := map[string]bool{}
	var orphans []string
	for _, r := range rows {
		running[r.Service] = true
		if plan.Service(r.Service) == nil && !slices.Contains(orphans, r.Service) {
			orphans = append(orphans, r.Service)
		}
	}
	hashes := hashesOf(plan)
	var recreate, fresh []string
	for _, name := range selected {
		if !running[name] {
			fresh = append(fresh, name)
			continue
		}
		policy := opts.Recreate
		if len(opts.Services) > 0 && !slices.Contains(opts.Services, name) {
			policy = opts.RecreateDeps
		}
		if policy == api.RecreateForce || policy == api.RecreateDiverged && hashes[name] != s.state.hashes[name] {
			recreate = append(recreate, name)
		}
	}
	// The plan the stack runs: the file's, and the orphans that stay.
	merged := *plan
	var remove []string
	if opts.RemoveOrphans {
		remove = orphans
	}
	for _, o := range orphans {
		if svc := cur.Service(o); svc != nil {
			merged.Services = append(slices.Clip(merged.Services), *svc)
		}
	}
	changed := append(slices.Clip(recreate), fresh...)
	if err := prepare.CheckPorts(onlyServices(plan, fresh)); err != nil {
		return err
	}
	runscripts, err := inspectImages(ctx, s.rt, onlyServices(plan, changed))
	if err != nil {
		return err
	}
	nets, err := s.nets.converge(&merged, changed, remove, cl != nil)
	if err != nil {
		return err
	}
	hostsOf := merged.HostsOf
	if cl != nil {
		// New services are placed now: one that fits no node changes
		// nothing; the others' replicas keep their nodes.
		if err := cl.converge(&merged, fresh); err != nil {
			return err
		}
		hostsOf = cl.hostsOf
	}
	hosts, err := prepare.HostsFiles(&merged, func(svc *compose.Service) ([]compose.HostEntry, error) {
		return s.nets.hosts(&merged, svc, hostsOf(svc))
	})
	if err != nil {
		return err
	}
	if cl != nil {
		cl.setHosts(hosts)
	}
	runscripts = mergeMaps(s.state.runscripts, runscripts)

	ch := s.sys.Subscribe()
	defer s.sys.Unsubscribe(ch)
	start := opts.Services
	if len(start) == 0 {
		start = plan.ServiceNames()
	}
	names, err := s.sys.Converge(&actors.ConvergeRequest{
		Plan: &merged, Orphans: orphans,
		Recreate: recreate, Start: start, NoDeps: opts.NoDeps, Remove: remove, NoStart: opts.NoStart,
		HasRunscript: runscripts, HostsFiles: hosts, Nets: nets,
		// Mounts are made by each replica as it starts: volumes and bind
		// sources of an edited file may be new.
		Unprepared: merged.ServiceNames(),
	})
	if err != nil {
		return err
	}
	s.current.Store(&merged)
	s.state.runscripts = runscripts
	for _, name := range changed {
		s.state.hashes[name] = hashes[name]
	}
	var rolling []string
	for _, name := range recreate {
		if plan.Service(name).Update != nil {
			rolling = append(rolling, name)
		}
	}
	waitErr := awaitConverge(ctx, ch, names, rolling)
	// A rollback put a service's previous configuration back.
	if now, err := s.sys.Plan(); err == nil {
		s.current.Store(now)
		for _, name := range rolling {
			if svc := now.Service(name); svc != nil {
				s.state.hashes[name] = svc.ConfigHash()
			}
		}
	}
	return waitErr
}

// awaitConverge waits until the replicas of names have left their start
// and the updates of rolling have ended; a paused or rolled back update is
// an error, as docker stack deploy reports it.
func awaitConverge(ctx context.Context, ch chan api.Event, names, rolling []string) error {
	pending := map[string]bool{}
	for _, n := range names {
		pending[n] = true
	}
	updating := map[string]bool{}
	for _, n := range rolling {
		updating[n] = true
	}
	var errs []error
	for len(pending) > 0 || len(updating) > 0 {
		ev, open, err := next(ctx, ch)
		switch {
		case err != nil:
			return err
		case !open:
			return errors.Join(append(errs, ErrStackStopped)...)
		}
		// Started, failed or created only (--no-start): the replica
		// it replaces also dies.
		if pending[ev.Name] && (ev.Kind == api.EventStarted || ev.Kind == api.EventFailed || ev.State == api.StateCreated) {
			delete(pending, ev.Name)
		}
		if !updating[ev.Service] {
			continue
		}
		switch ev.Kind {
		case api.EventUpdateCompleted:
			delete(updating, ev.Service)
		case api.EventUpdatePaused, api.EventRolledBack:
			delete(updating, ev.Service)
			errs = append(errs, errors.New(ev.Line()))
		case api.EventRollback:
			errs = append(errs, errors.New(ev.Line()))
		}
	}
	return errors.Join(errs...)
}

// onlyServices is a plan with the named services of plan only.
func onlyServices(plan *compose.Plan, names []string) *compose.Plan {
	only := *plan
	only.Services = nil
	for _, svc := range plan.Services {
		if slices.Contains(names, svc.Name) {
			only.Services = append(only.Services, svc)
		}
	}
	return &only
}

func mergeMaps[V any](base, over map[string]V) map[string]V {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]V{}
	}
	maps.Copy(out, over)
	return out
}

// converge gives the services of changed (new or recreated) their network
// in the edited plan: their published ports are published again (a
// recreated service may publish others now) and those of removed go. It
// returns each service's network, a new map: the running replicas read
// the old one. Across a Slurm allocation (clustered) services use their
// node's network.
func (nw *networks) converge(plan *compose.Plan, changed, removed []string, clustered bool) (map[string]singularity.Network, error) {
	of := maps.Clone(nw.of)
	var errs []error
	for _, name := range append(slices.Clip(changed), removed...) {
		if nw.stack != nil {
			if err := nw.stack.Unpublish(name); err != nil {
				errs = append(errs, &compose.Error{Service: name, Key: "ports", Message: err.Error()})
			}
		}
		delete(of, name)
	}
	for _, name := range changed {
		svc := plan.Service(name)
		switch svc.Network {
		case compose.NetworkNone:
			of[name] = singularity.Network{None: true}
		case compose.NetworkProject:
			if clustered {
				continue
			}
			if nw.stack == nil {
				errs = append(errs, &compose.Error{Service: name, Key: "network_mode", Message: "the stack runs on the host's network (it was started with --network host, or x-sstack.network: host); take it down and up again to give it a network of its own"})
				continue
			}
			of[name] = nw.stack.Network()
			if err := nw.publish(onlyServices(plan, []string{name})); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	nw.mu.Lock()
	nw.of = of
	nw.mu.Unlock()
	if nw.replicas != nil {
		nw.replicas.setPlan(plan)
	}
	return of, nil
}

// network is the network of a service's replicas.
func (nw *networks) network(service string) singularity.Network {
	nw.mu.RLock()
	defer nw.mu.RUnlock()
	return nw.of[service]
}

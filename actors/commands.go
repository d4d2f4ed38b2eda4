package actors

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/singularity"
)

// A user's commands on the services of the running stack: ps, stop, start,
// restart, kill, up, scale, and down SERVICE.

// ps lists every replica, services in plan order.
func (a *stackActor) ps() []api.Replica {
	var rows []api.Replica
	for _, svc := range a.cfg.Plan.Services {
		for _, r := range a.replicas[svc.Name] {
			rows = append(rows, r.row)
		}
	}
	return rows
}

// targets resolves service names (all spawned ones when none) to replicas.
func (a *stackActor) targets(services []string) ([]*replicaState, error) {
	if len(services) == 0 {
		var out []*replicaState
		for _, svc := range a.cfg.Plan.Services {
			for _, r := range a.replicas[svc.Name] {
				if !r.removing && !r.crashed {
					out = append(out, r)
				}
			}
		}
		return out, nil
	}
	var out []*replicaState
	for _, s := range services {
		if a.cfg.Plan.Service(s) == nil {
			return nil, &api.NoServiceError{Name: s, Known: a.cfg.Plan.ServiceNames()}
		}
		for _, r := range a.replicas[s] {
			if !r.removing && !r.crashed {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// command performs a user's stop, start, restart, kill or up. The
// supervisor answers at once; the caller follows the events to see the
// replicas get where they were sent.
func (a *stackActor) command(ctx actor.Context, req *CommandRequest) ([]string, error) {
	if a.phase.TearingDown() {
		return nil, errors.New("the stack is being taken down")
	}
	if req.Op == OpUp {
		return a.up(ctx, req)
	}
	reps, err := a.targets(req.Services)
	if err != nil {
		return nil, err
	}
	var sig string
	if req.Op == OpKill {
		s, err := singularity.ParseSignal(req.Signal)
		if err != nil {
			return nil, fmt.Errorf("kill -s %s: %w", req.Signal, err)
		}
		sig = singularity.SignalName(s)
	}
	names := make([]string, 0, len(reps))
	for _, r := range reps {
		names = append(names, r.row.Name)
		switch req.Op {
		case OpStop:
			ctx.Send(r.pid, &StopService{Timeout: req.Timeout})
		case OpStart:
			ctx.Send(r.pid, &StartService{})
		case OpRestart:
			r.alone = req.NoDeps
			ctx.Send(r.pid, &RestartService{Timeout: req.Timeout})
		case OpKill:
			ctx.Send(r.pid, &SignalService{Signal: sig})
		case OpRemove:
			r.removing = true
			a.removed[r.row.Service] = true
			if r.done() {
				a.removeReplica(ctx, r.row.Service, r)
				continue
			}
			ctx.Send(r.pid, &StopService{Final: true, Timeout: req.Timeout})
		}
	}
	if req.Op == OpRemove {
		for _, s := range req.Services {
			a.removed[s] = true
			if len(a.replicas[s]) == 0 {
				a.forget(s)
			}
		}
	}
	return names, nil
}

// forget drops a service taken down alone once its replicas are gone.
func (a *stackActor) forget(service string) {
	if a.removed[service] {
		delete(a.replicas, service)
		delete(a.counts, service)
		delete(a.removed, service)
		if a.orphans[service] {
			// Gone from the file and now from the stack.
			delete(a.orphans, service)
			plan := *a.cfg.Plan
			plan.Services = slices.DeleteFunc(slices.Clone(plan.Services), func(s compose.Service) bool { return s.Name == service })
			a.cfg.Plan = &plan
		}
	}
}

// up starts services of the running stack: replicas not spawned yet are
// spawned, stopped or exited ones started again.
func (a *stackActor) up(ctx actor.Context, req *CommandRequest) ([]string, error) {
	services, err := a.selection(req.Services, req.NoDeps)
	if err != nil {
		return nil, err
	}
	names := a.spawnServices(ctx, services, req.NoDeps, false)
	for _, svc := range services {
		for _, r := range a.replicas[svc.Name] {
			if r.replacing != nil {
				continue // an update starts it anew
			}
			switch r.row.State {
			case api.StateExited, api.StateStopped, api.StateFailed, api.StateCreated:
				ctx.Send(r.pid, &StartService{})
				names = append(names, r.row.Name)
			}
		}
	}
	return names, nil
}

// scale adds replicas (new actors and instances) or takes the
// highest-numbered ones away, live.
func (a *stackActor) scale(ctx actor.Context, req *ScaleRequest) ([]string, error) {
	if a.phase.TearingDown() {
		return nil, errors.New("the stack is being taken down")
	}
	services := make([]string, 0, len(req.Replicas))
	for name, n := range req.Replicas {
		if a.cfg.Plan.Service(name) == nil {
			return nil, &api.NoServiceError{Name: name, Known: a.cfg.Plan.ServiceNames()}
		}
		if n < 0 {
			return nil, fmt.Errorf("scale %s=%d: the number of replicas cannot be negative", name, n)
		}
		for _, r := range a.replicas[name] {
			if r.removing {
				return nil, fmt.Errorf("scale %s: replica %s is still being removed; try again in a moment", name, r.row.Name)
			}
		}
		services = append(services, name)
	}
	sort.Strings(services)
	var names []string
	for _, name := range services {
		n := req.Replicas[name]
		svc := a.cfg.Plan.Service(name)
		if _, spawned := a.replicas[name]; !spawned {
			if n == 0 {
				continue
			}
			// Not started yet: start it with n replicas (and its deps).
			a.counts[name] = n
			sel, _ := a.selection([]string{name}, false)
			names = append(names, a.spawnServices(ctx, sel, false, false)...)
			continue
		}
		reps := a.replicas[name]
		if p := a.cfg.Placer; p != nil {
			// Placed before anything changes: a replica that fits no node
			// fails the whole request.
			for r := len(reps) + 1; r <= n; r++ {
				if _, err := p.Place(name, r); err != nil {
					return names, err
				}
			}
		}
		a.counts[name] = n
		for r := len(reps) + 1; r <= n; r++ {
			names = append(names, a.spawnReplica(ctx, svc, r, a.depsOf(svc), false))
		}
		for i := len(reps) - 1; i >= n; i-- {
			r := reps[i]
			r.removing = true
			names = append(names, r.row.Name)
			if r.done() {
				a.removeReplica(ctx, name, r)
				continue
			}
			ctx.Send(r.pid, &StopService{Final: true})
		}
	}
	return names, nil
}

// removeReplica forgets a scaled-down replica once it has stopped; only
// the last replica of a service can go, so numbers stay dense.
func (a *stackActor) removeReplica(ctx actor.Context, service string, r *replicaState) {
	reps := a.replicas[service]
	for len(reps) > 0 && reps[len(reps)-1].removing && reps[len(reps)-1].done() {
		last := reps[len(reps)-1]
		reps = reps[:len(reps)-1]
		a.cfg.Metrics.Remove(service, last.row.Replica)
		if a.cfg.Placer != nil {
			a.cfg.Placer.Forget(service, last.row.Replica)
		}
		ctx.Stop(last.pid)
	}
	a.replicas[service] = reps
	a.notifyDependents(ctx, service, false)
	if len(reps) == 0 {
		a.forget(service)
	}
}

package actors

import (
	"slices"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/prepare"
)

// Which services to start, and spawning the service actor of each of their
// replicas.

// selection is the services to start for names (all when none), in plan
// order, with their dependencies unless noDeps.
func (a *stackActor) selection(names []string, noDeps bool) ([]*compose.Service, error) {
	plan := a.cfg.Plan
	if len(names) == 0 {
		var out []*compose.Service
		for i := range plan.Services {
			if !a.orphans[plan.Services[i].Name] {
				out = append(out, &plan.Services[i])
			}
		}
		return out, nil
	}
	for _, n := range names {
		if plan.Service(n) == nil {
			return nil, &api.NoServiceError{Name: n, Known: a.cfg.Plan.ServiceNames()}
		}
	}
	selected := names
	if !noDeps {
		selected = plan.WithDependencies(names)
	}
	var out []*compose.Service
	for i := range plan.Services {
		if slices.Contains(selected, plan.Services[i].Name) {
			out = append(out, &plan.Services[i])
		}
	}
	return out, nil
}

// spawnServices spawns the replicas of services not spawned yet, in plan
// (dependency) order, and returns their display names.
func (a *stackActor) spawnServices(ctx actor.Context, services []*compose.Service, noDeps, held bool) []string {
	var names []string
	for _, svc := range services {
		if _, ok := a.replicas[svc.Name]; ok {
			continue
		}
		a.replicas[svc.Name] = []*replicaState{}
		var deps []compose.Dependency
		for _, d := range svc.DependsOn {
			if a.cfg.Plan.Service(d.Service) == nil {
				a.notice(ctx, "service %q: depends_on: optional dependency %q is not part of the project; starting without it", svc.Name, d.Service)
				continue
			}
			if _, spawned := a.replicas[d.Service]; !spawned && noDeps {
				continue // --no-deps: not waited for
			}
			deps = append(deps, d)
			a.dependents[d.Service] = append(a.dependents[d.Service], svc.Name)
		}
		n := svc.Replicas
		if c, ok := a.counts[svc.Name]; ok {
			n = c
		}
		for r := 1; r <= n; r++ {
			names = append(names, a.spawnReplica(ctx, svc, r, deps, held))
		}
	}
	return names
}

func (a *stackActor) depsOf(svc *compose.Service) []compose.Dependency {
	var deps []compose.Dependency
	for _, d := range svc.DependsOn {
		if _, spawned := a.replicas[d.Service]; spawned {
			deps = append(deps, d)
		}
	}
	return deps
}

func (a *stackActor) spawnReplica(ctx actor.Context, svc *compose.Service, r int, deps []compose.Dependency, held bool) string {
	rs := a.newReplica(ctx, svc, r, deps, held)
	a.replicas[svc.Name] = append(a.replicas[svc.Name], rs)
	return rs.row.Name
}

// newReplica spawns the service actor of replica r of svc; held: created
// only, it waits for a start (up --no-start).
func (a *stackActor) newReplica(ctx actor.Context, svc *compose.Service, r int, deps []compose.Dependency, held bool) *replicaState {
	plan, entry := a.cfg.Plan, svc
	inst := compose.InstanceName(plan.Project, svc.Name, r)
	var node string
	if p := a.cfg.Placer; p != nil {
		// Placed by up (or checked by scale) before it gets here: an
		// error is only a replica that can no longer be placed, which
		// then fails to start with it.
		var err error
		if node, err = p.Place(svc.Name, r); err != nil {
			a.notice(ctx, "%s: %v", svc.DisplayName(r), err)
		}
	}
	templated := svc.HasSlotTemplate()
	if templated {
		svc = svc.ForReplica(r)
	}
	cfg := ServiceConfig{
		Spec: prepare.Spec{
			Service:      svc,
			Instance:     inst,
			HostsFile:    a.cfg.HostsFiles[svc.Name],
			Net:          a.cfg.Nets[svc.Name],
			ResolvConf:   a.cfg.ResolvConf,
			HasRunscript: a.cfg.HasRunscript[svc.Name],
		},
		PrepareMounts: templated || slices.Contains(a.cfg.Unprepared, svc.Name),
		Project:       plan.Project,
		Replica:       r,
		Name:          svc.DisplayName(r),
		ReplicaNets:   a.cfg.ReplicaNets,
		Deps:          deps,
		Held:          held,
		Runtime:       a.cfg.Runtime,
		Logger:        a.logger,
		Metrics:       a.cfg.Metrics,
		Clock:         a.cfg.Clock,
		StateDir:      plan.StateDir,
		slots:         a.slots,
		pipes:         a.pipes,
	}
	// A replica made anew (an update) gets a name of its own: its
	// predecessor may still be registered, or be gone already, and its
	// Terminated must not be taken for the new actor's.
	name := inst
	if a.spawned[inst] > 0 {
		name += "~" + strconv.Itoa(a.spawned[inst])
	}
	a.spawned[inst]++
	pid, err := ctx.SpawnNamed(NewService(cfg), name)
	if err != nil {
		pid = ctx.Spawn(NewService(cfg))
	}
	rs := &replicaState{pid: pid, svc: entry, row: api.Replica{
		Project: plan.Project, Service: svc.Name, Replica: r, Name: cfg.Name, Instance: inst,
		State: api.StateWaiting, Since: a.cfg.Clock.Now(), Supervised: true, Node: node,
	}}
	// A replica added later learns where its dependencies are at once.
	for _, d := range deps {
		if st, ok := a.lastSent[d.Service]; ok {
			st.Restarted = false
			ctx.Send(pid, &DependencyUpdate{Status: st})
		}
	}
	return rs
}

package actors

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/actors/rollout"
	"sstack/compose"
	"sstack/internal/api"
)

// Converge hands the stack an edited compose file's plan (up on a running
// stack) and returns the replicas to wait for.
func (s *System) Converge(req *ConvergeRequest) ([]string, error) {
	return s.result(s.request(req))
}

// Announce publishes ev, a stack event of the engine's.
func (s *System) Announce(ev api.Event) { s.system.Root.Send(s.root, &Announce{Event: ev}) }

// Plan is the plan the stack runs now.
func (s *System) Plan() (*compose.Plan, error) {
	res, err := s.request(&PlanRequest{})
	if err != nil {
		return nil, err
	}
	p, _ := res.(*compose.Plan)
	if p == nil {
		return nil, errors.New("the stack supervisor gave no plan")
	}
	return p, nil
}

// update is a service's replicas being replaced with another
// configuration: its rollout machine, and what it replaces with what.
type update struct {
	m *rollout.Machine
	// to is the configuration the replicas get, from the one they had
	// (a rollback's target).
	to, from *compose.Service
	// replicas maps the machine's 1-based positions to replica numbers.
	replicas []int
	// told: the service has an update_config, so its progress is told
	// (update events); docker compose replaces the others silently.
	told bool
	back bool // rolling back
	ran  int  // replicas replaced that run (and are healthy)
}

// converge takes the new plan as one step, then starts what it asks for.
func (a *stackActor) converge(ctx actor.Context, req *ConvergeRequest) ([]string, error) {
	if a.phase.TearingDown() {
		return nil, errors.New("the stack is being taken down")
	}
	for _, name := range req.Recreate {
		if a.updates[name] != nil {
			return nil, fmt.Errorf("service %q: an update is still under way; follow it with 'sstack events' and run up again once it is over", name)
		}
	}
	a.cfg.Plan = req.Plan
	a.cfg.HasRunscript, a.cfg.HostsFiles, a.cfg.Nets = req.HasRunscript, req.HostsFiles, req.Nets
	a.cfg.Unprepared = req.Unprepared
	a.orphans = map[string]bool{}
	for _, o := range req.Orphans {
		a.orphans[o] = true
	}
	a.dependents = map[string][]string{}
	for _, svc := range a.cfg.Plan.Services {
		if _, spawned := a.replicas[svc.Name]; spawned {
			for _, d := range a.depsOf(&svc) {
				a.dependents[d.Service] = append(a.dependents[d.Service], svc.Name)
			}
		}
	}
	var kept []string
	for _, o := range req.Orphans {
		if !slices.Contains(req.Remove, o) {
			for _, r := range a.replicas[o] {
				kept = append(kept, r.row.Instance)
			}
		}
	}
	if len(kept) > 0 {
		a.publish(ctx, api.OrphansWarning(kept))
	}
	if len(req.Remove) > 0 {
		if _, err := a.command(ctx, &CommandRequest{Op: OpRemove, Services: req.Remove}); err != nil {
			return nil, err
		}
	}
	var names []string
	// Replica counts follow the file, as docker compose up scales to it.
	counts := map[string]int{}
	for _, svc := range a.cfg.Plan.Services {
		if reps, spawned := a.replicas[svc.Name]; spawned && !a.orphans[svc.Name] && live(reps) != svc.Replicas {
			counts[svc.Name] = svc.Replicas
		}
	}
	if len(counts) > 0 {
		before := map[string]int{}
		for name := range counts {
			before[name] = len(a.replicas[name])
		}
		if _, err := a.scale(ctx, &ScaleRequest{Replicas: counts}); err != nil {
			return nil, err
		}
		for name := range counts {
			for _, r := range a.replicas[name][min(before[name], len(a.replicas[name])):] {
				names = append(names, r.row.Name)
			}
		}
	}
	for _, name := range req.Recreate {
		reps := a.replicas[name]
		svc := a.cfg.Plan.Service(name)
		var nums []int
		for _, r := range reps {
			if !r.removing && r.svc != svc {
				nums = append(nums, r.row.Replica)
			}
		}
		if len(nums) == 0 {
			continue
		}
		if req.NoStart {
			// Created only: nothing runs to roll over.
			for _, n := range nums {
				names = append(names, reps[n-1].row.Name)
				a.replace(ctx, name, n, svc, true)
			}
			continue
		}
		cfg, told := compose.AllAtOnce, svc.Update != nil
		if told {
			cfg = *svc.Update
		} else {
			for _, n := range nums {
				names = append(names, reps[n-1].row.Name)
			}
		}
		a.updates[name] = &update{m: rollout.New(cfg, len(nums)), to: svc, from: reps[nums[0]-1].svc, replicas: nums, told: told}
		a.advanceUpdate(ctx, name)
	}
	sel, err := a.selection(req.Start, req.NoDeps)
	if err != nil {
		return nil, err
	}
	for _, svc := range sel {
		if a.updates[svc.Name] != nil {
			continue
		}
		for _, r := range a.replicas[svc.Name] {
			if r.row.State == api.StateRunning && !r.removing {
				a.publish(ctx, api.Event{Kind: api.EventRunning, Service: svc.Name, Replica: r.row.Replica, Name: r.row.Name, Instance: r.row.Instance, State: r.row.State})
			}
		}
	}
	if req.NoStart {
		return append(names, a.spawnServices(ctx, sel, req.NoDeps, true)...), nil
	}
	started, err := a.up(ctx, &CommandRequest{Op: OpUp, Services: req.Start, NoDeps: req.NoDeps})
	if err != nil {
		return nil, err
	}
	return append(names, started...), nil
}

// live counts the replicas that are not being removed.
func live(reps []*replicaState) int {
	n := 0
	for _, r := range reps {
		if !r.removing {
			n++
		}
	}
	return n
}

// advanceUpdate performs what the service's rollout says now.
func (a *stackActor) advanceUpdate(ctx actor.Context, service string) {
	u := a.updates[service]
	if u == nil {
		return
	}
	now := a.cfg.Clock.Now()
	step := u.m.Next(now)
	for _, i := range step.Replace {
		a.replace(ctx, service, u.replicas[i-1], u.to, false)
	}
	done, total := u.m.Progress()
	switch st, why := u.m.State(); st {
	case rollout.Completed:
		delete(a.updates, service)
		if u.told {
			kind := api.EventUpdateCompleted
			if u.back {
				kind = api.EventRolledBack
			}
			a.publish(ctx, api.Event{Kind: kind, Service: service, Updated: done, Total: total})
		}
		// depends_on.restart: the dependents follow a recreated service.
		a.notifyDependents(ctx, service, true)
		return
	case rollout.Paused:
		delete(a.updates, service)
		a.publish(ctx, api.Event{Kind: api.EventUpdatePaused, Service: service, Message: why, Updated: done, Total: total})
		return
	case rollout.RollingBack:
		a.publish(ctx, api.Event{Kind: api.EventRollback, Service: service, Message: why})
		back := u.m.RollBack()
		nums := make([]int, len(back))
		for i, p := range back {
			nums[i] = u.replicas[p-1]
		}
		cfg := compose.UpdateConfig{Parallelism: 0, Order: compose.UpdateStopFirst, FailureAction: compose.UpdateContinue}
		if u.from.Rollback != nil {
			cfg = *u.from.Rollback
		} else if u.to.Rollback != nil {
			cfg = *u.to.Rollback
		}
		a.updates[service] = &update{m: rollout.New(cfg, len(nums)), to: u.from, from: u.to, replicas: nums, told: true, back: true}
		a.cfg.Plan = a.cfg.Plan.WithService(*u.from)
		// The plan's copy is the one replicas are compared with.
		a.updates[service].to = a.cfg.Plan.Service(service)
		a.advanceUpdate(ctx, service)
		return
	}
	if !step.Wake.IsZero() {
		self, root := ctx.Self(), ctx.ActorSystem().Root
		time.AfterFunc(step.Wake.Sub(now), func() { root.Send(self, &rolloutTimer{service: service}) })
	}
}

// replace stops replica r of service for good and, once it has stopped,
// starts it anew with to (respawn); held: creates it only.
func (a *stackActor) replace(ctx actor.Context, service string, r int, to *compose.Service, held bool) {
	rs := a.replica(service, r)
	if rs == nil || rs.removing {
		if u := a.updates[service]; u != nil {
			u.m.Failed(a.position(u, r), "was removed", a.cfg.Clock.Now())
		}
		return
	}
	rs.replacing, rs.replaceHeld = to, held
	a.publish(ctx, api.Event{Kind: api.EventRecreate, Service: service, Replica: r, Name: rs.row.Name, Instance: rs.row.Instance, State: rs.row.State})
	if rs.done() {
		a.respawn(ctx, rs)
		return
	}
	ctx.Send(rs.pid, &StopService{Final: true})
}

// respawn puts a new service actor with the replacing configuration in
// the place of a replica that has stopped.
func (a *stackActor) respawn(ctx actor.Context, rs *replicaState) {
	ctx.Stop(rs.pid)
	svc := rs.replacing
	fresh := a.newReplica(ctx, svc, rs.row.Replica, a.depsOf(svc), rs.replaceHeld)
	a.replicas[svc.Name][rs.row.Replica-1] = fresh
}

// position is replica r's place in u's machine.
func (a *stackActor) position(u *update, r int) int {
	return slices.Index(u.replicas, r) + 1
}

// observeUpdate feeds a replaced replica's event to its service's rollout.
func (a *stackActor) observeUpdate(ctx actor.Context, r *replicaState, ev api.Event) {
	u := a.updates[ev.Service]
	if u == nil || r.svc != u.to {
		return
	}
	p, now := a.position(u, ev.Replica), a.cfg.Clock.Now()
	if p == 0 {
		return
	}
	switch {
	case ev.Kind == api.EventStarted && u.to.Healthcheck == nil, ev.Kind == api.EventHealth && ev.Health == api.HealthHealthy:
		u.m.Running(p, now)
		if u.told {
			u.ran++
			a.publish(ctx, api.Event{Kind: api.EventUpdated, Service: ev.Service, Replica: ev.Replica, Name: ev.Name, Instance: ev.Instance, Updated: u.ran, Total: len(u.replicas)})
		}
	case ev.Kind == api.EventHealth && ev.Health == api.HealthUnhealthy:
		u.m.Failed(p, "is unhealthy", now)
	case ev.Kind == api.EventFailed:
		u.m.Failed(p, "cannot start: "+ev.Message, now)
	case ev.Kind == api.EventDied && !ev.Requested:
		u.m.Failed(p, fmt.Sprintf("exited with code %d", ev.ExitCode), now)
	default:
		return
	}
	a.advanceUpdate(ctx, ev.Service)
}

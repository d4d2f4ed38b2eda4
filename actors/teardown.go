package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/actors/supervision"
	"sstack/internal/api"
	"sstack/singularity"
)

// The end of a stack: the teardown in reverse dependency order, the kill,
// crashed service actors, and the last resort.

// recoverSelf: a panic in the supervisor itself would make protoactor's
// root guardian restart it, which spawns every service again. Instead the
// panic is printed and every service killed at once; exit code 1.
func (a *stackActor) recoverSelf(ctx actor.Context) {
	r := recover()
	if r == nil {
		return
	}
	a.notice(ctx, "sstack: internal error in the stack supervisor: %v\n%s", r, debug.Stack())
	a.rules.Failed()
	defer func() {
		if recover() != nil { // state too broken to tear down in order
			a.stopEverything()
		}
	}()
	a.kill(ctx)
}

// stopEverything is the last resort: stop every instance of the plan
// directly, then report the stack done.
func (a *stackActor) stopEverything() {
	var names []string
	for _, reps := range a.replicas {
		for _, r := range reps {
			names = append(names, r.row.Instance)
		}
	}
	done := make(chan struct{}, len(names))
	for _, name := range names {
		go func() {
			_ = a.cfg.Runtime.StopInstance(context.Background(), name, "SIGKILL", time.Second)
			done <- struct{}{}
		}()
	}
	for range names {
		<-done
	}
	a.finish()
}

// teardown stops services in reverse dependency order: a service is asked
// to stop once every service depending on it has stopped.
func (a *stackActor) teardown(ctx actor.Context) {
	if a.phase.Stop() {
		a.advanceTeardown(ctx)
	}
}

// serviceDone: every replica is gone.
func (a *stackActor) serviceDone(service string) bool {
	for _, r := range a.replicas[service] {
		if !r.done() {
			return false
		}
	}
	return true
}

func (a *stackActor) advanceTeardown(ctx actor.Context) {
	if a.phase == supervision.Finished {
		return
	}
	stop, all := a.walk.Next(a.spawnedServices(), a.dependents, a.serviceDone)
	for _, name := range stop {
		for _, r := range a.replicas[name] {
			if !r.crashed {
				ctx.Send(r.pid, &StopService{Final: true, Kill: a.phase == supervision.Killing, Timeout: a.cfg.StopTimeout})
			}
		}
	}
	if all {
		a.finish()
	}
}

// spawnedServices are the services that have replicas (or had).
func (a *stackActor) spawnedServices() []string {
	names := make([]string, 0, len(a.replicas))
	for name := range a.replicas {
		names = append(names, name)
	}
	return names
}

func (a *stackActor) kill(ctx actor.Context) {
	if a.phase == supervision.Finished {
		return
	}
	a.phase.Kill()
	a.walk.SendAll(a.spawnedServices())
	for _, reps := range a.replicas {
		for _, r := range reps {
			if !r.done() && !r.crashed {
				ctx.Send(r.pid, &StopService{Final: true, Kill: true})
			}
		}
	}
	a.advanceTeardown(ctx)
}

// HandleFailure makes the stack supervisor the supervision strategy of its
// service actors: protoactor calls it, in the supervisor's own context,
// when a child panics. The panic is printed with its stack trace, the
// child stopped, its instance stopped by the supervisor and the stack
// taken down with exit code 1. Restarting the actor instead would lose
// what it knew (its process, run number, restart count) while goroutines
// of the old incarnation still report to the same PID.
func (a *stackActor) HandleFailure(_ *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, message any) {
	defer a.recoverSelf(a.ctx)
	supervisor.StopChildren(child)
	what := fmt.Sprint(reason)
	if p, ok := reason.(*actorPanic); ok {
		what = fmt.Sprintf("%v\n%s", p.value, bytes.TrimRight(p.stack, "\n"))
	}
	name := "a service actor (" + child.Id + ")"
	if r := a.replicaOf(child); r != nil {
		name = r.row.Name
	}
	a.notice(a.ctx, "sstack: internal error in %s, handling %T: panic: %s", name, message, what)
	a.crashed(a.ctx, child)
}

func (a *stackActor) replicaOf(pid *actor.PID) *replicaState {
	for _, reps := range a.replicas {
		for _, r := range reps {
			if r.pid.Equal(pid) {
				return r
			}
		}
	}
	return nil
}

// crashed handles a service actor that is gone without having stopped its
// instance: the supervisor stops the instance itself and takes the stack
// down with exit code 1.
func (a *stackActor) crashed(ctx actor.Context, pid *actor.PID) {
	a.rules.Failed()
	r := a.replicaOf(pid)
	if r != nil && !r.crashed && !r.done() {
		wasCreating := r.row.State == api.StateCreating
		r.crashed = true
		r.row.State = api.StateFailed
		r.row.Reason = "internal error in sstack"
		a.notice(ctx, "%s: stopping instance %s and the stack", r.row.Name, r.row.Instance)
		rt, inst, self, root := a.cfg.Runtime, r.row.Instance, ctx.Self(), ctx.ActorSystem().Root
		service, replica := r.row.Service, r.row.Replica
		nets, svc, net := a.cfg.ReplicaNets, r.svc, a.cfg.Nets[service]
		go func() {
			err := stopCrashedInstance(rt, inst, wasCreating)
			// The dead actor cannot give its network namespace back.
			detachNet(nets, svc, replica, net)
			root.Send(self, &crashCleaned{service: service, replica: replica, err: err})
		}()
	}
	if a.phase.TearingDown() {
		a.advanceTeardown(ctx)
		return
	}
	a.teardown(ctx)
}

// stopCrashedInstance stops the instance of a crashed service actor. When
// the actor was creating it, the start may still be in flight: wait a
// while for the instance to appear, so that it is not left behind.
func stopCrashedInstance(rt singularity.Runtime, name string, wasCreating bool) error {
	bg := context.Background()
	err := rt.StopInstance(bg, name, "SIGTERM", 2*time.Second)
	if !errors.Is(err, singularity.ErrNoInstance) {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); wasCreating && time.Now().Before(deadline); {
		if infos, lerr := rt.ListInstances(bg, name); lerr == nil && len(infos) > 0 {
			return rt.StopInstance(bg, name, "SIGTERM", 2*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func (a *stackActor) onCrashCleaned(ctx actor.Context, msg *crashCleaned) {
	r := a.replica(msg.service, msg.replica)
	if r == nil {
		return
	}
	ev := api.Event{Kind: api.EventDestroyed, Service: r.row.Service, Replica: r.row.Replica,
		Name: r.row.Name, Instance: r.row.Instance, State: api.StateStopped}
	if msg.err != nil {
		ev.Message = msg.err.Error()
	}
	r.row.State = api.StateStopped
	a.publish(ctx, ev)
	a.advanceTeardown(ctx)
}

// onTerminated: a service actor stopped. After a crash HandleFailure has
// dealt with it, and a scaled-down replica is meant to go; any other
// unexpected end is handled the same way as a crash, so the stack never
// waits for an actor that is gone.
func (a *stackActor) onTerminated(ctx actor.Context, msg *actor.Terminated) {
	if a.phase == supervision.Finished {
		return
	}
	if r := a.replicaOf(msg.Who); r != nil && !r.crashed && !r.done() {
		a.notice(ctx, "sstack: internal error: the actor of %s stopped unexpectedly", r.row.Name)
		a.crashed(ctx, msg.Who)
	}
}

func (a *stackActor) finish() {
	if !a.phase.Finish() {
		return
	}
	for ch := range a.subs {
		close(ch)
	}
	a.subs = map[chan api.Event]bool{}
	a.done <- StackDone{ExitCode: a.rules.Code()}
}

package lifecycle

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sstack/actors/policy"
	"sstack/compose"
	"sstack/internal/api"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

const ms = time.Millisecond

// Restart policies as compose/ resolves them.
var (
	noPolicy  = compose.RestartPolicy{}
	restartNo = compose.RestartPolicy{Source: "restart", Condition: "no"}
	always    = compose.RestartPolicy{Source: "restart", Condition: "always"}
)

func onFailure(maxAttempts int) compose.RestartPolicy {
	return compose.RestartPolicy{Source: "restart", Condition: "on-failure", MaxAttempts: maxAttempts}
}

// service is a plan service with compose's defaults for the stop keys.
func service(name string, restart compose.RestartPolicy) *compose.Service {
	return &compose.Service{
		Name: name, Replicas: 1, ImageRef: name, Image: "/images/" + name + ".sif",
		StopSignal: "SIGTERM", StopGracePeriod: 10 * time.Second, Restart: restart,
	}
}

func withHealth(s *compose.Service, hc compose.Healthcheck) *compose.Service {
	hc.Test = []string{"/bin/sh", "-c", "check"}
	s.Healthcheck = &hc
	return s
}

func dep(name, condition string, required, restart bool) compose.Dependency {
	return compose.Dependency{Service: name, Condition: condition, Required: required, Restart: restart}
}

// pidOf is the pid the driver gives the process of a run.
func pidOf(run int) int { return 1000 + run }

// driver runs one machine the way the service actor does: it feeds inputs,
// checks the invariants of every batch of effects, and can perform the
// effects whose results come back at once (instance and process starts,
// instance checks and stops). Timers, probes, signals and exits are left to
// the test, which plays them with the fake clock.
type driver struct {
	t     *testing.T
	clock *policy.FakeClock
	cfg   Config
	m     *Machine

	// How the driver answers the effects it performs.
	exists      bool  // InstanceChecked.Exists
	instanceErr error // InstanceStarted.Err
	processErr  error // ProcessStarted.Err

	events []api.Event // every event emitted, in order
	timers []SetTimer  // every timer armed, in order
	probes []Probe     // every probe asked for, in order
	run    int         // the run of the last StartProcess
}

func newDriver(t *testing.T, s *compose.Service, deps ...compose.Dependency) *driver {
	t.Helper()
	s.DependsOn = deps
	cfg := Config{
		Project: "p", Service: s, Replica: 1,
		Instance: compose.InstanceName("p", s.Name, 1), Name: s.Name + "-1",
		Deps: deps,
	}
	clock := policy.NewFakeClock(t0)
	return &driver{t: t, clock: clock, cfg: cfg, m: New(cfg, clock), exists: true}
}

// feed hands one input to the machine and returns its effects, unperformed.
func (d *driver) feed(in Input) []Effect {
	d.t.Helper()
	effs := d.m.Handle(in)
	d.check(in, effs)
	for _, e := range effs {
		switch e := e.(type) {
		case SetTimer:
			d.timers = append(d.timers, e)
		case Probe:
			d.probes = append(d.probes, e)
		case StartProcess:
			d.run = e.Run
		}
	}
	return effs
}

// do feeds in and then the results of the effects the driver performs, in
// the order a mailbox would deliver them, and returns every effect.
func (d *driver) do(in Input) []Effect {
	d.t.Helper()
	var all []Effect
	queue := []Input{in}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		effs := d.feed(next)
		all = append(all, effs...)
		for _, e := range effs {
			if res, ok := d.answer(e); ok {
				queue = append(queue, res)
			}
		}
	}
	return all
}

// answer is the result of an effect the driver performs itself.
func (d *driver) answer(e Effect) (Input, bool) {
	switch e := e.(type) {
	case StartInstance:
		return InstanceStarted{Err: d.instanceErr}, true
	case CheckInstance:
		return InstanceChecked{Exists: d.exists}, true
	case StartProcess:
		if d.processErr != nil {
			return ProcessStarted{Run: e.Run, Err: d.processErr}, true
		}
		return ProcessStarted{Run: e.Run, Pid: pidOf(e.Run)}, true
	case StopInstance:
		return InstanceStopped{}, true
	}
	return nil, false
}

// check verifies what holds for every batch: each event names the replica
// and carries the time and a state (a state event is not printed), and the
// last event's state is the machine's state once the batch is out, so that
// a ps row built from the events never lags Snapshot().
func (d *driver) check(in Input, effs []Effect) {
	d.t.Helper()
	snap := d.m.Snapshot()
	var last *api.Event
	for _, e := range effs {
		em, ok := e.(Emit)
		if !ok {
			continue
		}
		ev := em.Event
		name := d.cfg.Name
		if ev.Kind == api.EventWarning && ev.Name == d.cfg.Instance {
			name = d.cfg.Instance // an instance stop error is about the instance
		}
		if ev.Project != d.cfg.Project || ev.Service != d.cfg.Service.Name || ev.Replica != d.cfg.Replica ||
			ev.Name != name || ev.Instance != d.cfg.Instance {
			d.t.Errorf("%T: event %s does not name the replica: %+v", in, ev.Kind, ev)
		}
		if !ev.Time.Equal(d.clock.Now()) {
			d.t.Errorf("%T: event %s at %v, clock at %v", in, ev.Kind, ev.Time, d.clock.Now())
		}
		if ev.State == "" {
			d.t.Errorf("%T: event %s without a state", in, ev.Kind)
		}
		if ev.Kind == api.EventState && ev.Line() != "" {
			d.t.Errorf("%T: state event printed as %q", in, ev.Line())
		}
		d.events = append(d.events, ev)
		last = &ev
	}
	if last != nil && last.State != snap.State {
		d.t.Errorf("%T: last event %s has state %q, Snapshot().State is %q", in, last.Kind, last.State, snap.State)
	}
	if snap.Project != d.cfg.Project || snap.Service != d.cfg.Service.Name || snap.Replica != d.cfg.Replica ||
		snap.Name != d.cfg.Name || snap.Instance != d.cfg.Instance || !snap.Supervised {
		d.t.Errorf("%T: Snapshot() does not name the replica: %+v", in, snap)
	}
	if snap.State != d.m.State().Public() {
		d.t.Errorf("%T: Snapshot().State %q, State().Public() %q", in, snap.State, d.m.State().Public())
	}
	if d.m.Done() != (snap.State == api.StateStopped) {
		d.t.Errorf("%T: Done() %v in state %q", in, d.m.Done(), snap.State)
	}
}

func (d *driver) state() api.State { return d.m.Snapshot().State }

func (d *driver) wantState(want api.State) {
	d.t.Helper()
	if got := d.state(); got != want {
		d.t.Fatalf("state %q, want %q", got, want)
	}
}

// start plays Begin up to a running process.
func (d *driver) start() {
	d.t.Helper()
	d.do(Begin{})
	d.wantState(api.StateRunning)
}

// exit ends the process of the current run.
func (d *driver) exit(code int) []Effect {
	d.t.Helper()
	return d.do(ProcessExited{Run: d.run, Code: code})
}

// restartDue plays a start and an exit with code up to the restart timer
// of run 1 firing: the machine then checks whether the instance exists.
func (d *driver) restartDue(code int) {
	d.t.Helper()
	d.start()
	d.exit(code)
	d.feed(TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}})
}

// timer is the last timer of kind armed.
func (d *driver) timer(kind TimerKind) SetTimer {
	d.t.Helper()
	for i := len(d.timers) - 1; i >= 0; i-- {
		if d.timers[i].Timer.Kind == kind {
			return d.timers[i]
		}
	}
	d.t.Fatalf("no timer of kind %d armed", kind)
	return SetTimer{}
}

// elapse lets the last timer of kind run out and fires it.
func (d *driver) elapse(kind TimerKind) []Effect {
	d.t.Helper()
	st := d.timer(kind)
	d.clock.Advance(st.After)
	return d.do(TimerFired{Timer: st.Timer})
}

// probe answers the last probe.
func (d *driver) probe(code int, output string) []Effect {
	d.t.Helper()
	if len(d.probes) == 0 {
		d.t.Fatal("no probe asked for")
	}
	return d.do(ProbeDone{Run: d.probes[len(d.probes)-1].Run, Code: code, Output: output})
}

// last is the last event of kind.
func (d *driver) last(kind api.EventKind) api.Event {
	d.t.Helper()
	for i := len(d.events) - 1; i >= 0; i-- {
		if d.events[i].Kind == kind {
			return d.events[i]
		}
	}
	d.t.Fatalf("no %s event", kind)
	return api.Event{}
}

func (d *driver) count(kind api.EventKind) int {
	n := 0
	for _, ev := range d.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

var timerNames = map[TimerKind]string{TimerRestart: "restart", TimerGrace: "grace", TimerProbe: "probe"}

// show renders effects compactly; an event is kind[state].
func show(effs []Effect) []string {
	out := []string{}
	for _, e := range effs {
		var s string
		switch e := e.(type) {
		case Emit:
			s = fmt.Sprintf("%s[%s]", e.Event.Kind, e.Event.State)
		case StartInstance:
			s = "StartInstance"
		case CheckInstance:
			s = "CheckInstance"
		case StartProcess:
			s = fmt.Sprintf("StartProcess(%d)", e.Run)
		case SignalProcess:
			s = fmt.Sprintf("SignalProcess(%d,%s)", e.Run, e.Signal)
		case KillProcess:
			s = fmt.Sprintf("KillProcess(%d)", e.Run)
		case StopInstance:
			s = "StopInstance"
		case SetTimer:
			s = fmt.Sprintf("SetTimer(%s/%d,%v)", timerNames[e.Timer.Kind], e.Timer.Run, e.After)
		case Probe:
			s = fmt.Sprintf("Probe(%d,%v)", e.Run, e.Timeout)
		default:
			s = fmt.Sprintf("%T", e)
		}
		out = append(out, s)
	}
	return out
}

func wantEffects(t *testing.T, what string, got []Effect, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if g := show(got); !slices.Equal(g, want) {
		t.Fatalf("%s:\n got  %s\n want %s", what, strings.Join(g, " "), strings.Join(want, " "))
	}
}

// events picks the events out of effects.
func events(effs []Effect) []api.Event {
	var evs []api.Event
	for _, e := range effs {
		if em, ok := e.(Emit); ok {
			evs = append(evs, em.Event)
		}
	}
	return evs
}

func eventOf(t *testing.T, effs []Effect, kind api.EventKind) api.Event {
	t.Helper()
	for _, ev := range events(effs) {
		if ev.Kind == kind {
			return ev
		}
	}
	t.Fatalf("no %s event in %v", kind, show(effs))
	return api.Event{}
}

// step is one input of a script, the effects it must produce (unperformed)
// and the state after it.
type step struct {
	in    Input
	want  []string
	state api.State
}

func (d *driver) script(steps []step) {
	d.t.Helper()
	for i, s := range steps {
		got := d.feed(s.in)
		wantEffects(d.t, fmt.Sprintf("step %d: %T%+v", i+1, s.in, s.in), got, s.want...)
		if d.state() != s.state {
			d.t.Fatalf("step %d: %T: state %q, want %q", i+1, s.in, d.state(), s.state)
		}
	}
}

func dur(d time.Duration) *time.Duration { return &d }

func TestStateNames(t *testing.T) {
	tests := []struct {
		s      State
		name   string
		public api.State
	}{
		{Waiting, "waiting", api.StateWaiting},
		{Creating, "creating", api.StateCreating},
		{Starting, "starting", api.StateStarting},
		{Running, "running", api.StateRunning},
		{Stopping, "stopping", api.StateStopping},
		{Restarting, "restarting", api.StateRestarting},
		{Checking, "checking", api.StateRestarting},
		{Exited, "exited", api.StateExited},
		{Failed, "failed", api.StateFailed},
		{Removing, "removing", api.StateStopping},
		{Stopped, "stopped", api.StateStopped},
		{Created, "created", api.StateCreated},
		{State(42), "state(42)", api.StateStopped},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.name {
			t.Errorf("State(%d).String() = %q, want %q", int(tt.s), got, tt.name)
		}
		if got := tt.s.Public(); got != tt.public {
			t.Errorf("%s.Public() = %q, want %q", tt.name, got, tt.public)
		}
	}
}

// ---- start ----

func TestNormalStart(t *testing.T) {
	d := newDriver(t, service("web", noPolicy))
	d.wantState(api.StateWaiting)
	if d.m.State() != Waiting || d.m.Done() {
		t.Fatalf("new machine: %v, Done %v", d.m.State(), d.m.Done())
	}
	d.script([]step{
		{Begin{}, []string{"creating[creating]", "StartInstance"}, api.StateCreating},
	})
	d.clock.Advance(300 * ms)
	d.script([]step{
		{InstanceStarted{}, []string{"create[starting]", "StartProcess(1)"}, api.StateStarting},
	})
	d.clock.Advance(200 * ms)
	d.script([]step{
		{ProcessStarted{Run: 1, Pid: 4242}, []string{"start[running]"}, api.StateRunning},
	})
	lines := []string{}
	for _, ev := range d.events {
		lines = append(lines, ev.Line())
	}
	wantLines := []string{"Instance p.web.1  Creating", "Instance p.web.1  Created", "Instance p.web.1  Started"}
	if !slices.Equal(lines, wantLines) {
		t.Errorf("lines %q, want %q", lines, wantLines)
	}
	started := d.last(api.EventStarted)
	if started.Pid != 4242 || started.Delay != 500*ms || started.Restart {
		t.Errorf("started event: pid %d delay %v restart %v, want 4242 500ms false", started.Pid, started.Delay, started.Restart)
	}
	snap := d.m.Snapshot()
	if snap.Pid != 4242 || snap.Restarts != 0 || snap.ExitCode != 0 || snap.Health != api.HealthNone || snap.Reason != "" {
		t.Errorf("snapshot %+v", snap)
	}
	if !snap.Since.Equal(t0.Add(500 * ms)) {
		t.Errorf("Since %v, want the time the process started", snap.Since)
	}
	// A second Begin and duplicate results change nothing.
	for _, in := range []Input{Begin{}, InstanceStarted{}, InstanceChecked{Exists: true}, InstanceStopped{}, DependencyChanged{Status: DepStatus{Service: "x", Started: true}}} {
		wantEffects(t, fmt.Sprintf("%T while running", in), d.feed(in))
		d.wantState(api.StateRunning)
	}
}

// A held replica (up --no-start) is created only: it begins Created, a
// user's stop leaves it so, a start runs it as a first start, and the
// teardown removes it with nothing to stop.
func TestHeldUntilStarted(t *testing.T) {
	d := newDriver(t, service("web", always))
	d.cfg.Held = true
	d.m = New(d.cfg, d.clock)
	d.script([]step{
		{Begin{}, []string{"state[created]"}, api.StateCreated},
		{StopRequested{}, nil, api.StateCreated},
	})
	wantEffects(t, "start", d.do(StartRequested{}), "state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "start[running]")

	d = newDriver(t, service("web", always))
	d.cfg.Held = true
	d.m = New(d.cfg, d.clock)
	d.do(Begin{})
	wantEffects(t, "final stop", d.do(StopRequested{Final: true}), "destroy[stopped]")
	if !d.m.Done() {
		t.Error("a created replica removed: not Done")
	}
}

func TestInstanceStartFails(t *testing.T) {
	d := newDriver(t, service("web", always))
	d.instanceErr = errors.New("no space left")
	wantEffects(t, "begin", d.do(Begin{}), "creating[creating]", "StartInstance", "failed[failed]")
	failed := d.last(api.EventFailed)
	wantReason := "instance p.web.1 could not be started: no space left"
	if failed.Message != wantReason || d.m.Snapshot().Reason != wantReason {
		t.Errorf("failed message %q, reason %q", failed.Message, d.m.Snapshot().Reason)
	}
	if got := failed.Line(); got != "web-1 cannot start: "+wantReason {
		t.Errorf("Line() = %q", got)
	}
	// A start tries again from scratch.
	d.instanceErr = nil
	wantEffects(t, "start after failure", d.do(StartRequested{}),
		"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "start[running]")
	if r := d.m.Snapshot().Reason; r != "" {
		t.Errorf("reason %q kept after a successful start", r)
	}
}

func TestProcessStartFails(t *testing.T) {
	// A first run that cannot start its command: the service cannot start.
	d := newDriver(t, service("web", onFailure(1)))
	d.processErr = errors.New("exec: no such file")
	effs := d.do(Begin{})
	wantEffects(t, "begin", effs,
		"creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "failed[failed]")
	if f := eventOf(t, effs, api.EventFailed); f.Line() != "web-1 cannot start: exec: no such file" {
		t.Errorf("failed: %q", f.Line())
	}
	if r := d.m.Snapshot().Reason; r != "exec: no such file" {
		t.Errorf("reason %q", r)
	}

	// A restart that cannot start counts as an exit with code 255.
	d = newDriver(t, service("web", onFailure(2)))
	d.start()
	d.exit(1)
	d.processErr = errors.New("exec: no such file")
	effs = d.elapse(TimerRestart)
	wantEffects(t, "restart", effs, "state[restarting]", "CheckInstance", "restart[starting]", "StartProcess(2)",
		"warning[starting]", "die[restarting]", "SetTimer(restart/2,200ms)")
	if w := eventOf(t, effs, api.EventWarning); w.Message != "exec: no such file" || w.Line() != "web-1: exec: no such file" {
		t.Errorf("warning %q / %q", w.Message, w.Line())
	}
	if died := eventOf(t, effs, api.EventDied); died.ExitCode != 255 {
		t.Errorf("exit code %d, want 255", died.ExitCode)
	}
}

// ---- dependencies ----

func TestDependencies(t *testing.T) {
	started := DepStatus{Service: "db", Started: true}
	healthy := DepStatus{Service: "db", Started: true, Healthy: true}
	unhealthy := DepStatus{Service: "db", Started: true, Unhealthy: true}
	exited := func(code int) DepStatus { return DepStatus{Service: "db", Started: true, Exited: true, ExitCode: code} }
	failed := DepStatus{Service: "db", Failed: true, Reason: "instance p.db.1 could not be started: boom"}
	notStarted := DepStatus{Service: "db"}

	const waiting, creating, failedS = api.StateWaiting, api.StateCreating, api.StateFailed
	tests := []struct {
		name    string
		deps    []compose.Dependency
		updates []DepStatus
		states  []api.State // after each update
		reason  string      // of the failure, if it fails
	}{
		{"started: waits for the start", []compose.Dependency{dep("db", compose.ConditionStarted, true, false)},
			[]DepStatus{notStarted, started}, []api.State{waiting, creating}, ""},
		{"empty condition means started", []compose.Dependency{dep("db", "", true, false)},
			[]DepStatus{started}, []api.State{creating}, ""},
		{"started: exit before the start fails", []compose.Dependency{dep("db", compose.ConditionStarted, true, false)},
			[]DepStatus{{Service: "db", Exited: true, ExitCode: 2}}, []api.State{failedS},
			`dependency "db" exited with code 2 before its process started`},
		{"started: an exit after the start is fine", []compose.Dependency{dep("db", compose.ConditionStarted, true, false)},
			[]DepStatus{exited(2)}, []api.State{creating}, ""},
		{"healthy: started is not enough", []compose.Dependency{dep("db", compose.ConditionHealthy, true, false)},
			[]DepStatus{started, healthy}, []api.State{waiting, creating}, ""},
		{"healthy: unhealthy fails", []compose.Dependency{dep("db", compose.ConditionHealthy, true, false)},
			[]DepStatus{started, unhealthy}, []api.State{waiting, failedS}, `dependency "db" is unhealthy`},
		{"healthy: an exit fails", []compose.Dependency{dep("db", compose.ConditionHealthy, true, false)},
			[]DepStatus{exited(1)}, []api.State{failedS}, `dependency "db" exited with code 1 before it became healthy`},
		{"completed: waits for the exit", []compose.Dependency{dep("db", compose.ConditionCompletedSuccessfully, true, false)},
			[]DepStatus{started, healthy, exited(0)}, []api.State{waiting, waiting, creating}, ""},
		{"completed: a failure fails", []compose.Dependency{dep("db", compose.ConditionCompletedSuccessfully, true, false)},
			[]DepStatus{started, exited(3)}, []api.State{waiting, failedS}, `dependency "db" did not complete successfully: exit 3`},
		{"a failed dependency fails for every condition", []compose.Dependency{dep("db", compose.ConditionCompletedSuccessfully, true, false)},
			[]DepStatus{failed}, []api.State{failedS}, `dependency "db" failed: instance p.db.1 could not be started: boom`},
		{"failed wins over healthy", []compose.Dependency{dep("db", compose.ConditionHealthy, true, false)},
			[]DepStatus{{Service: "db", Started: true, Healthy: true, Failed: true, Reason: "gave up"}}, []api.State{failedS},
			`dependency "db" failed: gave up`},
		{"an unknown service's status is ignored", []compose.Dependency{dep("db", compose.ConditionStarted, true, false)},
			[]DepStatus{{Service: "cache", Started: true}, started}, []api.State{waiting, creating}, ""},
		{"two dependencies: both are needed",
			[]compose.Dependency{dep("db", compose.ConditionHealthy, true, false), dep("init", compose.ConditionCompletedSuccessfully, true, false)},
			[]DepStatus{healthy, {Service: "init", Started: true}, {Service: "init", Started: true, Exited: true}},
			[]api.State{waiting, waiting, creating}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, service("web", noPolicy), tt.deps...)
			wantEffects(t, "begin", d.do(Begin{}))
			d.wantState(api.StateWaiting)
			for i, u := range tt.updates {
				d.feed(DependencyChanged{Status: u})
				if d.state() != tt.states[i] {
					t.Fatalf("after update %d (%+v): state %q, want %q", i+1, u, d.state(), tt.states[i])
				}
			}
			if tt.reason != "" {
				ev := d.last(api.EventFailed)
				if ev.Message != tt.reason || d.m.Snapshot().Reason != tt.reason {
					t.Errorf("failed: message %q reason %q, want %q", ev.Message, d.m.Snapshot().Reason, tt.reason)
				}
				if ev.Line() != "web-1 cannot start: "+tt.reason {
					t.Errorf("Line() = %q", ev.Line())
				}
				if d.count(api.EventCreating) != 0 {
					t.Error("a failed replica was created")
				}
				// Later news about the dependency changes nothing.
				wantEffects(t, "update after the failure", d.do(DependencyChanged{Status: healthy}))
				d.wantState(api.StateFailed)
			}
			if tt.states[len(tt.states)-1] == creating {
				d.do(InstanceStarted{})
				d.wantState(api.StateRunning)
				if d.count(api.EventCreating) != 1 {
					t.Errorf("%d creating events", d.count(api.EventCreating))
				}
				// Once created, dependencies do not matter any more.
				wantEffects(t, "failure after the start", d.do(DependencyChanged{Status: failed}))
			}
		})
	}
}

func TestDependencyBeforeBegin(t *testing.T) {
	// The actor feeds Begin first; a status that came earlier is kept.
	d := newDriver(t, service("web", noPolicy), dep("db", compose.ConditionHealthy, true, false))
	d.feed(DependencyChanged{Status: DepStatus{Service: "db", Started: true}})
	d.wantState(api.StateWaiting)
	wantEffects(t, "begin", d.feed(Begin{}))
	wantEffects(t, "healthy", d.feed(DependencyChanged{Status: DepStatus{Service: "db", Started: true, Healthy: true}}),
		"creating[creating]", "StartInstance")
}

func TestOptionalDependencyWarnsOnce(t *testing.T) {
	d := newDriver(t, service("web", noPolicy),
		dep("cache", compose.ConditionHealthy, false, false),
		dep("db", compose.ConditionStarted, true, false))
	d.do(Begin{})
	effs := d.do(DependencyChanged{Status: DepStatus{Service: "cache", Started: true, Unhealthy: true}})
	wantEffects(t, "optional unhealthy", effs, "warning[waiting]")
	w := eventOf(t, effs, api.EventWarning)
	wantLine := `web-1: optional dependency "cache" is unhealthy; starting without it (required: false)`
	if w.Line() != wantLine {
		t.Errorf("Line() = %q, want %q", w.Line(), wantLine)
	}
	// Again, still waiting for db: no second warning.
	wantEffects(t, "optional unhealthy again", d.do(DependencyChanged{Status: DepStatus{Service: "cache", Started: true, Unhealthy: true}}))
	wantEffects(t, "db started", d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}}),
		"creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "start[running]")
	if n := d.count(api.EventWarning); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}

func TestOptionalDependencyAlone(t *testing.T) {
	tests := []struct {
		name   string
		cond   string
		status DepStatus
		why    string
	}{
		{"failed", compose.ConditionStarted, DepStatus{Service: "cache", Failed: true, Reason: "gave up"}, "failed: gave up"},
		{"not completed", compose.ConditionCompletedSuccessfully, DepStatus{Service: "cache", Started: true, Exited: true, ExitCode: 4}, "did not complete successfully: exit 4"},
		{"exited unhealthy", compose.ConditionHealthy, DepStatus{Service: "cache", Started: true, Exited: true, ExitCode: 1}, "exited with code 1 before it became healthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, service("web", noPolicy), dep("cache", tt.cond, false, false))
			d.do(Begin{})
			effs := d.do(DependencyChanged{Status: tt.status})
			wantEffects(t, "optional never", effs,
				"warning[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "start[running]")
			want := fmt.Sprintf("optional dependency %q %s; starting without it (required: false)", "cache", tt.why)
			if w := eventOf(t, effs, api.EventWarning); w.Message != want {
				t.Errorf("message %q, want %q", w.Message, want)
			}
		})
	}
}

func TestRequiredFailureWinsOverOptional(t *testing.T) {
	d := newDriver(t, service("web", noPolicy),
		dep("cache", compose.ConditionStarted, false, false),
		dep("db", compose.ConditionStarted, true, false))
	d.do(Begin{})
	d.do(DependencyChanged{Status: DepStatus{Service: "db", Failed: true, Reason: "boom"}})
	d.wantState(api.StateFailed)
	if r := d.m.Snapshot().Reason; r != `dependency "db" failed: boom` {
		t.Errorf("reason %q", r)
	}
}

// ---- restart policies ----

// exitRun is one run: it lasts ran, exits with code, and the Died event's
// line says line.
type exitRun struct {
	ran  time.Duration
	code int
	line string
}

func TestRestartPolicies(t *testing.T) {
	const db = "db-1 exited with code "
	tests := []struct {
		name     string
		policy   compose.RestartPolicy
		runs     []exitRun
		state    api.State
		restarts int
	}{
		{"no policy", noPolicy, []exitRun{{time.Second, 1, db + "1"}}, api.StateExited, 0},
		{`restart: "no"`, restartNo, []exitRun{{time.Second, 3, db + "3"}}, api.StateExited, 0},
		{"on-failure:3 gives up after 3 restarts", onFailure(3), []exitRun{
			{time.Second, 1, db + "1, restarting in 100ms (attempt 1 of 3)"},
			{time.Second, 1, db + "1, restarting in 200ms (attempt 2 of 3)"},
			{time.Second, 2, db + "2, restarting in 400ms (attempt 3 of 3)"},
			{time.Second, 1, db + "1, giving up after 3 attempts"},
		}, api.StateExited, 3},
		{"on-failure:5", onFailure(5), []exitRun{
			{0, 3, db + "3, restarting in 100ms (attempt 1 of 5)"},
			{0, 3, db + "3, restarting in 200ms (attempt 2 of 5)"},
			{0, 0, db + "0"},
		}, api.StateExited, 2},
		{"on-failure:1", onFailure(1), []exitRun{
			{0, 1, db + "1, restarting in 100ms (attempt 1 of 1)"},
			{0, 1, db + "1, giving up after 1 attempt"},
		}, api.StateExited, 1},
		{"on-failure success", onFailure(3), []exitRun{{0, 0, db + "0"}}, api.StateExited, 0},
		{"on-failure unlimited, no reset by a long run", onFailure(0), []exitRun{
			{0, 1, db + "1, restarting in 100ms (attempt 1)"},
			{0, 1, db + "1, restarting in 200ms (attempt 2)"},
			{10 * time.Second, 1, db + "1, restarting in 100ms (attempt 3)"},
			{0, 0, db + "0"},
		}, api.StateExited, 3},
		{"always: doubling, reset after a 10s run", always, []exitRun{
			{0, 0, db + "0, restarting in 100ms (attempt 1)"},
			{time.Second, 1, db + "1, restarting in 200ms (attempt 2)"},
			{9999 * ms, 0, db + "0, restarting in 400ms (attempt 3)"},
			{10 * time.Second, 0, db + "0, restarting in 100ms (attempt 4)"},
			{0, 0, db + "0, restarting in 200ms (attempt 5)"},
		}, api.StateRestarting, 4},
		{"always: capped at a minute", always, []exitRun{
			{0, 1, db + "1, restarting in 100ms (attempt 1)"},
			{0, 1, db + "1, restarting in 200ms (attempt 2)"},
			{0, 1, db + "1, restarting in 400ms (attempt 3)"},
			{0, 1, db + "1, restarting in 800ms (attempt 4)"},
			{0, 1, db + "1, restarting in 1.6s (attempt 5)"},
			{0, 1, db + "1, restarting in 3.2s (attempt 6)"},
			{0, 1, db + "1, restarting in 6.4s (attempt 7)"},
			{0, 1, db + "1, restarting in 12.8s (attempt 8)"},
			{0, 1, db + "1, restarting in 25.6s (attempt 9)"},
			{0, 1, db + "1, restarting in 51.2s (attempt 10)"},
			{0, 1, db + "1, restarting in 1m (attempt 11)"},
			{0, 1, db + "1, restarting in 1m (attempt 12)"},
		}, api.StateRestarting, 11},
		{"unless-stopped is always", compose.RestartPolicy{Source: "restart", Condition: "unless-stopped"}, []exitRun{
			{0, 0, db + "0, restarting in 100ms (attempt 1)"},
			{0, 0, db + "0, restarting in 200ms (attempt 2)"},
		}, api.StateRestarting, 1},
		{"deploy on-failure: fixed delay, max attempts", compose.RestartPolicy{Source: "deploy", Condition: "on-failure", MaxAttempts: 2, Delay: 5 * time.Second}, []exitRun{
			{0, 1, db + "1, restarting in 5s (attempt 1 of 2)"},
			{0, 1, db + "1, restarting in 5s (attempt 2 of 2)"},
			{0, 1, db + "1, giving up after 2 attempts"},
		}, api.StateExited, 2},
		{"deploy any: a run of window resets the count", compose.RestartPolicy{Source: "deploy", MaxAttempts: 1, Window: 30 * time.Second}, []exitRun{
			{0, 0, db + "0, restarting now (attempt 1 of 1)"},
			{30 * time.Second, 0, db + "0, restarting now (attempt 1 of 1)"},
			{29 * time.Second, 0, db + "0, giving up after 1 attempt"},
		}, api.StateExited, 2},
		{"deploy none", compose.RestartPolicy{Source: "deploy", Condition: "none"}, []exitRun{{0, 1, db + "1"}}, api.StateExited, 0},
		{"deploy on-failure success", compose.RestartPolicy{Source: "deploy", Condition: "on-failure"}, []exitRun{{0, 0, db + "0"}}, api.StateExited, 0},
		{"unknown condition", compose.RestartPolicy{Source: "restart", Condition: "sometimes"}, []exitRun{{0, 1, db + "1"}}, api.StateExited, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, service("db", tt.policy))
			d.start()
			for i, r := range tt.runs {
				d.clock.Advance(r.ran)
				effs := d.exit(r.code)
				died := eventOf(t, effs, api.EventDied)
				if got := died.Line(); got != r.line {
					t.Fatalf("run %d: Line() = %q, want %q", i+1, got, r.line)
				}
				if died.ExitCode != r.code || died.Requested || d.m.Snapshot().ExitCode != r.code || d.m.Snapshot().Pid != 0 {
					t.Errorf("run %d: died %+v, snapshot %+v", i+1, died, d.m.Snapshot())
				}
				if died.GaveUp != strings.Contains(r.line, "giving up") {
					t.Errorf("run %d: GaveUp %v", i+1, died.GaveUp)
				}
				if !died.Restart {
					wantEffects(t, fmt.Sprintf("run %d exit", i+1), effs, "die[exited]")
					if i != len(tt.runs)-1 {
						t.Fatalf("run %d: no restart, %d more runs expected", i+1, len(tt.runs)-1-i)
					}
					break
				}
				wantEffects(t, fmt.Sprintf("run %d exit", i+1), effs,
					"die[restarting]", fmt.Sprintf("SetTimer(restart/%d,%v)", i+1, died.Delay))
				if i == len(tt.runs)-1 {
					break
				}
				effs = d.elapse(TimerRestart)
				wantEffects(t, fmt.Sprintf("run %d restart", i+1), effs,
					"state[restarting]", "CheckInstance", "restart[starting]", fmt.Sprintf("StartProcess(%d)", i+2), "start[running]")
				if ev := eventOf(t, effs, api.EventStarted); !ev.Restart || ev.Pid != pidOf(i+2) {
					t.Errorf("run %d: started %+v", i+2, ev)
				}
			}
			d.wantState(tt.state)
			if d.run != len(tt.runs) {
				t.Errorf("%d runs, want %d", d.run, len(tt.runs))
			}
			if got := d.m.Snapshot().Restarts; got != tt.restarts {
				t.Errorf("Restarts %d, want %d", got, tt.restarts)
			}
		})
	}
}

func TestOnFailureDiedFields(t *testing.T) {
	d := newDriver(t, service("db", onFailure(2)))
	d.start()
	type fields struct {
		restart              bool
		delay                time.Duration
		attempt, maxAttempts int
		gaveUp               bool
	}
	want := []fields{
		{true, 100 * ms, 1, 2, false},
		{true, 200 * ms, 2, 2, false},
		{false, 0, 2, 2, true},
	}
	for i, w := range want {
		died := eventOf(t, d.exit(7), api.EventDied)
		got := fields{died.Restart, died.Delay, died.Attempt, died.MaxAttempts, died.GaveUp}
		if got != w {
			t.Fatalf("exit %d: %+v, want %+v", i+1, got, w)
		}
		if died.Restart {
			d.elapse(TimerRestart)
		}
	}
	if d.run != 3 {
		t.Errorf("%d runs, want 3", d.run)
	}
	d.wantState(api.StateExited)
	wantEffects(t, "the same exit again", d.do(ProcessExited{Run: 3, Code: 7}))
	// Nothing restarts it: a late restart timer is not the policy's.
	wantEffects(t, "old restart timer", d.do(TimerFired{Timer: Timer{Kind: TimerRestart, Run: 2}}))
	wantEffects(t, "restart timer of this run", d.do(TimerFired{Timer: Timer{Kind: TimerRestart, Run: 3}}))
	d.wantState(api.StateExited)
}

func TestRestartChecksInstance(t *testing.T) {
	t.Run("instance still there", func(t *testing.T) {
		d := newDriver(t, service("db", always))
		d.start()
		d.exit(1)
		d.clock.Advance(100 * ms)
		d.script([]step{
			{TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}}, []string{"state[restarting]", "CheckInstance"}, api.StateRestarting},
		})
		if d.m.Snapshot().Restarts != 1 {
			t.Errorf("Restarts %d after the timer", d.m.Snapshot().Restarts)
		}
		d.clock.Advance(30 * ms)
		d.script([]step{
			{InstanceChecked{Exists: true}, []string{"restart[starting]", "StartProcess(2)"}, api.StateStarting},
		})
		ev := d.last(api.EventRestarting)
		if ev.Recreate || ev.User || ev.Dependency != "" {
			t.Errorf("restarting event %+v", ev)
		}
		if got := ev.Line(); got != "db-1: restarting the process in instance p.db.1" {
			t.Errorf("Line() = %q", got)
		}
		d.clock.Advance(20 * ms)
		d.script([]step{{ProcessStarted{Run: 2, Pid: 77}, []string{"start[running]"}, api.StateRunning}})
		if st := d.last(api.EventStarted); !st.Restart || st.Delay != 50*ms || st.Pid != 77 {
			t.Errorf("started %+v, want Restart, delay 50ms from the timer", st)
		}
	})
	t.Run("instance gone", func(t *testing.T) {
		d := newDriver(t, service("db", always))
		d.start()
		d.exit(1)
		d.exists = false
		effs := d.elapse(TimerRestart)
		wantEffects(t, "restart", effs,
			"state[restarting]", "CheckInstance", "restart[creating]", "StartInstance", "state[starting]", "StartProcess(2)", "start[running]")
		ev := eventOf(t, effs, api.EventRestarting)
		if !ev.Recreate {
			t.Error("Recreate false for a gone instance")
		}
		if got := ev.Line(); got != "db-1: instance p.db.1 is gone, recreating it" {
			t.Errorf("Line() = %q", got)
		}
		if d.count(api.EventCreated) != 1 {
			t.Errorf("%d created events, want only the first", d.count(api.EventCreated))
		}
	})
	t.Run("instance cannot be recreated", func(t *testing.T) {
		d := newDriver(t, service("db", always))
		d.start()
		d.exit(1)
		d.exists, d.instanceErr = false, errors.New("image gone")
		effs := d.elapse(TimerRestart)
		wantEffects(t, "restart", effs, "state[restarting]", "CheckInstance", "restart[creating]", "StartInstance", "failed[failed]")
		if r := d.m.Snapshot().Reason; r != "instance p.db.1 could not be started: image gone" {
			t.Errorf("reason %q", r)
		}
		// A teardown now has no instance to stop.
		wantEffects(t, "stop", d.do(StopRequested{Final: true}), "destroy[stopped]")
		if !d.last(api.EventDestroyed).NoInstance {
			t.Error("NoInstance false")
		}
	})
}

// ---- stale inputs ----

func TestStaleInputsDropped(t *testing.T) {
	hc := compose.Healthcheck{Interval: 5 * time.Second, Timeout: time.Second, Retries: 1}
	// secondRun: run 1 exited and was restarted; run 2 is running, and
	// run 1 had a probe timer, a probe and a grace timer of its own.
	secondRun := func(t *testing.T) *driver {
		d := newDriver(t, withHealth(service("web", always), hc))
		d.start()
		d.elapse(TimerProbe)
		d.exit(1)
		d.elapse(TimerRestart)
		d.wantState(api.StateRunning)
		if d.run != 2 {
			t.Fatalf("run %d", d.run)
		}
		return d
	}
	tests := []struct {
		name string
		in   Input
		want []string
	}{
		{"exit of run 1", ProcessExited{Run: 1, Code: 1}, nil},
		{"exit of a future run", ProcessExited{Run: 3, Code: 1}, nil},
		{"restart timer of run 1", TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}}, nil},
		{"restart timer of run 2 while running", TimerFired{Timer: Timer{Kind: TimerRestart, Run: 2}}, nil},
		{"grace timer of run 1", TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}, nil},
		{"grace timer of run 2 while running", TimerFired{Timer: Timer{Kind: TimerGrace, Run: 2}}, nil},
		{"probe timer of run 1", TimerFired{Timer: Timer{Kind: TimerProbe, Run: 1}}, nil},
		{"probe result of run 1", ProbeDone{Run: 1, Code: 1, Output: "down"}, nil},
		{"process start of run 1", ProcessStarted{Run: 1, Pid: 9}, []string{"KillProcess(1)"}},
		{"failed process start of run 1", ProcessStarted{Run: 1, Err: errors.New("x")}, nil},
		{"second start of run 2", ProcessStarted{Run: 2, Pid: 9}, []string{"KillProcess(2)"}},
		{"instance started", InstanceStarted{}, nil},
		{"instance checked", InstanceChecked{Exists: false}, nil},
		{"instance stopped", InstanceStopped{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := secondRun(t)
			before := d.m.Snapshot()
			wantEffects(t, "stale input", d.do(tt.in), tt.want...)
			if after := d.m.Snapshot(); !reflect.DeepEqual(after, before) {
				t.Errorf("snapshot changed:\n before %+v\n after  %+v", before, after)
			}
		})
	}
}

// ---- healthcheck ----

func TestHealthcheck(t *testing.T) {
	hc := compose.Healthcheck{Interval: 10 * time.Second, Timeout: 3 * time.Second, Retries: 2}
	d := newDriver(t, withHealth(service("web", noPolicy), hc))
	wantEffects(t, "start", d.do(Begin{}),
		"creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "start[running]", "SetTimer(probe/1,10s)")
	if h := d.m.Snapshot().Health; h != api.HealthStarting {
		t.Errorf("health %q after the start, want starting", h)
	}
	type probe struct {
		took   time.Duration
		code   int
		output string
		want   []string
		health api.Health
		line   string // of the health event, if any
	}
	probes := []probe{
		{time.Second, 0, "", []string{"health_status[running]", "SetTimer(probe/1,10s)"}, api.HealthHealthy, "web-1 is healthy"},
		{time.Second, 0, "", []string{"SetTimer(probe/1,10s)"}, api.HealthHealthy, ""},
		{time.Second, 1, "boom", []string{"SetTimer(probe/1,10s)"}, api.HealthHealthy, ""},
		{time.Second, 1, "starting\nconnection refused", []string{"health_status[running]", "SetTimer(probe/1,10s)"}, api.HealthUnhealthy, "web-1 is unhealthy: connection refused"},
		{time.Second, 1, "", []string{"SetTimer(probe/1,10s)"}, api.HealthUnhealthy, ""},
		{time.Second, 0, "", []string{"health_status[running]", "SetTimer(probe/1,10s)"}, api.HealthHealthy, "web-1 is healthy"},
		{time.Second, 1, "", []string{"SetTimer(probe/1,10s)"}, api.HealthHealthy, ""},
		{time.Second, 2, "", []string{"health_status[running]", "SetTimer(probe/1,10s)"}, api.HealthUnhealthy, "web-1 is unhealthy: healthcheck failed"},
	}
	for i, p := range probes {
		wantEffects(t, fmt.Sprintf("probe %d due", i+1), d.elapse(TimerProbe), "Probe(1,3s)")
		d.clock.Advance(p.took)
		effs := d.probe(p.code, p.output)
		wantEffects(t, fmt.Sprintf("probe %d done", i+1), effs, p.want...)
		if h := d.m.Snapshot().Health; h != p.health {
			t.Fatalf("probe %d: health %q, want %q", i+1, h, p.health)
		}
		if p.line != "" {
			ev := eventOf(t, effs, api.EventHealth)
			if ev.Line() != p.line || ev.Health != p.health {
				t.Errorf("probe %d: %q (%s), want %q", i+1, ev.Line(), ev.Health, p.line)
			}
		}
	}
	d.wantState(api.StateRunning)
}

func TestHealthcheckTimeoutMessage(t *testing.T) {
	d := newDriver(t, withHealth(service("web", noPolicy), compose.Healthcheck{Retries: 1}))
	d.start()
	if st := d.timer(TimerProbe); st.After != 30*time.Second {
		t.Errorf("first probe after %v, want the default 30s", st.After)
	}
	wantEffects(t, "probe due", d.elapse(TimerProbe), "Probe(1,30s)")
	effs := d.do(ProbeDone{Run: 1, Code: 0, TimedOut: true, Output: "partial"})
	if ev := eventOf(t, effs, api.EventHealth); ev.Line() != "web-1 is unhealthy: healthcheck timed out" {
		t.Errorf("Line() = %q", ev.Line())
	}
}

func TestHealthcheckStartPeriod(t *testing.T) {
	hc := compose.Healthcheck{Interval: 30 * time.Second, Timeout: time.Second, Retries: 1,
		StartPeriod: 10 * time.Second, StartInterval: 4 * time.Second}
	d := newDriver(t, withHealth(service("web", noPolicy), hc))
	d.start()
	if st := d.timer(TimerProbe); st.After != 4*time.Second {
		t.Fatalf("first probe after %v, want start_interval 4s", st.After)
	}
	// 4s: fails inside the start period, forgiven.
	wantEffects(t, "probe at 4s", d.elapse(TimerProbe), "Probe(1,1s)")
	wantEffects(t, "result at 4s", d.probe(1, ""), "SetTimer(probe/1,4s)")
	// 8s: fails, forgiven; the next probe is capped at the period's end.
	wantEffects(t, "probe at 8s", d.elapse(TimerProbe), "Probe(1,1s)")
	wantEffects(t, "result at 8s", d.probe(1, ""), "SetTimer(probe/1,2s)")
	// 10s: outside the start period; started outside, so it counts.
	wantEffects(t, "probe at 10s", d.elapse(TimerProbe), "Probe(1,1s)")
	d.clock.Advance(500 * ms)
	wantEffects(t, "result at 10.5s", d.probe(1, "nope"), "health_status[running]", "SetTimer(probe/1,30s)")
	if h := d.m.Snapshot().Health; h != api.HealthUnhealthy {
		t.Errorf("health %q, want unhealthy", h)
	}
}

func TestHealthcheckStartPeriodByProbeStart(t *testing.T) {
	// A probe that started inside the start period is forgiven even when
	// its result comes after it.
	hc := compose.Healthcheck{Interval: 30 * time.Second, Timeout: 5 * time.Second, Retries: 1,
		StartPeriod: 10 * time.Second, StartInterval: 9 * time.Second}
	d := newDriver(t, withHealth(service("web", noPolicy), hc))
	d.start()
	wantEffects(t, "probe at 9s", d.elapse(TimerProbe), "Probe(1,5s)")
	d.clock.Advance(4 * time.Second)
	wantEffects(t, "result at 13s", d.probe(1, ""), "SetTimer(probe/1,30s)")
	if h := d.m.Snapshot().Health; h != api.HealthStarting {
		t.Errorf("health %q, want starting (forgiven)", h)
	}
	// A success ends the start period's forgiveness at once.
	d2 := newDriver(t, withHealth(service("web", noPolicy), compose.Healthcheck{Retries: 1, StartPeriod: time.Minute, StartInterval: time.Second}))
	d2.start()
	d2.elapse(TimerProbe)
	wantEffects(t, "success", d2.probe(0, ""), "health_status[running]", "SetTimer(probe/1,30s)")
	d2.elapse(TimerProbe)
	wantEffects(t, "failure in the start period after a success", d2.probe(1, ""), "health_status[running]", "SetTimer(probe/1,30s)")
	if h := d2.m.Snapshot().Health; h != api.HealthUnhealthy {
		t.Errorf("health %q, want unhealthy", h)
	}
}

func TestNoProbesAfterExit(t *testing.T) {
	hc := compose.Healthcheck{Interval: 5 * time.Second, Timeout: time.Second}
	t.Run("exit with a timer pending", func(t *testing.T) {
		d := newDriver(t, withHealth(service("web", noPolicy), hc))
		d.start()
		d.elapse(TimerProbe)
		d.probe(0, "")
		wantEffects(t, "exit", d.exit(0), "die[exited]")
		if h := d.m.Snapshot().Health; h != api.HealthNone {
			t.Errorf("health %q after the exit", h)
		}
		wantEffects(t, "probe timer after the exit", d.elapse(TimerProbe))
	})
	t.Run("exit with a probe in flight", func(t *testing.T) {
		d := newDriver(t, withHealth(service("web", always), hc))
		d.start()
		d.elapse(TimerProbe)
		d.exit(1)
		wantEffects(t, "probe result after the exit", d.do(ProbeDone{Run: 1, Code: 0}))
		d.wantState(api.StateRestarting)
		if h := d.m.Snapshot().Health; h != api.HealthNone {
			t.Errorf("health %q", h)
		}
		// The next run gets a new tracker and timers of its own.
		wantEffects(t, "restart", d.elapse(TimerRestart),
			"state[restarting]", "CheckInstance", "restart[starting]", "StartProcess(2)", "start[running]", "SetTimer(probe/2,5s)")
		if h := d.m.Snapshot().Health; h != api.HealthStarting {
			t.Errorf("health %q after the restart, want starting", h)
		}
	})
	t.Run("stopping", func(t *testing.T) {
		d := newDriver(t, withHealth(service("web", noPolicy), hc))
		d.start()
		d.do(StopRequested{Final: true})
		wantEffects(t, "probe timer while stopping", d.do(TimerFired{Timer: Timer{Kind: TimerProbe, Run: 1}}))
		wantEffects(t, "probe result while stopping", d.do(ProbeDone{Run: 1, Code: 1}))
	})
	t.Run("probe result while starting the next run", func(t *testing.T) {
		d := newDriver(t, withHealth(service("web", always), hc))
		d.start()
		d.elapse(TimerProbe)
		d.exit(1)
		d.clock.Advance(100 * ms)
		d.feed(TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}})
		d.feed(InstanceChecked{Exists: true})
		d.wantState(api.StateStarting)
		wantEffects(t, "probe of run 1 while run 2 starts", d.feed(ProbeDone{Run: 1, Code: 0}))
	})
}

// ---- stop ----

func TestFinalStop(t *testing.T) {
	toStarting := func(d *driver) {
		d.feed(Begin{})
		d.feed(InstanceStarted{})
		d.wantState(api.StateStarting)
	}
	stopped := []string{"destroy[stopped]"}
	tests := []struct {
		name       string
		reach      func(d *driver)
		steps      []step
		noInstance bool // the Destroyed event says there never was one
	}{
		{"waiting", func(d *driver) {
			d.do(Begin{})
			d.wantState(api.StateWaiting)
		}, []step{
			{StopRequested{Final: true}, stopped, api.StateStopped},
		}, true},
		{"creating", func(d *driver) { d.feed(Begin{}) }, []step{
			{StopRequested{Final: true}, nil, api.StateCreating},
			{InstanceStarted{}, []string{"state[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"creating, instance start fails", func(d *driver) { d.feed(Begin{}) }, []step{
			{StopRequested{Final: true}, nil, api.StateCreating},
			{InstanceStarted{Err: errors.New("x")}, stopped, api.StateStopped},
		}, true},
		{"starting", toStarting, []step{
			{StopRequested{Final: true}, nil, api.StateStarting},
			{ProcessStarted{Run: 1, Pid: 5}, []string{"start[running]", "stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 143}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"starting, kill", toStarting, []step{
			{StopRequested{Final: true, Kill: true}, nil, api.StateStarting},
			{ProcessStarted{Run: 1, Pid: 5}, []string{"start[running]", "stop[stopping]", "KillProcess(1)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"starting, process start fails", toStarting, []step{
			{StopRequested{Final: true}, nil, api.StateStarting},
			{ProcessStarted{Run: 1, Err: errors.New("x")}, []string{"warning[starting]", "die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"running, exits in time", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true}, []string{"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 0}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}, nil, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
			{TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}, nil, api.StateStopped},
		}, false},
		{"running, grace expires", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true}, []string{"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"}, api.StateStopping},
			{TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}, []string{"kill[stopping]", "KillProcess(1)"}, api.StateStopping},
			{TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}, nil, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"running, kill", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true, Kill: true}, []string{"stop[stopping]", "KillProcess(1)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"running, timeout override", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true, Timeout: dur(3 * time.Second)}, []string{"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,3s)"}, api.StateStopping},
			{TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}, []string{"kill[stopping]", "KillProcess(1)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"running, timeout 0 kills", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true, Timeout: dur(0)}, []string{"stop[stopping]", "KillProcess(1)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"running, kill wins over a timeout", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true, Kill: true, Timeout: dur(time.Minute)}, []string{"stop[stopping]", "KillProcess(1)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"stopping, then kill", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true}, []string{"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"}, api.StateStopping},
			{StopRequested{Final: true}, nil, api.StateStopping},
			{StopRequested{Final: true, Kill: true}, []string{"kill[stopping]", "KillProcess(1)"}, api.StateStopping},
			{StopRequested{Final: true, Kill: true}, nil, api.StateStopping},
			{TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}, nil, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"restarting", func(d *driver) { d.start(); d.exit(1) }, []step{
			{StopRequested{Final: true}, []string{"state[stopping]", "StopInstance"}, api.StateStopping},
			{TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}}, nil, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
			{TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}}, nil, api.StateStopped},
		}, false},
		{"checking", func(d *driver) { d.restartDue(1) }, []step{
			{StopRequested{Final: true}, nil, api.StateRestarting},
			{InstanceChecked{Exists: true}, []string{"state[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"checking, instance gone", func(d *driver) { d.restartDue(1) }, []step{
			{StopRequested{Final: true}, nil, api.StateRestarting},
			{InstanceChecked{Exists: false}, []string{"state[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"recreating", func(d *driver) {
			d.restartDue(1)
			d.feed(InstanceChecked{Exists: false})
		}, []step{
			{StopRequested{Final: true}, nil, api.StateCreating},
			{InstanceStarted{}, []string{"state[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"exited", func(d *driver) {
			d.start()
			d.exit(1)
			d.elapse(TimerRestart)
			d.exit(1) // on-failure:1 gave up
			d.wantState(api.StateExited)
		}, []step{
			{StopRequested{Final: true}, []string{"state[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"failed, instance start failed", func(d *driver) {
			d.instanceErr = errors.New("x")
			d.do(Begin{})
			d.wantState(api.StateFailed)
		}, []step{
			{StopRequested{Final: true}, stopped, api.StateStopped},
		}, true},
		{"removing", func(d *driver) { d.start(); d.do(StopRequested{Final: true}); d.feed(ProcessExited{Run: 1}) }, []step{
			{StopRequested{Final: true, Kill: true}, nil, api.StateStopping},
			{InstanceStopped{}, stopped, api.StateStopped},
		}, false},
		{"instance stop fails", func(d *driver) { d.start() }, []step{
			{StopRequested{Final: true, Kill: true}, []string{"stop[stopping]", "KillProcess(1)"}, api.StateStopping},
			{ProcessExited{Run: 1, Code: 137}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
			{InstanceStopped{Err: errors.New("instance busy")}, []string{"warning[stopping]", "destroy[stopped]"}, api.StateStopped},
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var deps []compose.Dependency
			if tt.name == "waiting" {
				deps = append(deps, dep("db", compose.ConditionStarted, true, false))
			}
			restart := always
			if tt.name == "exited" {
				restart = onFailure(1)
			}
			d := newDriver(t, service("web", restart), deps...)
			tt.reach(d)
			d.script(tt.steps)
			if !d.m.Done() {
				t.Fatalf("not done in %q", d.state())
			}
			destroyed := d.last(api.EventDestroyed)
			if destroyed.NoInstance != tt.noInstance {
				t.Errorf("NoInstance %v, want %v", destroyed.NoInstance, tt.noInstance)
			}
			wantLine := "Instance p.web.1  Stopped"
			if tt.noInstance {
				wantLine = ""
			}
			if got := destroyed.Line(); got != wantLine {
				t.Errorf("Line() = %q, want %q", got, wantLine)
			}
			if n := d.count(api.EventDestroyed); n != 1 {
				t.Errorf("%d destroyed events", n)
			}
			for _, ev := range d.events {
				if ev.Kind == api.EventStopping && ev.User {
					t.Errorf("a teardown's stop is marked User")
				}
			}
			snap := d.m.Snapshot()
			if snap.Pid != 0 || snap.Health != api.HealthNone {
				t.Errorf("snapshot after the stop: %+v", snap)
			}
			// Nothing brings a replica stopped for good back.
			for _, in := range []Input{StartRequested{}, RestartRequested{}, Begin{}, StopRequested{Final: true}, StopRequested{},
				DependencyChanged{Status: DepStatus{Service: "db", Started: true, Restarted: true}}, SignalRequested{Signal: "SIGTERM"},
				TimerFired{Timer: Timer{Kind: TimerRestart, Run: d.m.run}}} {
				wantEffects(t, fmt.Sprintf("%T after the teardown", in), d.do(in))
				d.wantState(api.StateStopped)
			}
		})
	}
}

func TestStopEvents(t *testing.T) {
	d := newDriver(t, service("web", always))
	d.cfg.Service.StopSignal = "SIGINT"
	d.cfg.Service.StopGracePeriod = 2 * time.Second
	d.start()
	effs := d.do(StopRequested{Final: true})
	wantEffects(t, "stop", effs, "stop[stopping]", "SignalProcess(1,SIGINT)", "SetTimer(grace/1,2s)")
	stop := eventOf(t, effs, api.EventStopping)
	if stop.Signal != "SIGINT" || stop.User || stop.Line() != "Instance p.web.1  Stopping" {
		t.Errorf("stopping %+v / %q", stop, stop.Line())
	}
	d.clock.Advance(2 * time.Second)
	killed := eventOf(t, d.do(TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}), api.EventKilled)
	if killed.Signal != "SIGKILL" || killed.Grace != 2*time.Second || killed.User {
		t.Errorf("killed %+v", killed)
	}
	if got := killed.Line(); got != "web-1 did not stop within 2s, killing it" {
		t.Errorf("Line() = %q", got)
	}
	died := eventOf(t, d.exit(137), api.EventDied)
	// A teardown's exit is no news on the console, as in docker compose.
	if !died.Requested || !died.Final || died.Restart || died.ExitCode != 137 || died.Line() != "" {
		t.Errorf("died %+v / %q", died, died.Line())
	}
	if d.m.Snapshot().Restarts != 0 {
		t.Error("the teardown's exit counted as a restart")
	}
	d.wantState(api.StateStopped)

	// Kill: the Stopping event names SIGKILL.
	d = newDriver(t, service("web", always))
	d.start()
	if ev := eventOf(t, d.do(StopRequested{Final: true, Kill: true}), api.EventStopping); ev.Signal != "SIGKILL" {
		t.Errorf("kill stop signal %q", ev.Signal)
	}
}

func TestStopInstanceErrorWarning(t *testing.T) {
	d := newDriver(t, service("web", noPolicy))
	d.start()
	d.do(StopRequested{Final: true, Kill: true})
	d.feed(ProcessExited{Run: 1, Code: 137})
	effs := d.feed(InstanceStopped{Err: errors.New("instance busy")})
	w := eventOf(t, effs, api.EventWarning)
	if w.Line() != "p.web.1: instance busy" {
		t.Errorf("Line() = %q", w.Line())
	}
	if !d.m.Done() {
		t.Error("not done after a failed instance stop")
	}
}

// ---- user stop and start ----

func TestUserStopHoldsPolicy(t *testing.T) {
	d := newDriver(t, service("web", always))
	d.start()
	d.script([]step{
		{StopRequested{}, []string{"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"}, api.StateStopping},
	})
	if ev := d.last(api.EventStopping); !ev.User {
		t.Error("a user's stop is not marked User")
	}
	d.script([]step{
		{ProcessExited{Run: 1, Code: 1}, []string{"die[stopping]", "StopInstance"}, api.StateStopping},
		{InstanceStopped{}, []string{"destroy[stopped]"}, api.StateStopped},
	})
	if died := d.last(api.EventDied); !died.Requested || died.Restart {
		t.Errorf("died %+v", died)
	}
	// Nothing but a start brings it back.
	wantEffects(t, "late restart timer", d.do(TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}}))
	wantEffects(t, "dependency", d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}}))
	d.wantState(api.StateStopped)
	wantEffects(t, "start", d.do(StartRequested{}),
		"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(3)", "start[running]")
	if st := d.last(api.EventStarted); st.Restart || st.Pid != pidOf(3) {
		t.Errorf("started %+v", st)
	}
	// The policy applies again.
	wantEffects(t, "exit after the start", d.exit(1), "die[restarting]", "SetTimer(restart/3,100ms)")
	wantEffects(t, "start while restarting", d.do(StartRequested{}))
}

func TestUserStopInEveryState(t *testing.T) {
	tests := []struct {
		name   string
		policy compose.RestartPolicy
		deps   []compose.Dependency
		reach  func(d *driver)
		// effects of the stop (performed), and of the start that follows
		stop, start []string
	}{
		{"waiting", always, []compose.Dependency{dep("db", compose.ConditionStarted, true, false)},
			func(d *driver) { d.do(Begin{}) },
			[]string{"destroy[stopped]"},
			[]string{"state[waiting]"}}, // still waiting for db
		{"running", always, nil, func(d *driver) { d.start() },
			[]string{"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"},
			nil},
		{"restarting", always, nil, func(d *driver) { d.start(); d.exit(1) },
			[]string{"state[stopping]", "StopInstance", "destroy[stopped]"},
			[]string{"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(3)", "start[running]"}},
		{"exited", noPolicy, nil, func(d *driver) { d.start(); d.exit(0) },
			[]string{"state[stopping]", "StopInstance", "destroy[stopped]"},
			[]string{"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(3)", "start[running]"}},
		{"failed", always, nil, func(d *driver) {
			d.instanceErr = errors.New("x")
			d.do(Begin{})
			d.instanceErr = nil
		},
			[]string{"destroy[stopped]"},
			[]string{"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "start[running]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, service("web", tt.policy), tt.deps...)
			tt.reach(d)
			wantEffects(t, "stop", d.do(StopRequested{}), tt.stop...)
			if tt.name == "running" {
				d.exit(0)
				d.wantState(api.StateStopped)
				tt.start = []string{"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(3)", "start[running]"}
			}
			d.wantState(api.StateStopped)
			wantEffects(t, "start", d.do(StartRequested{}), tt.start...)
			if tt.name == "waiting" {
				d.wantState(api.StateWaiting)
				wantEffects(t, "db started", d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}}),
					"creating[creating]", "StartInstance", "create[starting]", "StartProcess(1)", "start[running]")
			}
			d.wantState(api.StateRunning)
		})
	}
}

func TestUserStopWhileStarting(t *testing.T) {
	d := newDriver(t, service("web", always))
	d.feed(Begin{})
	d.script([]step{
		{StopRequested{}, nil, api.StateCreating},
		{InstanceStarted{}, []string{"state[stopping]", "StopInstance"}, api.StateStopping},
		{InstanceStopped{}, []string{"destroy[stopped]"}, api.StateStopped},
	})
	// Run numbers go on: the instance stop made every run-1 input stale.
	wantEffects(t, "start", d.do(StartRequested{}),
		"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(2)", "start[running]")
}

func TestStartFromExited(t *testing.T) {
	d := newDriver(t, service("web", noPolicy))
	d.start()
	d.exit(3)
	d.wantState(api.StateExited)
	if d.m.Snapshot().ExitCode != 3 {
		t.Errorf("exit code %d", d.m.Snapshot().ExitCode)
	}
	d.clock.Advance(time.Second)
	d.script([]step{
		{StartRequested{}, []string{"state[restarting]", "CheckInstance"}, api.StateRestarting},
		{InstanceChecked{Exists: true}, []string{"restart[starting]", "StartProcess(2)"}, api.StateStarting},
		{ProcessStarted{Run: 2, Pid: 8}, []string{"start[running]"}, api.StateRunning},
	})
	if ev := d.last(api.EventRestarting); !ev.User || ev.Recreate {
		t.Errorf("restarting %+v", ev)
	}
	if d.m.Snapshot().Restarts != 0 {
		t.Errorf("a user's start counted as a restart")
	}
	// From exited with the instance gone: it is recreated.
	d.exit(0)
	d.exists = false
	wantEffects(t, "start, instance gone", d.do(StartRequested{}),
		"state[restarting]", "CheckInstance", "restart[creating]", "StartInstance", "state[starting]", "StartProcess(3)", "start[running]")
	// Start while running, or twice: nothing.
	wantEffects(t, "start while running", d.do(StartRequested{}))
}

// ---- user restart ----

func TestRestartRequestedRunning(t *testing.T) {
	d := newDriver(t, service("web", onFailure(3)))
	d.start()
	d.script([]step{
		{RestartRequested{}, []string{"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"}, api.StateStopping},
		{ProcessExited{Run: 1, Code: 143}, []string{"die[restarting]", "CheckInstance"}, api.StateRestarting},
		{InstanceChecked{Exists: true}, []string{"restart[starting]", "StartProcess(2)"}, api.StateStarting},
		{ProcessStarted{Run: 2, Pid: 12}, []string{"start[running]"}, api.StateRunning},
	})
	if ev := d.last(api.EventStopping); !ev.User || ev.Signal != "SIGTERM" {
		t.Errorf("a user restart's stop: %+v, want User and SIGTERM", ev)
	}
	died := d.last(api.EventDied)
	if !died.Requested || died.Final || died.Restart || died.Attempt != 0 || died.Line() != "web-1 exited with code 143" {
		t.Errorf("died %+v / %q", died, died.Line())
	}
	if ev := d.last(api.EventRestarting); !ev.User || ev.Dependency != "" || ev.Recreate {
		t.Errorf("restarting %+v", ev)
	}
	if st := d.last(api.EventStarted); !st.Restart {
		t.Error("started after a user restart is not marked Restart")
	}
	if n := d.m.Snapshot().Restarts; n != 0 {
		t.Errorf("Restarts %d after a user restart, want 0", n)
	}
	// The grace timer of run 1 is stale now.
	wantEffects(t, "grace timer of run 1", d.do(TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}))
	// The policy's backoff and attempts did not move: the first failure
	// is still attempt 1, 100ms.
	wantEffects(t, "failure", d.exit(1), "die[restarting]", "SetTimer(restart/2,100ms)")
	if got := d.last(api.EventDied).Line(); got != "web-1 exited with code 1, restarting in 100ms (attempt 1 of 3)" {
		t.Errorf("Line() = %q", got)
	}
}

func TestRestartRequestedGrace(t *testing.T) {
	d := newDriver(t, service("web", noPolicy))
	d.start()
	wantEffects(t, "restart -t 1", d.do(RestartRequested{Timeout: dur(time.Second)}),
		"stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,1s)")
	killed := eventOf(t, d.elapse(TimerGrace), api.EventKilled)
	if killed.Grace != time.Second {
		t.Errorf("grace %v", killed.Grace)
	}
	wantEffects(t, "exit", d.exit(137), "die[restarting]", "CheckInstance", "restart[starting]", "StartProcess(2)", "start[running]")

	wantEffects(t, "restart -t 0", d.do(RestartRequested{Timeout: dur(0)}), "stop[stopping]", "KillProcess(2)")
}

func TestRestartRequestedOtherStates(t *testing.T) {
	t.Run("restarting: the pending timer is dropped", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.start()
		d.exit(1)
		wantEffects(t, "restart", d.do(RestartRequested{}), "state[restarting]", "CheckInstance", "restart[starting]", "StartProcess(3)", "start[running]")
		if ev := d.last(api.EventRestarting); !ev.User {
			t.Error("not marked User")
		}
		wantEffects(t, "the policy's timer", d.do(TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}}))
		if n := d.m.Snapshot().Restarts; n != 0 {
			t.Errorf("Restarts %d", n)
		}
	})
	t.Run("exited", func(t *testing.T) {
		d := newDriver(t, service("web", noPolicy))
		d.start()
		d.exit(0)
		// Run 2 is skipped: the restart makes a pending timer stale.
		wantEffects(t, "restart", d.do(RestartRequested{}), "state[restarting]", "CheckInstance", "restart[starting]", "StartProcess(3)", "start[running]")
	})
	t.Run("stopped by the user", func(t *testing.T) {
		d := newDriver(t, service("web", noPolicy))
		d.start()
		d.do(StopRequested{Kill: true})
		d.exit(137)
		d.wantState(api.StateStopped)
		wantEffects(t, "restart", d.do(RestartRequested{}),
			"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(3)", "start[running]")
	})
	t.Run("stopping for a restart", func(t *testing.T) {
		d := newDriver(t, service("web", noPolicy))
		d.start()
		d.do(RestartRequested{})
		wantEffects(t, "second restart", d.do(RestartRequested{}))
		wantEffects(t, "exit", d.exit(0), "die[restarting]", "CheckInstance", "restart[starting]", "StartProcess(2)", "start[running]")
	})
	t.Run("stop during a restart wins", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.start()
		d.do(RestartRequested{})
		wantEffects(t, "stop", d.do(StopRequested{Final: true}))
		wantEffects(t, "exit", d.exit(0), "die[stopping]", "StopInstance", "destroy[stopped]")
	})
	t.Run("stop while checking for a restart", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.start()
		d.do(RestartRequested{})
		d.feed(ProcessExited{Run: 1})
		d.wantState(api.StateRestarting)
		wantEffects(t, "stop", d.do(StopRequested{}))
		wantEffects(t, "checked", d.do(InstanceChecked{Exists: true}), "state[stopping]", "StopInstance", "destroy[stopped]")
	})
	t.Run("waiting: nothing", func(t *testing.T) {
		d := newDriver(t, service("web", noPolicy), dep("db", compose.ConditionStarted, true, false))
		d.do(Begin{})
		wantEffects(t, "restart", d.do(RestartRequested{}))
		d.wantState(api.StateWaiting)
	})
}

// ---- signals ----

// docker kill holds the restart policy only for SIGKILL and the
// container's stop signal (moby daemon/kill.go); any other signal, such as
// a SIGHUP that reloads a server, leaves the policy in force.
func TestSignalRequested(t *testing.T) {
	restarts := []string{"die[restarting]", "SetTimer(restart/1,100ms)"}
	exits := []string{"die[exited]"}
	tests := []struct {
		stopSignal string // the service's stop_signal
		signal     string
		code       int
		exit       []string // effects of the exit that follows
		state      api.State
		held       bool
	}{
		{"SIGTERM", "SIGUSR1", 1, restarts, api.StateRestarting, false},
		{"SIGTERM", "SIGHUP", 0, restarts, api.StateRestarting, false},
		{"SIGTERM", "SIGTERM", 143, exits, api.StateExited, true},
		{"SIGTERM", "SIGINT", 130, restarts, api.StateRestarting, false},
		{"SIGTERM", "SIGQUIT", 131, restarts, api.StateRestarting, false},
		{"SIGTERM", "SIGKILL", 137, exits, api.StateExited, true},
		{"SIGINT", "SIGINT", 130, exits, api.StateExited, true},
		{"SIGINT", "SIGTERM", 143, restarts, api.StateRestarting, false},
		{"SIGQUIT", "SIGQUIT", 131, exits, api.StateExited, true},
		{"SIGQUIT", "SIGKILL", 137, exits, api.StateExited, true},
		{"SIGHUP", "SIGHUP", 0, exits, api.StateExited, true},
	}
	for _, tt := range tests {
		t.Run(tt.signal+" with stop_signal "+tt.stopSignal, func(t *testing.T) {
			s := service("web", always)
			s.StopSignal = tt.stopSignal
			d := newDriver(t, s)
			d.start()
			effs := d.do(SignalRequested{Signal: tt.signal})
			wantEffects(t, "signal", effs, "kill[running]", "SignalProcess(1,"+tt.signal+")")
			ev := eventOf(t, effs, api.EventKilled)
			if !ev.User || ev.Signal != tt.signal || ev.Line() != "web-1: sent "+tt.signal {
				t.Errorf("killed %+v / %q", ev, ev.Line())
			}
			effs = d.exit(tt.code)
			wantEffects(t, "exit", effs, tt.exit...)
			d.wantState(tt.state)
			if died := eventOf(t, effs, api.EventDied); died.Requested != tt.held {
				t.Errorf("Requested %v, want %v", died.Requested, tt.held)
			}
			if tt.held {
				// A start undoes the hold.
				wantEffects(t, "start", d.do(StartRequested{}), "state[restarting]", "CheckInstance", "restart[starting]", "StartProcess(2)", "start[running]")
				wantEffects(t, "exit after the start", d.exit(1), "die[restarting]", "SetTimer(restart/2,100ms)")
			}
		})
	}
}

func TestSignalOtherStates(t *testing.T) {
	d := newDriver(t, service("web", always), dep("db", compose.ConditionStarted, true, false))
	d.do(Begin{})
	wantEffects(t, "waiting", d.do(SignalRequested{Signal: "SIGTERM"}))
	d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}})
	d.exit(1)
	wantEffects(t, "restarting", d.do(SignalRequested{Signal: "SIGTERM"}))
	d.elapse(TimerRestart)
	d.do(StopRequested{Final: true})
	wantEffects(t, "stopping", d.do(SignalRequested{Signal: "SIGUSR2"}), "kill[stopping]", "SignalProcess(2,SIGUSR2)")
}

// ---- depends_on.restart ----

func TestFollowDependencyRestart(t *testing.T) {
	dbRestarted := DependencyChanged{Status: DepStatus{Service: "db", Started: true, Restarted: true}}
	d := newDriver(t, service("web", onFailure(1)), dep("db", compose.ConditionStarted, true, true))
	d.do(Begin{})
	d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}})
	d.wantState(api.StateRunning)
	d.script([]step{
		{dbRestarted, []string{"follow[running]", "stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)"}, api.StateStopping},
		{dbRestarted, nil, api.StateStopping},
		{ProcessExited{Run: 1, Code: 143}, []string{"die[restarting]", "CheckInstance"}, api.StateRestarting},
		{dbRestarted, nil, api.StateRestarting},
		{InstanceChecked{Exists: true}, []string{"restart[starting]", "StartProcess(2)"}, api.StateStarting},
		{ProcessStarted{Run: 2, Pid: 3}, []string{"start[running]"}, api.StateRunning},
	})
	follow := d.last(api.EventFollowDep)
	if follow.Dependency != "db" || follow.Line() != "web-1 restarting because its dependency db restarted" {
		t.Errorf("follow %+v / %q", follow, follow.Line())
	}
	if ev := d.last(api.EventStopping); ev.User {
		t.Error("a followed dependency's stop is marked User")
	}
	if ev := d.last(api.EventRestarting); ev.Dependency != "db" || ev.User {
		t.Errorf("restarting %+v", ev)
	}
	if died := d.last(api.EventDied); !died.Requested {
		t.Error("the exit is not marked Requested")
	}
	if n := d.m.Snapshot().Restarts; n != 0 {
		t.Errorf("Restarts %d", n)
	}
	// The next policy restart is not marked with the dependency.
	d.exit(1)
	d.elapse(TimerRestart)
	if ev := d.last(api.EventRestarting); ev.Dependency != "" || ev.User {
		t.Errorf("policy restart %+v", ev)
	}
}

func TestFollowDependencyIgnored(t *testing.T) {
	tests := []struct {
		name   string
		deps   []compose.Dependency
		status DepStatus
	}{
		{"restart false", []compose.Dependency{dep("db", compose.ConditionStarted, true, false)},
			DepStatus{Service: "db", Started: true, Restarted: true}},
		{"not restarted", []compose.Dependency{dep("db", compose.ConditionStarted, true, true)},
			DepStatus{Service: "db", Started: true}},
		{"another service", []compose.Dependency{dep("db", compose.ConditionStarted, true, true)},
			DepStatus{Service: "cache", Started: true, Restarted: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, service("web", noPolicy), tt.deps...)
			d.do(Begin{})
			d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}})
			d.wantState(api.StateRunning)
			wantEffects(t, "update", d.do(DependencyChanged{Status: tt.status}))
			d.wantState(api.StateRunning)
		})
	}
	t.Run("not running", func(t *testing.T) {
		d := newDriver(t, service("web", always), dep("db", compose.ConditionStarted, true, true))
		d.do(Begin{})
		d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}})
		d.exit(1)
		wantEffects(t, "restarting", d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true, Restarted: true}}))
		d.wantState(api.StateRestarting)
	})
}

// ---- invariants over a long script ----

func TestLongScript(t *testing.T) {
	// Every input in turn, with the driver checking each batch's events.
	hc := compose.Healthcheck{Interval: time.Second, Timeout: time.Second, Retries: 1}
	d := newDriver(t, withHealth(service("web", onFailure(2)), hc), dep("db", compose.ConditionHealthy, true, true))
	d.do(Begin{})
	d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true, Healthy: true}})
	d.elapse(TimerProbe)
	d.probe(0, "")
	d.do(SignalRequested{Signal: "SIGUSR1"})
	d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true, Healthy: true, Restarted: true}})
	d.exit(143)
	d.elapse(TimerProbe)
	d.probe(1, "down")
	d.exit(2)
	d.exists = false
	d.elapse(TimerRestart)
	d.do(RestartRequested{})
	d.elapse(TimerGrace)
	d.exit(137)
	d.do(StopRequested{})
	d.exit(0)
	d.do(StartRequested{})
	d.exit(1)
	d.do(StopRequested{Final: true, Kill: true})
	d.wantState(api.StateStopped)
	kinds := []string{}
	for _, ev := range d.events {
		kinds = append(kinds, string(ev.Kind))
	}
	want := []string{
		"creating", "create", "start", "health_status", "kill", // probe, SIGUSR1
		"follow", "stop", "die", "restart", "start", // depends_on.restart
		"health_status", "die", "state", "restart", "state", "start", // unhealthy, exit 2, timer, recreate
		"stop", "kill", "die", "restart", "state", "start", // user restart, grace, recreate
		"stop", "die", "destroy", // user stop
		"state", "creating", "create", "start", "die", // start, exit 1 under on-failure:2
		"state", "destroy", // teardown of a restarting replica
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("events:\n got  %v\n want %v", kinds, want)
	}
	// The start reset the count: the exit after it is attempt 1 again.
	if got, want := d.last(api.EventDied).Line(), "web-1 exited with code 1, restarting in 100ms (attempt 1 of 2)"; got != want {
		t.Errorf("last exit: Line() = %q, want %q", got, want)
	}
}

// ---- reruns, starts, holds and the events that tell them ----

// A Died event followed by a rerun (a user's restart, a followed
// dependency, a user's start during a user's stop) carries the state the
// machine is in once the batch is out: checking the instance, which ps
// shows as "restarting". It comes before CheckInstance.
func TestDiedBeforeRerunIsInCheckingState(t *testing.T) {
	dbStarted := DependencyChanged{Status: DepStatus{Service: "db", Started: true}}
	dbRestarted := DependencyChanged{Status: DepStatus{Service: "db", Started: true, Restarted: true}}
	tests := []struct {
		name  string
		deps  []compose.Dependency
		reach func(d *driver) // up to the stop that asks for the rerun
	}{
		{"user restart", nil, func(d *driver) {
			d.start()
			d.do(RestartRequested{})
		}},
		{"followed dependency", []compose.Dependency{dep("db", compose.ConditionStarted, true, true)}, func(d *driver) {
			d.do(Begin{})
			d.do(dbStarted)
			d.do(dbRestarted)
		}},
		{"user start during a user stop", nil, func(d *driver) {
			d.start()
			d.do(StopRequested{})
			d.do(StartRequested{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, service("web", noPolicy), tt.deps...)
			tt.reach(d)
			d.wantState(api.StateStopping)
			effs := d.feed(ProcessExited{Run: 1, Code: 143})
			wantEffects(t, "exit", effs, "die[restarting]", "CheckInstance")
			if d.m.State() != Checking {
				t.Errorf("state %v after the exit, want checking", d.m.State())
			}
			died := eventOf(t, effs, api.EventDied)
			if died.State != d.state() || !died.Requested || died.Restart {
				t.Errorf("died %+v, Snapshot().State %q", died, d.state())
			}
			wantEffects(t, "checked", d.do(InstanceChecked{Exists: true}), "restart[starting]", "StartProcess(2)", "start[running]")
		})
	}
}

// docker start resets the restart manager (daemon/start.go,
// ResetRestartManager): a start from stopped, failed or exited begins a new
// count of restarts and a new backoff, and ps shows 0 restarts.
func TestStartResetsRestartCount(t *testing.T) {
	// startResets checks that d counted restarts, that start (a
	// StartRequested) resets the count and that the next exit 1 is
	// restarted after the first delay again, its Died line being died.
	startResets := func(t *testing.T, d *driver, restarts int, start func(), died string) {
		t.Helper()
		if n := d.m.Snapshot().Restarts; n != restarts {
			t.Fatalf("Restarts %d before the start, want %d", n, restarts)
		}
		start()
		if n := d.m.Snapshot().Restarts; n != 0 {
			t.Errorf("Restarts %d after the start, want 0", n)
		}
		if got := eventOf(t, d.exit(1), api.EventDied).Line(); got != died {
			t.Errorf("Line() = %q, want %q", got, died)
		}
	}
	t.Run("exited: a policy that gave up", func(t *testing.T) {
		d := newDriver(t, service("db", onFailure(1)))
		d.start()
		d.exit(1)
		d.elapse(TimerRestart)
		d.exit(1)
		d.wantState(api.StateExited)
		startResets(t, d, 1, func() {
			d.do(StartRequested{})
			d.wantState(api.StateRunning)
		}, "db-1 exited with code 1, restarting in 100ms (attempt 1 of 1)")
	})
	t.Run("stopped: the backoff starts over", func(t *testing.T) {
		d := newDriver(t, service("db", always))
		d.start()
		for _, delay := range []time.Duration{100 * ms, 200 * ms, 400 * ms} {
			if died := eventOf(t, d.exit(1), api.EventDied); died.Delay != delay {
				t.Fatalf("delay %v, want %v", died.Delay, delay)
			}
			if delay != 400*ms {
				d.elapse(TimerRestart)
			}
		}
		d.do(StopRequested{})
		d.wantState(api.StateStopped)
		startResets(t, d, 2, func() { d.do(StartRequested{}) }, "db-1 exited with code 1, restarting in 100ms (attempt 1)")
	})
	t.Run("failed: an instance that could not be recreated", func(t *testing.T) {
		d := newDriver(t, service("db", onFailure(2)))
		d.start()
		d.exit(1)
		d.exists, d.instanceErr = false, errors.New("image gone")
		d.elapse(TimerRestart)
		d.wantState(api.StateFailed)
		startResets(t, d, 1, func() {
			d.exists, d.instanceErr = true, nil
			wantEffects(t, "start", d.do(StartRequested{}),
				"state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(2)", "start[running]")
		}, "db-1 exited with code 1, restarting in 100ms (attempt 1 of 2)")
	})
}

// A signal that is neither SIGKILL nor the stop signal does not hold the
// restart policy: a server reloaded by SIGHUP that crashes an hour later is
// restarted.
func TestReloadSignalDoesNotHoldPolicy(t *testing.T) {
	d := newDriver(t, service("web", always))
	d.start()
	d.do(SignalRequested{Signal: "SIGHUP"})
	d.clock.Advance(time.Hour)
	effs := d.exit(1)
	wantEffects(t, "crash an hour after the reload", effs, "die[restarting]", "SetTimer(restart/1,100ms)")
	if died := eventOf(t, effs, api.EventDied); died.Requested || !died.Restart {
		t.Errorf("died %+v", died)
	}
}

// A hold ends with the run it was sent to: a rerun (a followed
// dependency, a user's restart) gives the new run its restart policy back.
func TestRerunClearsHold(t *testing.T) {
	t.Run("followed dependency", func(t *testing.T) {
		// The process survives a SIGTERM (the stop signal), then db restarts.
		d := newDriver(t, service("web", always), dep("db", compose.ConditionStarted, true, true))
		d.do(Begin{})
		d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true}})
		d.do(SignalRequested{Signal: "SIGTERM"})
		d.do(DependencyChanged{Status: DepStatus{Service: "db", Started: true, Restarted: true}})
		d.exit(143)
		d.wantState(api.StateRunning)
		wantEffects(t, "crash of the new run", d.exit(1), "die[restarting]", "SetTimer(restart/2,100ms)")
	})
	t.Run("user restart", func(t *testing.T) {
		// A SIGKILL sent while a user's restart waits for the exit.
		d := newDriver(t, service("web", always))
		d.start()
		d.do(RestartRequested{})
		d.do(SignalRequested{Signal: "SIGKILL"})
		wantEffects(t, "exit", d.exit(137), "die[restarting]", "CheckInstance", "restart[starting]", "StartProcess(2)", "start[running]")
		wantEffects(t, "crash of the new run", d.exit(1), "die[restarting]", "SetTimer(restart/2,100ms)")
	})
}

// A user's start undoes a user's stop still in progress, whatever the
// stop has reached; the last word is the user's start.
func TestStartCancelsPendingStop(t *testing.T) {
	t.Run("creating", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.feed(Begin{})
		wantEffects(t, "stop", d.feed(StopRequested{}))
		wantEffects(t, "start", d.feed(StartRequested{}))
		wantEffects(t, "instance up", d.do(InstanceStarted{}), "create[starting]", "StartProcess(1)", "start[running]")
		// Not held: the policy applies.
		wantEffects(t, "crash", d.exit(1), "die[restarting]", "SetTimer(restart/1,100ms)")
	})
	t.Run("starting", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.feed(Begin{})
		d.feed(InstanceStarted{})
		d.wantState(api.StateStarting)
		wantEffects(t, "stop", d.feed(StopRequested{}))
		wantEffects(t, "start", d.feed(StartRequested{}))
		wantEffects(t, "process up", d.do(ProcessStarted{Run: 1, Pid: 5}), "start[running]")
		wantEffects(t, "crash", d.exit(1), "die[restarting]", "SetTimer(restart/1,100ms)")
	})
	t.Run("checking", func(t *testing.T) {
		d := newDriver(t, service("web", noPolicy))
		d.start()
		d.exit(0)
		d.feed(StartRequested{})
		d.wantState(api.StateRestarting)
		wantEffects(t, "stop", d.feed(StopRequested{}))
		wantEffects(t, "start", d.feed(StartRequested{}))
		wantEffects(t, "checked", d.do(InstanceChecked{Exists: true}), "restart[starting]", "StartProcess(2)", "start[running]")
		if ev := d.last(api.EventRestarting); !ev.User {
			t.Errorf("restarting %+v, want User", ev)
		}
	})
	t.Run("stopping: a rerun after the exit", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.start()
		wantEffects(t, "stop", d.do(StopRequested{}), "stop[stopping]", "SignalProcess(1,SIGTERM)", "SetTimer(grace/1,10s)")
		wantEffects(t, "start", d.do(StartRequested{}))
		d.wantState(api.StateStopping)
		wantEffects(t, "exit", d.exit(143), "die[restarting]", "CheckInstance", "restart[starting]", "StartProcess(2)", "start[running]")
		if ev := d.last(api.EventRestarting); !ev.User || ev.Recreate || ev.Dependency != "" {
			t.Errorf("restarting %+v, want a user's", ev)
		}
		if died := d.last(api.EventDied); !died.Requested || died.Restart {
			t.Errorf("died %+v", died)
		}
		if n := d.m.Snapshot().Restarts; n != 0 {
			t.Errorf("Restarts %d", n)
		}
		wantEffects(t, "grace timer of run 1", d.do(TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}))
		wantEffects(t, "crash", d.exit(1), "die[restarting]", "SetTimer(restart/2,100ms)")
	})
	t.Run("stopping for a teardown: nothing", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.start()
		d.do(StopRequested{Final: true})
		wantEffects(t, "start", d.do(StartRequested{}))
		wantEffects(t, "exit", d.exit(143), "die[stopping]", "StopInstance", "destroy[stopped]")
	})
	for _, in := range []Input{StartRequested{}, RestartRequested{}} {
		t.Run(fmt.Sprintf("removing: %T starts again once stopped", in), func(t *testing.T) {
			d := newDriver(t, service("web", always))
			d.start()
			d.do(StopRequested{})
			wantEffects(t, "exit", d.feed(ProcessExited{Run: 1, Code: 143}), "die[stopping]", "StopInstance")
			wantEffects(t, "start", d.feed(in))
			d.wantState(api.StateStopping)
			wantEffects(t, "instance stopped", d.do(InstanceStopped{}),
				"destroy[stopped]", "state[waiting]", "creating[creating]", "StartInstance", "create[starting]", "StartProcess(3)", "start[running]")
			wantEffects(t, "crash", d.exit(1), "die[restarting]", "SetTimer(restart/3,100ms)")
		})
	}
	t.Run("removing for a teardown: nothing", func(t *testing.T) {
		d := newDriver(t, service("web", always))
		d.start()
		d.do(StopRequested{Final: true})
		d.feed(ProcessExited{Run: 1, Code: 143})
		wantEffects(t, "start", d.feed(StartRequested{}))
		wantEffects(t, "instance stopped", d.do(InstanceStopped{}), "destroy[stopped]")
	})
}

// A kill that escalates a stop already in progress tells it.
func TestKillEscalatesStop(t *testing.T) {
	for _, final := range []bool{true, false} {
		t.Run(fmt.Sprintf("final %v", final), func(t *testing.T) {
			d := newDriver(t, service("web", always))
			d.start()
			d.do(StopRequested{Final: final})
			effs := d.do(StopRequested{Final: final, Kill: true})
			wantEffects(t, "kill during a stop", effs, "kill[stopping]", "KillProcess(1)")
			if ev := eventOf(t, effs, api.EventKilled); ev.Signal != "SIGKILL" || ev.User {
				t.Errorf("killed %+v", ev)
			}
			wantEffects(t, "kill again", d.do(StopRequested{Final: final, Kill: true}))
			wantEffects(t, "grace timer", d.do(TimerFired{Timer: Timer{Kind: TimerGrace, Run: 1}}))
			wantEffects(t, "exit", d.exit(137), "die[stopping]", "StopInstance", "destroy[stopped]")
			if n := d.count(api.EventKilled); n != 1 {
				t.Errorf("%d killed events", n)
			}
		})
	}
}

// Every change of state is told by an event, so that a ps row built from
// the events (as the stack supervisor does) follows Snapshot(); the ones
// nothing else tells get a state event, which is not printed.
func TestStateChangesAreTold(t *testing.T) {
	plays := []struct {
		name   string
		policy compose.RestartPolicy
		deps   []compose.Dependency
		reach  func(d *driver)
		in     Input
		want   []string // effects of in, unperformed
	}{
		{"teardown of an exited replica", noPolicy, nil, func(d *driver) { d.start(); d.exit(0) },
			StopRequested{Final: true}, []string{"state[stopping]", "StopInstance"}},
		{"user stop of an exited replica", noPolicy, nil, func(d *driver) { d.start(); d.exit(0) },
			StopRequested{}, []string{"state[stopping]", "StopInstance"}},
		{"teardown of a restarting replica", always, nil, func(d *driver) { d.start(); d.exit(0) },
			StopRequested{Final: true}, []string{"state[stopping]", "StopInstance"}},
		{"policy restart due", always, nil, func(d *driver) { d.start(); d.exit(0); d.clock.Advance(100 * ms) },
			TimerFired{Timer: Timer{Kind: TimerRestart, Run: 1}}, []string{"state[restarting]", "CheckInstance"}},
		{"start of an exited replica", noPolicy, nil, func(d *driver) { d.start(); d.exit(0) },
			StartRequested{}, []string{"state[restarting]", "CheckInstance"}},
		{"restart of an exited replica", noPolicy, nil, func(d *driver) { d.start(); d.exit(0) },
			RestartRequested{}, []string{"state[restarting]", "CheckInstance"}},
		{"restart of a restarting replica", always, nil, func(d *driver) { d.start(); d.exit(0) },
			RestartRequested{}, []string{"state[restarting]", "CheckInstance"}},
		{"instance up for a pending stop", noPolicy, nil, func(d *driver) {
			d.feed(Begin{})
			d.feed(StopRequested{Final: true})
		}, InstanceStarted{}, []string{"state[stopping]", "StopInstance"}},
		{"instance gone for a pending stop", always, nil, func(d *driver) {
			d.restartDue(0)
			d.feed(StopRequested{Final: true})
		}, InstanceChecked{Exists: false}, []string{"state[stopping]", "StopInstance"}},
		{"instance recreated", noPolicy, nil, func(d *driver) {
			d.start()
			d.exit(0)
			d.feed(StartRequested{})
			d.feed(InstanceChecked{Exists: false})
		}, InstanceStarted{}, []string{"state[starting]", "StartProcess(2)"}},
		{"start of a stopped replica", noPolicy, nil, func(d *driver) { d.start(); d.do(StopRequested{}); d.exit(0) },
			StartRequested{}, []string{"state[waiting]", "creating[creating]", "StartInstance"}},
		{"start of a stopped replica that waits for a dependency", noPolicy,
			[]compose.Dependency{dep("db", compose.ConditionHealthy, true, false)},
			func(d *driver) { d.do(Begin{}); d.do(StopRequested{}) },
			StartRequested{}, []string{"state[waiting]"}},
		{"start of a failed replica", noPolicy, nil, func(d *driver) {
			d.instanceErr = errors.New("x")
			d.do(Begin{})
		}, StartRequested{}, []string{"state[waiting]", "creating[creating]", "StartInstance"}},
	}
	for _, p := range plays {
		t.Run(p.name, func(t *testing.T) {
			d := newDriver(t, service("web", p.policy), p.deps...)
			p.reach(d)
			before := d.state()
			effs := d.feed(p.in)
			wantEffects(t, fmt.Sprintf("%T", p.in), effs, p.want...)
			if ps := d.events[len(d.events)-1].State; ps != d.state() {
				t.Errorf("ps from the events says %q, Snapshot().State %q (was %q)", ps, d.state(), before)
			}
			if ev := eventOf(t, effs, api.EventState); ev.Line() != "" || ev.Action() != "state" {
				t.Errorf("state event: Line() %q, Action() %q", ev.Line(), ev.Action())
			}
		})
	}
}

// A policy that gave up leaves the replica Exited, not Failed: Failed is
// for a replica that could not start.
func TestGaveUpIsExited(t *testing.T) {
	d := newDriver(t, service("web", onFailure(1)))
	d.start()
	d.exit(1)
	d.elapse(TimerRestart)
	ev := eventOf(t, d.exit(1), api.EventDied)
	if !ev.GaveUp || ev.State != api.StateExited || d.m.State() != Exited || d.m.Snapshot().Reason != "" {
		t.Errorf("gave up: %v, event state %q, state %v, reason %q", ev.GaveUp, ev.State, d.m.State(), d.m.Snapshot().Reason)
	}
}

// ---- the last word wins ----

// A user's stop that comes after a user's start, both while the instance
// is being stopped, wins: the replica ends stopped.
func TestStopAfterStartWhileRemovingWins(t *testing.T) {
	d := newDriver(t, service("web", always))
	d.start()
	d.do(StopRequested{})
	d.feed(ProcessExited{Run: 1, Code: 143})
	d.feed(StartRequested{})
	d.feed(StopRequested{})
	wantEffects(t, "instance stopped", d.do(InstanceStopped{}), "destroy[stopped]")
	d.wantState(api.StateStopped)
}

// A rerun (a user's restart or a start during a stop) that a user's stop
// cancels leaves no mark: a later teardown's stop is not the user's.
func TestCancelledRerunDoesNotMarkLaterStops(t *testing.T) {
	plays := map[string][]Input{
		"restart then stop": {RestartRequested{}, StopRequested{}},
		"stop, start, stop": {StopRequested{}, StartRequested{}, StopRequested{}},
	}
	for name, ins := range plays {
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, service("web", always))
			d.start()
			for _, in := range ins {
				d.do(in)
			}
			d.exit(143)
			d.wantState(api.StateStopped)
			d.do(StartRequested{})
			if ev := eventOf(t, d.do(StopRequested{Final: true}), api.EventStopping); ev.User {
				t.Errorf("a teardown's stop is marked User")
			}
		})
	}
}

// Counts that are surprising rather than wrong.
func TestSurprisingFlags(t *testing.T) {
	// nRestarts counts a policy restart when its timer fires, even if a
	// stop then cancels it before any Restarting event.
	d := newDriver(t, service("web", always))
	d.restartDue(1)
	d.do(StopRequested{Final: true})
	d.do(InstanceChecked{Exists: true})
	if n, ev := d.m.Snapshot().Restarts, d.count(api.EventRestarting); n != 1 || ev != 0 {
		t.Errorf("Restarts %d, restarting events %d", n, ev)
	}
}

package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"sstack/internal/api"
	"sstack/internal/logs/logstest"
)

// fakeStack records the calls it gets and answers with canned results, or
// err for every method when set.
type fakeStack struct {
	mu    sync.Mutex
	calls []call
	err   error

	info   api.ProjectInfo
	ps     []api.Replica
	top    []api.TopReplica
	stats  []api.ReplicaStats
	target api.ExecTarget
	exit   int
	events func(context.Context, api.EventsOptions, func(api.Event) error) error
	wait   func(context.Context, api.WaitOptions) (int, error)
	down   func() // after Down is recorded: the supervisor going
}

type call struct {
	name string
	opts any
}

func (f *fakeStack) record(name string, opts any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{name, opts})
	return f.err
}

func (f *fakeStack) last() call {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return call{}
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeStack) Info(ctx context.Context) (api.ProjectInfo, error) {
	return f.info, f.record("Info", nil)
}
func (f *fakeStack) Ps(ctx context.Context, o api.PsOptions) ([]api.Replica, error) {
	return f.ps, f.record("Ps", o)
}
func (f *fakeStack) Up(ctx context.Context, o api.UpOptions) error { return f.record("Up", o) }
func (f *fakeStack) Stop(ctx context.Context, o api.StopOptions) error {
	return f.record("Stop", o)
}
func (f *fakeStack) Start(ctx context.Context, o api.StartOptions) error {
	return f.record("Start", o)
}
func (f *fakeStack) Restart(ctx context.Context, o api.RestartOptions) error {
	return f.record("Restart", o)
}
func (f *fakeStack) Kill(ctx context.Context, o api.KillOptions) error {
	return f.record("Kill", o)
}
func (f *fakeStack) Scale(ctx context.Context, o api.ScaleOptions) error {
	return f.record("Scale", o)
}
func (f *fakeStack) Down(ctx context.Context, o api.DownOptions) error {
	err := f.record("Down", o)
	if f.down != nil {
		f.down()
	}
	return err
}
func (f *fakeStack) Logs(ctx context.Context, o api.LogsOptions, c api.LogConsumer) error {
	return f.record("Logs", o) // the client reads the files itself
}
func (f *fakeStack) Top(ctx context.Context, o api.TopOptions) ([]api.TopReplica, error) {
	return f.top, f.record("Top", o)
}
func (f *fakeStack) Stats(ctx context.Context, o api.StatsOptions) ([]api.ReplicaStats, error) {
	return f.stats, f.record("Stats", o)
}
func (f *fakeStack) ExecTarget(ctx context.Context, o api.ExecOptions) (api.ExecTarget, error) {
	return f.target, f.record("ExecTarget", o)
}
func (f *fakeStack) Wait(ctx context.Context, o api.WaitOptions) (int, error) {
	if err := f.record("Wait", o); err != nil {
		return 0, err
	}
	if f.wait != nil {
		return f.wait(ctx, o)
	}
	return f.exit, nil
}
func (f *fakeStack) Events(ctx context.Context, o api.EventsOptions, fn func(api.Event) error) error {
	wire := o
	wire.Subscribed = nil // the server's own, not the client's
	if err := f.record("Events", wire); err != nil {
		return err
	}
	if sub := o.Subscribed; sub != nil {
		// As a stack subscribes before its first event (and fails
		// before it subscribes).
		once, inner := sync.Once{}, fn
		fn = func(ev api.Event) error {
			once.Do(sub)
			return inner(ev)
		}
	}
	if f.events != nil {
		return f.events(ctx, o, fn)
	}
	return nil
}

// serve starts a server for stack in a fresh state dir and dials it.
func serve(t *testing.T, stack api.Stack) (*Server, *Client, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "proj")
	srv, err := Serve(dir, stack)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c, dir
}

func TestRoundTrip(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	grace := 3 * time.Second
	f := &fakeStack{
		info: api.ProjectInfo{Name: "proj", Status: "running(2)", ConfigFiles: []string{"/a/compose.yml"},
			StateDir: "/s/proj", Pid: 42, Supervised: true, Detached: true, Started: since},
		ps: []api.Replica{{Project: "proj", Service: "web", Replica: 1, Name: "web-1", Instance: "proj.web.1",
			State: api.StateRunning, Health: api.HealthHealthy, Since: since, Restarts: 2, Pid: 7, Supervised: true}},
		top: []api.TopReplica{{Name: "web-1", Instance: "proj.web.1",
			Processes: []api.Process{{Pid: 7, PPid: 1, UID: 1000, Command: "nginx -g daemon off;"}}}},
		stats: []api.ReplicaStats{{Name: "web-2", Service: "web", Replica: 2, Instance: "proj.web.2", Node: "n3", Time: since,
			Usage: api.Usage{Source: api.SourceCgroupV1, CPUSeconds: 1.25, MemoryBytes: 3 << 20, WorkingSetBytes: 2 << 20,
				MemoryLimitBytes: 64 << 20, HostMemoryBytes: 8 << 30, Processes: 3, Threads: 5, ReadBytes: 4096, WriteBytes: 8192, OOMKills: 1}}},
		target: api.ExecTarget{Instance: "proj.web.1", Env: []string{"A=1", "B=x y"}, Pwd: "/app"},
		exit:   3,
	}
	_, c, _ := serve(t, f)
	ctx := context.Background()

	check := func(name string, want any) {
		t.Helper()
		if got := f.last(); got.name != name || !reflect.DeepEqual(got.opts, want) {
			t.Errorf("stack got %s %#v, want %s %#v", got.name, got.opts, name, want)
		}
	}
	same := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}

	// Every call in the order given, each with the options the stack
	// must get and, for a query, the answer it must give back.
	calls := []clientCall{
		{name: "Info", do: func(ctx context.Context) (any, error) { return c.Info(ctx) }, want: f.info},
		query("Ps", c.Ps, api.PsOptions{All: true, Services: []string{"web", "db"}}, f.ps),
		verb("Up", c.Up, api.UpOptions{Services: []string{"web"}, NoDeps: true, Scale: map[string]int{"web": 3}}),
		verb("Stop", c.Stop, api.StopOptions{Services: []string{"web"}, Timeout: &grace}),
		verb("Start", c.Start, api.StartOptions{Services: []string{"db"}}),
		verb("Restart", c.Restart, api.RestartOptions{Services: []string{"web"}, Timeout: &grace, NoDeps: true}),
		verb("Kill", c.Kill, api.KillOptions{Services: []string{"web"}, Signal: "USR1"}),
		verb("Scale", c.Scale, api.ScaleOptions{Replicas: map[string]int{"web": 0}, NoDeps: true}),
		verb("Down", c.Down, api.DownOptions{Volumes: true, Timeout: &grace, Services: []string{"web"}}),
		query("Top", c.Top, api.TopOptions{Services: []string{"web"}}, f.top),
		query("Stats", c.Stats, api.StatsOptions{Services: []string{"web"}}, f.stats),
		query("ExecTarget", c.ExecTarget, api.ExecOptions{Service: "web", Index: 2}, f.target),
		query("Wait", c.Wait, api.WaitOptions{Services: []string{"job"}, DownProject: true}, 3),
		verb("Events", func(ctx context.Context, o api.EventsOptions) error {
			return c.Events(ctx, o, func(api.Event) error { return nil })
		}, api.EventsOptions{Services: []string{"web"}}),
	}
	for _, cl := range calls {
		got, err := cl.do(ctx)
		if err != nil {
			t.Fatalf("%s: %v", cl.name, err)
		}
		check(cl.name, cl.opts)
		same(cl.name, got, cl.want)
	}
}

// clientCall is a call of the Client with its options and, for a query,
// the answer it should give.
type clientCall struct {
	name string
	opts any
	do   func(context.Context) (any, error)
	want any
}

// verb is a call that answers nothing but an error.
func verb[O any](name string, call func(context.Context, O) error, opts O) clientCall {
	return clientCall{name: name, opts: opts, do: func(ctx context.Context) (any, error) { return nil, call(ctx, opts) }}
}

func query[O, R any](name string, call func(context.Context, O) (R, error), opts O, want R) clientCall {
	return clientCall{name, opts, func(ctx context.Context) (any, error) { return call(ctx, opts) }, want}
}

func TestErrors(t *testing.T) {
	noSvc := &api.NoServiceError{Name: "wbe", Known: []string{"web", "db"}}
	tests := []struct {
		name   string
		err    error
		is     []error
		isNot  []error
		wantNS *api.NoServiceError
	}{
		{"no such service", fmt.Errorf("scale: %w", noSvc), []error{api.ErrNoService},
			[]error{api.ErrNotRunning, api.ErrReplicaNotRunning}, noSvc},
		{"plain no such service", api.ErrNoService, []error{api.ErrNoService}, []error{api.ErrNotRunning}, nil},
		{"not running", fmt.Errorf("stack: %w", api.ErrNotRunning), []error{api.ErrNotRunning},
			[]error{api.ErrNoService}, nil},
		{"replica not running", fmt.Errorf("web-2: %w", api.ErrReplicaNotRunning),
			[]error{api.ErrReplicaNotRunning}, []error{api.ErrNoService, api.ErrNotRunning}, nil},
		{"other", errors.New("instance start failed: boom"), nil,
			[]error{api.ErrNoService, api.ErrNotRunning, api.ErrReplicaNotRunning}, nil},
	}
	f := &fakeStack{}
	_, c, _ := serve(t, f)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.err = tt.err
			// One action (POST), one query (GET), one with a result.
			errs := map[string]error{"Stop": c.Stop(context.Background(), api.StopOptions{})}
			_, errs["Ps"] = c.Ps(context.Background(), api.PsOptions{})
			_, errs["ExecTarget"] = c.ExecTarget(context.Background(), api.ExecOptions{Service: "web"})
			for method, err := range errs {
				if err == nil || err.Error() != tt.err.Error() {
					t.Errorf("%s: error %v, want %v", method, err, tt.err)
				}
				for _, target := range tt.is {
					if !errors.Is(err, target) {
						t.Errorf("%s: errors.Is(%v, %v) = false", method, err, target)
					}
				}
				for _, target := range tt.isNot {
					if errors.Is(err, target) {
						t.Errorf("%s: errors.Is(%v, %v) = true", method, err, target)
					}
				}
				var ns *api.NoServiceError
				if got := errors.As(err, &ns); got != (tt.wantNS != nil) {
					t.Errorf("%s: errors.As NoServiceError = %v", method, got)
				} else if got && !reflect.DeepEqual(ns, tt.wantNS) {
					t.Errorf("%s: NoServiceError = %#v, want %#v", method, ns, tt.wantNS)
				}
			}
		})
	}
}

func TestEventsStream(t *testing.T) {
	sent := []api.Event{
		{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Kind: api.EventCreating, Project: "proj",
			Service: "web", Replica: 1, Name: "web-1", Instance: "proj.web.1", State: api.StateCreating},
		{Time: time.Date(2025, 1, 1, 0, 0, 1, 0, time.UTC), Kind: api.EventDied, Project: "proj", Service: "web",
			Replica: 1, ExitCode: 3, Restart: true, Delay: 2 * time.Second, Attempt: 1, MaxAttempts: 5},
		{Time: time.Date(2025, 1, 1, 0, 0, 2, 0, time.UTC), Kind: api.EventAttaching, Project: "proj",
			Names: []string{"web-1", "db-1"}},
	}
	f := &fakeStack{events: func(ctx context.Context, _ api.EventsOptions, fn func(api.Event) error) error {
		for _, ev := range sent {
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil // the stack is gone
	}}
	_, c, _ := serve(t, f)
	var got []api.Event
	subscribed := false
	err := c.Events(context.Background(), api.EventsOptions{Services: []string{"web", "db"}, Subscribed: func() { subscribed = true }}, func(ev api.Event) error {
		if !subscribed {
			t.Error("an event came before Subscribed was called")
		}
		got = append(got, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sent) {
		t.Errorf("events:\n got %#v\nwant %#v", got, sent)
	}
	if o := f.last().opts; !reflect.DeepEqual(o, api.EventsOptions{Services: []string{"web", "db"}}) {
		t.Errorf("stack got %#v", o)
	}
}

// blockingEvents sends one event, then waits for its ctx to end and
// reports that on done.
func blockingEvents(done chan<- struct{}) func(context.Context, api.EventsOptions, func(api.Event) error) error {
	return func(ctx context.Context, _ api.EventsOptions, fn func(api.Event) error) error {
		if err := fn(api.Event{Kind: api.EventStarted, Name: "web-1"}); err != nil {
			close(done)
			return err
		}
		<-ctx.Done()
		close(done)
		return ctx.Err()
	}
}

func waitClosed(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not end", what)
	}
}

func TestEventsCancel(t *testing.T) {
	done := make(chan struct{})
	_, c, _ := serve(t, &fakeStack{events: blockingEvents(done)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	err := c.Events(ctx, api.EventsOptions{}, func(api.Event) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("Events = %v after %d events, want context.Canceled after 1", err, n)
	}
	waitClosed(t, done, "the stack's Events")
}

func TestEventsCallbackError(t *testing.T) {
	done := make(chan struct{})
	_, c, _ := serve(t, &fakeStack{events: blockingEvents(done)})
	stop := errors.New("enough")
	err := c.Events(context.Background(), api.EventsOptions{}, func(api.Event) error { return stop })
	if err != stop {
		t.Errorf("Events = %v, want %v", err, stop)
	}
	waitClosed(t, done, "the stack's Events")
}

func TestEventsErrorBeforeStream(t *testing.T) {
	noSvc := &api.NoServiceError{Name: "x", Known: []string{"web"}}
	_, c, _ := serve(t, &fakeStack{events: func(context.Context, api.EventsOptions, func(api.Event) error) error {
		return noSvc
	}})
	err := c.Events(context.Background(), api.EventsOptions{Services: []string{"x"}}, func(api.Event) error { return nil })
	var ns *api.NoServiceError
	if !errors.As(err, &ns) || !reflect.DeepEqual(ns, noSvc) {
		t.Errorf("Events = %v, want %v", err, noSvc)
	}
}

func TestWaitCancel(t *testing.T) {
	done := make(chan struct{})
	_, c, _ := serve(t, &fakeStack{wait: func(ctx context.Context, _ api.WaitOptions) (int, error) {
		<-ctx.Done()
		close(done)
		return 0, ctx.Err()
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Wait(ctx, api.WaitOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Wait took %s after its ctx ended", d)
	}
	waitClosed(t, done, "the stack's Wait")
}

// Close ends the long requests: the events stream as the stack being gone,
// wait as the stack not running.
func TestCloseEndsLongRequests(t *testing.T) {
	evDone := make(chan struct{})
	f := &fakeStack{
		events: blockingEvents(evDone),
		wait: func(ctx context.Context, _ api.WaitOptions) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		},
	}
	srv, c, dir := serve(t, f)
	started := make(chan struct{})
	evErr := make(chan error, 1)
	go func() {
		evErr <- c.Events(context.Background(), api.EventsOptions{}, func(api.Event) error {
			close(started)
			return nil
		})
	}()
	waitErr := make(chan error, 1)
	go func() {
		_, err := c.Wait(context.Background(), api.WaitOptions{})
		waitErr <- err
	}()
	<-started
	for f.countCalls("Wait") == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-evErr; err != nil {
		t.Errorf("Events after Close = %v, want nil", err)
	}
	if err := <-waitErr; !errors.Is(err, api.ErrNotRunning) {
		t.Errorf("Wait after Close = %v, want ErrNotRunning", err)
	}
	if _, err := os.Lstat(SocketPath(dir)); !os.IsNotExist(err) {
		t.Errorf("socket after Close: %v", err)
	}
	if _, err := Dial(dir); !errors.Is(err, api.ErrNotRunning) {
		t.Errorf("Dial after Close = %v, want ErrNotRunning", err)
	}
}

func (f *fakeStack) countCalls(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.name == name {
			n++
		}
	}
	return n
}

// makeStale leaves a socket nobody listens on, as a killed sstack does.
func makeStale(t *testing.T, stateDir string) {
	t.Helper()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(stateDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	l, err := net.Listen("unix", socketAddr(stateDir, fd))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(SocketPath(stateDir)); err != nil {
		t.Fatal(err)
	}
}

// The life of a socket, for a short path and for one too long for
// sockaddr_un.
func TestSocketLifecycle(t *testing.T) {
	long := filepath.Join(strings.Repeat("d", 60), strings.Repeat("e", 60), "proj")
	for name, sub := range map[string]string{"short": "proj", "long": long} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), sub)
			if name == "long" && len(SocketPath(dir)) <= maxSunPath {
				t.Fatalf("path %s is not long", dir)
			}
			for what, dir := range map[string]string{"missing dir": dir, "no socket": filepath.Dir(dir)} {
				if _, err := Dial(dir); !errors.Is(err, api.ErrNotRunning) {
					t.Errorf("Dial, %s = %v, want ErrNotRunning", what, err)
				}
			}

			makeStale(t, dir)
			start := time.Now()
			if _, err := Dial(dir); !errors.Is(err, api.ErrNotRunning) {
				t.Errorf("Dial of a stale socket = %v, want ErrNotRunning", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Dial of a stale socket took %s", d)
			}

			f := &fakeStack{info: api.ProjectInfo{Name: "proj"}}
			srv, err := Serve(dir, f)
			if err != nil {
				t.Fatalf("Serve over a stale socket: %v", err)
			}
			defer srv.Close()
			c, err := Dial(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if info, err := c.Info(context.Background()); err != nil || info.Name != "proj" {
				t.Fatalf("Info = %v, %v", info, err)
			}

			_, err = Serve(dir, &fakeStack{})
			want := fmt.Sprintf("another sstack (pid %d) already serves project \"proj\"", os.Getpid())
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("second Serve = %v, want %q", err, want)
			}
			// The refused Serve left the live one alone.
			if _, err := c.Info(context.Background()); err != nil {
				t.Errorf("Info after a refused Serve: %v", err)
			}

			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(SocketPath(dir)); !os.IsNotExist(err) {
				t.Errorf("socket after Close: %v", err)
			}
			if _, err := c.Info(context.Background()); !errors.Is(err, api.ErrNotRunning) {
				t.Errorf("Info after Close = %v, want ErrNotRunning", err)
			}
		})
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "proj")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := Serve(dir, &fakeStack{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
	fi, err = os.Lstat(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}

	// A state dir created by Serve is 0700 too.
	dir2 := filepath.Join(t.TempDir(), "new", "proj")
	srv2, err := Serve(dir2, &fakeStack{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if fi, err := os.Stat(dir2); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("new state dir: %v, %v", fi.Mode(), err)
	}
}

const helperEnv = "SSTACK_CONTROL_TEST_DIR"

// TestHelperProcess is the client run as another user by
// TestOtherUserRefused: it prints what Dial or Info answered.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("run by TestOtherUserRefused")
	}
	c, err := Dial(dir)
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(0)
	}
	_, err = c.Info(context.Background())
	fmt.Println("info:", err)
	os.Exit(0)
}

func TestOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another uid")
	}
	// A directory uid 65534 can traverse, with a copy of the test binary it
	// can run (go test's build directory is closed to it).
	shared, err := os.MkdirTemp("", "sstack-control-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(shared)
	if err := os.Chmod(shared, 0o711); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "control.test")
	copyFile(t, os.Args[0], bin)
	dir := filepath.Join(shared, "proj")
	srv, err := Serve(dir, &fakeStack{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	runAsNobody := func() string {
		cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	const refused = `the stack of project "proj" is run by user root (uid 0), only that user may control it`

	// The 0700 directory keeps the other user out before the server sees it.
	if out := runAsNobody(); out != "dial: "+refused {
		t.Errorf("through a 0700 dir: %q, want dial: %s", out, refused)
	}

	// With the directory and socket opened up, the server's peer check refuses.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(SocketPath(dir), 0o666); err != nil {
		t.Fatal(err)
	}
	if out := runAsNobody(); out != "info: "+refused {
		t.Errorf("through an open socket: %q, want info: %s", out, refused)
	}
	// The owner still gets in.
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Info(context.Background()); err != nil {
		t.Errorf("owner: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// A down of the whole stack returns once the supervisor is gone (its
// socket closed), not when it has answered.
func TestDownWaitsForTheSupervisorToGo(t *testing.T) {
	f := &fakeStack{}
	srv, c, dir := serve(t, f)
	const going = 200 * time.Millisecond
	f.down = func() {
		go func() { time.Sleep(going); srv.Close() }()
	}
	start := time.Now()
	if err := c.Down(context.Background(), api.DownOptions{}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < going {
		t.Errorf("Down returned after %s, before the supervisor went", took)
	}
	if _, err := Dial(dir); !errors.Is(err, api.ErrNotRunning) {
		t.Errorf("after Down, Dial: %v, want api.ErrNotRunning", err)
	}
}

// The client reads the logs from the project's files, asking the server
// nothing; following ends once the supervisor is gone.
func TestLogsReadTheStoreUntilTheSupervisorGoes(t *testing.T) {
	f := &fakeStack{}
	srv, c, dir := serve(t, f)
	w := logstest.Store(t, dir, logstest.Record{Name: "web-1", Stream: "stdout", Text: "hello\n"}, logstest.Record{Name: "db-1", Stream: "stderr", Text: "oops\n"})
	got := &logstest.LogLines{}
	if err := c.Logs(context.Background(), api.LogsOptions{}, got); err != nil {
		t.Fatal(err)
	}
	if want := []string{"web-1 stdout hello", "db-1 stderr oops"}; !reflect.DeepEqual(got.Lines(), want) || len(got.Names()) != 2 {
		t.Errorf("Logs gave %q (names %q), want %q", got.Lines(), got.Names(), want)
	}
	if n := f.countCalls("Logs"); n != 0 {
		t.Errorf("the server was asked for logs %d times", n)
	}

	followed := logstest.Follow(t, c.Logs, api.LogsOptions{Services: []string{"web"}}, w, "web-1", func() { srv.Close() })
	w.Close()
	if want := []string{"web-1 stdout hello", "web-1 stdout later"}; !reflect.DeepEqual(followed.Lines(), want) || !reflect.DeepEqual(followed.Said(), []string{api.LogsStopped}) {
		t.Errorf("Logs -f gave %q, status %q; want %q and the stack's end", followed.Lines(), followed.Said(), want)
	}
}

// Down's errors are values across the socket, and a refused down waits
// for nothing.
func TestDownErrorsAreValues(t *testing.T) {
	f := &fakeStack{err: fmt.Errorf("down: %w", &api.NoServiceError{Name: "wbe", Known: []string{"web"}})}
	_, c, _ := serve(t, f)
	for _, opts := range []api.DownOptions{{Services: []string{"wbe"}}, {}} {
		err := c.Down(context.Background(), opts)
		var ns *api.NoServiceError
		if !errors.Is(err, api.ErrNoService) || !errors.As(err, &ns) || ns.Name != "wbe" {
			t.Errorf("Down(%+v): %v, want the no-such-service error", opts, err)
		}
	}
	f.err = fmt.Errorf("%w: its sstack is shutting down", api.ErrNotRunning)
	if err := c.Down(context.Background(), api.DownOptions{}); !errors.Is(err, api.ErrNotRunning) {
		t.Errorf("Down of a supervisor going: %v, want api.ErrNotRunning", err)
	}
}

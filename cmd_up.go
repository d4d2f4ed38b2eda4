package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"sstack/actors"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/control"
	"sstack/internal/engine"
	"sstack/internal/statedir"
)

// upFlags declares up's flags on c (up itself, and the root, whose
// default command is up).
func upFlags(c *cobra.Command, o *options) {
	f := c.Flags()
	f.BoolVarP(&o.detach, "detach", "d", false, "Detached mode: run the stack in the background, return once every service has started")
	f.BoolVar(&o.wait, "wait", false, "With -d: return only once services with a healthcheck are healthy (implies -d)")
	f.IntVar(&o.waitTimeout, "wait-timeout", 0, "Seconds to wait for --wait (0: no limit); on timeout up exits 1 and what started goes on running")
	f.BoolVar(&o.noDeps, "no-deps", false, "Don't start the dependencies of the services named")
	f.StringArrayVar(&o.scale, "scale", nil, "Scale SERVICE to NUM replicas (SERVICE=NUM; repeatable)")
	f.StringVar(&o.metricsAddr, "metrics-addr", metricsDefault, "Serve Prometheus /metrics on HOST:PORT; empty turns it off")
	f.BoolVar(&o.noColor, "no-color", false, "Produce monochrome output")
	f.BoolVar(&o.noLogPrefix, "no-log-prefix", false, "Don't print a prefix in logs")
	f.BoolVar(&o.timestamps, "timestamps", false, "Show timestamps")
	f.IntVarP(&o.timeout, "timeout", "t", -1, "Seconds to wait for the stop signal to work at teardown before SIGKILL (default: stop_grace_period)")
	f.StringVar(&o.logFormat, "log-format", "text", "Log format, text or json")
	f.BoolVar(&o.abortOnExit, "abort-on-container-exit", false, "Stop the stack if any service's process exits")
	f.BoolVar(&o.abortOnFail, "abort-on-container-failure", false, "Stop the stack if any service's process exits with a non-zero code")
	f.StringVar(&o.exitCodeFrom, "exit-code-from", "", "Return the exit code of the selected service's process (implies --abort-on-container-exit)")
	f.StringArrayVar(&o.attach, "attach", nil, "Show the output of these services only (repeatable)")
	f.StringArrayVar(&o.noAttach, "no-attach", nil, "Don't show the output of these services (repeatable)")
	f.BoolVar(&o.attachDeps, "attach-dependencies", false, "Show the output of the dependencies of the services named too")
	f.BoolVar(&o.noLimits, "no-limits", false, "Start the services without their cgroup limits (cpus, mem_limit, pids_limit...), with a warning each; for hosts that cannot apply them")
	f.BoolVar(&o.converge.force, "force-recreate", false, "Recreate the services of a running stack even if their configuration has not changed")
	f.BoolVar(&o.converge.never, "no-recreate", false, "Don't recreate the services of a running stack whose configuration changed (new services are still created)")
	f.BoolVar(&o.converge.deps, "always-recreate-deps", false, "Recreate the dependencies of the services named too (incompatible with --no-recreate)")
	f.BoolVar(&o.converge.removeOrphans, "remove-orphans", false, "Remove the services of a running stack that the compose file no longer has")
	f.BoolVar(&o.converge.noStart, "no-start", false, "Don't start the services after creating them: they wait for 'sstack start' (a new stack is detached)")
	networkFlag(c, o)
	_ = c.RegisterFlagCompletionFunc("exit-code-from", completeServices(o))
	imageUpFlags(c, o)
}

func newUp(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:               "up [OPTIONS] [SERVICE...]",
		Short:             "Create and start the services, in the foreground (Ctrl-C stops them) or detached (-d)",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			return upCmd(cmd.Context(), o, args)
		},
	}
	upFlags(c, o)
	return c
}

// detachedChildEnv marks the background process that `up -d` starts; its
// value is the descriptor of the pipe to the waiting parent.
const detachedChildEnv = "SSTACK_DETACHED_CHILD"

// readyMarker ends a detached child's start-up report: what follows it on
// the pipe is nothing.
const readyMarker = "\x00sstack-ready"

// failedMarker ends it too, for a stack that did not all start (a
// dependency failed, --wait-timeout passed): up -d exits 1, and what
// started goes on running, as with docker compose up -d.
const failedMarker = "\x00sstack-failed"

func upCmd(ctx context.Context, o *options, services []string) error {
	o.named = services
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format %q: use text or json", o.logFormat)
	}
	if o.abortOnExit && o.abortOnFail {
		return &usageError{errors.New("--abort-on-container-failure cannot be combined with --abort-on-container-exit")}
	}
	if err := o.converge.check(); err != nil {
		return err
	}
	if o.converge.noStart && (o.wait || o.abortOnExit || o.abortOnFail || o.exitCodeFrom != "") {
		return &usageError{errors.New("--no-start cannot be combined with --wait, --abort-on-container-exit, --abort-on-container-failure or --exit-code-from")}
	}
	if o.wait || o.converge.noStart {
		o.detach = true
	}
	child := os.Getenv(detachedChildEnv) != ""
	if o.detach && (o.abortOnExit || o.abortOnFail || o.exitCodeFrom != "") {
		return &usageError{errors.New("-d cannot be combined with --abort-on-container-exit, --abort-on-container-failure or --exit-code-from")}
	}
	if !child {
		// A stack of this project already runs: start the services in
		// it, as docker compose up does for a running project.
		if done, err := upInRunningStack(o, services); done || err != nil {
			return err
		}
	}
	if o.detach && !child {
		return detach(o)
	}
	scale, err := parseScale(o.scale)
	if err != nil {
		return err
	}
	plan, err := o.load()
	if err != nil {
		return err
	}
	if o.exitCodeFrom != "" && plan.Service(o.exitCodeFrom) == nil {
		return fmt.Errorf("--exit-code-from: no service %q in project %q", o.exitCodeFrom, plan.Project)
	}
	for _, n := range append(slices.Clip(o.attach), o.noAttach...) {
		if plan.Service(n) == nil {
			return fmt.Errorf("--attach/--no-attach: %w", &api.NoServiceError{Name: n, Known: plan.ServiceNames()})
		}
	}
	rt, err := o.runtimeBinary()
	if err != nil {
		return err
	}
	parallel, err := o.parallelLimit()
	if err != nil {
		return err
	}
	stdout, status := o.stdout, o.stderr
	var report *detachedReport
	if child {
		if report, err = newDetachedReport(plan.StateDir); err != nil {
			return err
		}
		stdout, status = io.Discard, report
	}
	if err := upImages(ctx, o, plan, status, child); err != nil {
		return err
	}
	color := !o.noColor && os.Getenv("NO_COLOR") == "" && isTerminal(o.stdout)
	sup, err := engine.Up(ctx, engine.Options{
		Plan:        plan,
		Runtime:     rt,
		ConfigFiles: plan.ConfigFiles,
		Services:    services,
		NoDeps:      o.noDeps,
		Scale:       scale,
		Format: actors.LogFormat{
			Prefix:     !o.noLogPrefix,
			Color:      color && !child,
			Timestamps: o.timestamps,
			JSON:       o.logFormat == "json",
			Attached:   engine.Attached(plan, services, o.attach, o.noAttach, o.attachDeps),
		},
		Stdout:         stdout,
		Stderr:         status,
		MetricsAddr:    o.metricsAddr,
		Detached:       child,
		AbortOnExit:    o.abortOnExit,
		AbortOnFailure: o.abortOnFail,
		ExitCodeFrom:   o.exitCodeFrom,
		StopTimeout:    o.stopTimeout(),
		Parallel:       parallel,
		NoLimits:       o.noLimits,
		NoStart:        o.converge.noStart,
	})
	if err != nil {
		return err
	}
	if child {
		// A logout's SIGHUP must not end a detached stack.
		signal.Ignore(syscall.SIGHUP)
		go report.await(sup, o)
	}
	// Capacity 2: the first signal stops gracefully, the second kills.
	sigs := make(chan os.Signal, 2)
	signals := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !child {
		signals = append(signals, syscall.SIGHUP)
	}
	signal.Notify(sigs, signals...)
	// A closed stdout (`sstack | head`) must not kill sstack and orphan the
	// instances: writes then fail with EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)
	defer signal.Stop(sigs)
	stops := 0
	onSignal := func() {
		stops++
		if stops == 1 {
			sup.Interrupt("Gracefully stopping... (press Ctrl+C again to force)")
		} else {
			sup.KillAll()
		}
	}
	for {
		select {
		case done := <-sup.Done():
			// Close waits for a stdout that lags behind; Ctrl-C cuts that
			// wait short (a second one at once), as during the teardown.
			closed := make(chan struct{})
			go func() { sup.Close(); close(closed) }()
			for waiting := true; waiting; {
				select {
				case <-closed:
					waiting = false
				case <-sigs:
					onSignal()
				}
			}
			if report != nil {
				report.finish(done.ExitCode)
			}
			if done.ExitCode != 0 {
				return &exitError{done.ExitCode}
			}
			return nil
		case <-sigs:
			onSignal()
		}
	}
}

// upInRunningStack brings the project's running stack, if there is one,
// to the compose file as docker compose up does: services whose
// configuration changed are recreated, new ones created, and the services
// named (all when none) started. The file is checked and its images
// fetched here first; the supervisor loads it the same way.
func upInRunningStack(o *options, services []string) (bool, error) {
	_, dir, err := o.stateDir()
	if err != nil {
		return false, nil // the load error is reported by up itself
	}
	c, err := control.Dial(dir)
	if err != nil {
		return false, nil
	}
	defer c.Close()
	scale, err := parseScale(o.scale)
	if err != nil {
		return true, err
	}
	ctx := context.Background()
	plan, err := o.load()
	if err != nil {
		return true, err
	}
	if err := upImages(ctx, o, plan, o.stderr, false); err != nil {
		return true, err
	}
	lo := o.loadOptions()
	if lo.WorkingDir, err = os.Getwd(); err != nil {
		return true, err
	}
	lo.Environ = os.Environ()
	project, err := json.Marshal(lo)
	if err != nil {
		return true, err
	}
	info, _ := c.Info(ctx)
	opts := api.UpOptions{Services: services, NoDeps: o.noDeps, Scale: scale, Project: project, RemoveOrphans: o.converge.removeOrphans, NoStart: o.converge.noStart}
	opts.Recreate, opts.RecreateDeps = o.converge.policies()
	if err := showing(ctx, c, o.stderr, func() error { return c.Up(ctx, opts) }); err != nil {
		return true, err
	}
	fmt.Fprintf(o.stderr, "Project %q is up to date with %s (supervisor pid %d); follow its logs with 'sstack -n %s logs -f'\n", info.Name, strings.Join(plan.ConfigFiles, ", "), info.Pid, info.Name)
	return true, nil
}

// convergeFlags are up's flags for a running stack.
type convergeFlags struct {
	force, never, deps, removeOrphans, noStart bool
}

func (f convergeFlags) check() error {
	switch {
	case f.force && f.never:
		return &usageError{errors.New("--force-recreate and --no-recreate cannot be combined")}
	case f.deps && f.never:
		return &usageError{errors.New("--always-recreate-deps and --no-recreate cannot be combined")}
	}
	return nil
}

// policies are the recreate policies of the services named and of their
// dependencies, as docker compose derives them from the flags.
func (f convergeFlags) policies() (named, deps string) {
	named, deps = api.RecreateDiverged, api.RecreateDiverged
	switch {
	case f.force:
		named = api.RecreateForce
	case f.never:
		named, deps = api.RecreateNever, api.RecreateNever
	}
	if f.deps {
		deps = api.RecreateForce
	}
	return named, deps
}

// showing runs call (a change of the running stack) while it prints the
// status lines of the events it causes, up to the stack's "converged".
func showing(ctx context.Context, c *control.Client, w io.Writer, call func() error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subscribed, over := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(over)
		_ = c.Events(ctx, api.EventsOptions{Subscribed: func() { close(subscribed) }}, func(ev api.Event) error {
			if ev.Kind == api.EventConverged {
				return io.EOF
			}
			if line := ev.Line(); line != "" {
				fmt.Fprintln(w, line)
			}
			return nil
		})
	}()
	select {
	case <-subscribed:
	case <-over: // no events to show; the change goes on without them
	}
	err := call()
	select {
	case <-over:
	case <-time.After(5 * time.Second): // its last lines are lost, not the change
	}
	return err
}

func parseScale(specs []string) (map[string]int, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := map[string]int{}
	for _, s := range specs {
		name, num, ok := strings.Cut(s, "=")
		n, err := strconv.Atoi(num)
		if !ok || name == "" || err != nil || n < 0 {
			return nil, &usageError{fmt.Errorf("--scale %q: want SERVICE=NUM with NUM 0 or more", s)}
		}
		out[name] = n
	}
	return out, nil
}

// detach starts this same command again as a background process (new
// session, stdin from /dev/null, no terminal) and relays its start-up
// report until it says every service has started, or why not.
func detach(o *options) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), detachedChildEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	devnull.Close()
	if err != nil {
		return fmt.Errorf("starting the detached supervisor: %w", err)
	}
	ready, failed := false, false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == readyMarker || line == failedMarker {
			ready, failed = true, line == failedMarker
			break
		}
		fmt.Fprintln(o.stderr, line)
	}
	r.Close()
	if ready {
		// The child goes on alone; it is not ours to wait for.
		_ = cmd.Process.Release()
		if failed {
			return &exitError{1}
		}
		return nil
	}
	_ = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if code <= 0 {
		code = 1
	}
	return &exitError{code}
}

// detachedReport is where a detached supervisor's status lines go: to the
// waiting parent (its stderr pipe) until every service has started, then to
// sstack.log in the state directory.
type detachedReport struct {
	mu     sync.Mutex
	parent *os.File // nil once detached
	log    *os.File
}

func newDetachedReport(stateDir string) (*detachedReport, error) {
	if err := statedir.Private(stateDir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(statedir.SupervisorLog(stateDir), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, statedir.Problem(err)
	}
	return &detachedReport{parent: os.Stderr, log: f}, nil
}

func (d *detachedReport) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, _ = d.log.Write(p)
	if d.parent != nil {
		_, _ = d.parent.Write(p)
	}
	return len(p), nil
}

// await tells the parent once every service has started (or is healthy
// with --wait); when one cannot (it failed, or --wait-timeout passed) the
// parent learns why from the status lines and exits 1, and what started
// goes on running, as with docker compose up -d ('sstack down' ends it).
func (d *detachedReport) await(sup *engine.Supervisor, o *options) {
	ctx := context.Background()
	if o.waitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(o.waitTimeout)*time.Second)
		defer cancel()
	}
	err := sup.WaitStarted(ctx, o.wait)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("--wait-timeout %ds: the services were not all healthy in time", o.waitTimeout)
		}
		if !errors.Is(err, engine.ErrStackStopped) {
			fmt.Fprintf(d, "sstack: %v; what started goes on running: see 'sstack -n %s ps -a', end it with 'sstack -n %s down'\n", err, sup.Project(), sup.Project())
			d.detach(sup, failedMarker)
			return
		}
		fmt.Fprintf(d, "sstack: %v\n", err)
		return
	}
	d.detach(sup, readyMarker)
}

// detach ends the report to the parent with marker.
func (d *detachedReport) detach(sup *engine.Supervisor, marker string) {
	sup.Flush() // the parent shows every "Started" line before it returns
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parent == nil {
		return
	}
	fmt.Fprintln(d.parent, marker)
	// From now on fd 2 (a panic's trace, too) goes to the log file, and
	// the parent's end sees EOF.
	_ = syscall.Dup2(int(d.log.Fd()), 2)
	d.parent = nil
}

// finish: the stack is over; the parent, if still waiting, gets the code.
func (d *detachedReport) finish(code int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parent != nil && code == 0 {
		fmt.Fprintln(d.parent, "sstack: the stack stopped before every service had started")
	}
	d.log.Close()
}

func newDown(o *options) *cobra.Command {
	var rmi string
	var removeOrphans bool
	c := &cobra.Command{
		Use:               "down [OPTIONS] [SERVICE...]",
		Short:             "Stop and remove the instances and the state of a project (named volumes stay unless -v); with SERVICE, only those services and their dependents",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rmi != "" && rmi != "local" && rmi != "all" {
				return &usageError{fmt.Errorf("--rmi %q: use local or all", rmi)}
			}
			return downServices(o, args, rmi, removeOrphans)
		},
	}
	c.Flags().BoolVar(&removeOrphans, "remove-orphans", false, "Also remove the instances of services that are not in the compose file")
	c.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "Also remove named volumes")
	c.Flags().IntVarP(&o.timeout, "timeout", "t", -1, "Seconds to wait for the stop signal to work before SIGKILL (default: stop_grace_period)")
	c.Flags().StringVar(&rmi, "rmi", "", `Remove the images sstack pulled or built for the services: "local" those built without an image: name, "all" all of them`)
	return c
}

// down asks the project's supervisor, if one runs, for the same graceful
// teardown as Ctrl-C and waits until it is gone; then it stops whatever
// instances are left (a supervisor that was killed) and removes the state.
func down(o *options) error { return downServices(o, nil, "", true) }

// downServices is down; with services, only those and their dependents
// are taken down (the stack goes on, its state stays), and with rmi the
// images sstack fetched for the services are removed after. Unless
// removeOrphans, the instances of services the compose file no longer has
// (orphans) stay, with a warning, as docker compose does.
func downServices(o *options, services []string, rmi string, removeOrphans bool) error {
	project, stateDir, err := o.stateDir()
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	var plan *compose.Plan
	orphansStay := false
	if len(services) == 0 && !removeOrphans {
		if services, err = o.withoutOrphans(project, stateDir); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		if services != nil && len(services) == 0 {
			return nil // only orphans run
		}
		orphansStay = services != nil
	}
	if rmi != "" || len(services) > 0 {
		o.named = services
		// The compose file names the images, and the dependents when
		// no supervisor does.
		if plan, err = o.load(); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		for _, s := range services {
			if plan.Service(s) == nil {
				return fmt.Errorf("down: %w", &api.NoServiceError{Name: s, Known: plan.ServiceNames()})
			}
		}
	}
	opts := api.DownOptions{Volumes: o.volumes, Timeout: o.stopTimeout(), Services: services}
	partial := orphansStay || len(services) > 0 && len(engine.WithDependents(plan, services)) < len(plan.Services)
	if c, err := control.Dial(stateDir); err == nil {
		info, _ := c.Info(context.Background())
		if err := c.Down(context.Background(), opts); err != nil {
			c.Close()
			return err
		}
		c.Close()
		if !partial {
			fmt.Fprintf(o.stderr, "Waiting for the supervisor of %s (pid %d) to take the stack down\n", project, info.Pid)
			for engine.Locked(stateDir) {
				time.Sleep(50 * time.Millisecond)
			}
		}
	} else if !errors.Is(err, api.ErrNotRunning) {
		return err
	}
	rt, err := o.runtimeBinary()
	if err != nil {
		return err
	}
	grace := 10 * time.Second
	if t := o.stopTimeout(); t != nil {
		grace = *t
	}
	if partial {
		err = engine.RemoveServices(context.Background(), rt, project, engine.WithDependents(plan, services), grace, o.stderr)
	} else {
		err = engine.Remove(context.Background(), rt, project, stateDir, o.volumes, grace, o.stderr)
	}
	if err != nil || rmi == "" {
		return err
	}
	return engine.RemoveImages(plan, engine.ImagesToRemove(plan, rmi), o.stderr)
}

// withoutOrphans finds the services of the project that run but are not
// in its compose file (orphans) and warns about them; it returns nil when
// there are none (or no compose file to tell), else the services of the
// file that run, which down takes down alone.
func (o *options) withoutOrphans(project, stateDir string) ([]string, error) {
	// Services of profiles not enabled are the file's too, not orphans.
	opts := o.loadOptions()
	opts.Profiles = []string{"*"}
	plan, err := compose.Load(context.Background(), opts)
	if err != nil || plan.Project != project {
		return nil, nil // no compose file here: every service is the project's
	}
	var rows []api.Replica
	if c, err := control.Dial(stateDir); err == nil {
		rows, err = c.Ps(context.Background(), api.PsOptions{All: true})
		c.Close()
		if err != nil {
			return nil, err
		}
	} else if rt, err := o.runtimeBinary(); err == nil {
		rows, _ = engine.Unsupervised(context.Background(), rt, project)
	}
	var orphans, keep []string
	for _, r := range rows {
		switch {
		case plan.Service(r.Service) == nil:
			orphans = append(orphans, r.Instance)
		case !slices.Contains(keep, r.Service):
			keep = append(keep, r.Service)
		}
	}
	if len(orphans) == 0 {
		return nil, nil
	}
	fmt.Fprintf(o.stderr, "WARN Found orphan instances (%s) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.\n", strings.Join(orphans, ", "))
	if keep == nil {
		keep = []string{}
	}
	return keep, nil
}

func newConfig(o *options) *cobra.Command {
	var quiet, services, images bool
	var format string
	c := &cobra.Command{
		Use:   "config",
		Short: "Print the resolved plan (needs no runtime)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "yaml" && format != "json" {
				return &usageError{fmt.Errorf("--format %q: use yaml or json", format)}
			}
			plan, err := o.load()
			if err != nil {
				return err
			}
			if !quiet {
				warnMissingImages(o, plan)
			}
			switch {
			case quiet:
				return nil
			case services || images:
				names := plan.ServiceNames()
				if images {
					names = plan.ImageNames()
				}
				for _, n := range names {
					fmt.Fprintln(o.stdout, n)
				}
				return nil
			case format == "json":
				return plan.WriteJSON(o.stdout)
			}
			return plan.Print(o.stdout)
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only validate the configuration, print nothing")
	c.Flags().BoolVar(&services, "services", false, "Print the service names, one per line")
	c.Flags().BoolVar(&images, "images", false, "Print the image names, one per line")
	c.Flags().StringVar(&format, "format", "yaml", "Format of the plan: yaml or json")
	networkFlag(c, o)
	return c
}

func newVersion(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the sstack version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(o.stdout, "sstack version %s\n", version)
		},
	}
}

// The commands of the original singularity-stack, as aliases.

func newDeploy(o *options) *cobra.Command {
	return stackAlias(o, "deploy", "singularity-stack's deploy: up -d -f FILE -n NAME", func(ctx context.Context) error {
		return upCmd(ctx, o, nil)
	})
}

func newUpdate(o *options) *cobra.Command {
	return stackAlias(o, "update", "singularity-stack's update: bring the running stack NAME to its compose file (up -d on a running stack)", func(context.Context) error {
		if err := o.converge.check(); err != nil {
			return err
		}
		done, err := upInRunningStack(o, nil)
		if !done && err == nil {
			err = &notRunningError{o.project, fmt.Sprintf("start it with 'sstack deploy -c FILE %s'", o.project)}
		}
		return err
	})
}

// stackAlias is a singularity-stack command on a stack NAME with -c FILE,
// detached, with up's flags.
func stackAlias(o *options, name, short string, run func(context.Context) error) *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   name + " [-c FILE] NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				o.files = append(o.files, file)
			}
			o.project, o.detach, o.projectFlag = args[0], true, "NAME"
			return run(cmd.Context())
		},
	}
	c.Flags().StringVarP(&file, "compose-file-c", "c", "", "Compose file (singularity-stack's -c)")
	upFlags(c, o)
	return c
}

func newRm(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:               "rm NAME",
		Short:             "singularity-stack's rm: down -n NAME",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProjects(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.project, o.projectFlag = args[0], "NAME"
			return down(o)
		},
	}
	c.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "Also remove named volumes")
	return c
}

func newList(o *options) *cobra.Command {
	c := newLs(o)
	c.Use, c.Short = "list", "singularity-stack's list: ls"
	return c
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
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
	f.IntVar(&o.waitTimeout, "wait-timeout", 0, "Seconds to wait for --wait (0: no limit); on timeout the stack is taken down")
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
	f.BoolVar(&o.noLimits, "no-limits", false, "Start the services without their cgroup limits (cpus, mem_limit, pids_limit...), with a warning each; for hosts that cannot apply them")
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

func upCmd(ctx context.Context, o *options, services []string) error {
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format %q: use text or json", o.logFormat)
	}
	if o.abortOnExit && o.abortOnFail {
		return &usageError{errors.New("--abort-on-container-failure cannot be combined with --abort-on-container-exit")}
	}
	if o.wait {
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

// upInRunningStack asks the project's running supervisor, if there is
// one, to start services (and their dependencies unless --no-deps).
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
	info, _ := c.Info(ctx)
	if err := c.Up(ctx, api.UpOptions{Services: services, NoDeps: o.noDeps, Scale: scale}); err != nil {
		return true, err
	}
	fmt.Fprintf(o.stderr, "Started in the running stack of project %q (supervisor pid %d); follow its logs with 'sstack -n %s logs -f'\n", info.Name, info.Pid, info.Name)
	return true, nil
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
	ready := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == readyMarker {
			ready = true
			break
		}
		fmt.Fprintln(o.stderr, line)
	}
	r.Close()
	if ready {
		// The child goes on alone; it is not ours to wait for.
		_ = cmd.Process.Release()
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
		return nil, fmt.Errorf("state directory: %w", err)
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
// with --wait); on failure the stack is taken down and the parent learns
// why from the status lines and the exit code.
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
		fmt.Fprintf(d, "sstack: %v; taking the stack down\n", err)
		sup.Interrupt("")
		return
	}
	sup.Flush() // the parent shows every "Started" line before it returns
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parent == nil {
		return
	}
	fmt.Fprintln(d.parent, readyMarker)
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
	c := &cobra.Command{
		Use:   "down [OPTIONS]",
		Short: "Stop and remove the instances and the state of a project (named volumes stay unless -v)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return down(o) },
	}
	c.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "Also remove named volumes")
	return c
}

// down asks the project's supervisor, if one runs, for the same graceful
// teardown as Ctrl-C and waits until it is gone; then it stops whatever
// instances are left (a supervisor that was killed) and removes the state.
func down(o *options) error {
	project, stateDir, err := o.stateDir()
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	if c, err := control.Dial(stateDir); err == nil {
		info, _ := c.Info(context.Background())
		if err := c.Down(context.Background(), api.DownOptions{Volumes: o.volumes}); err != nil {
			c.Close()
			return err
		}
		c.Close()
		fmt.Fprintf(o.stderr, "Waiting for the supervisor of %s (pid %d) to take the stack down\n", project, info.Pid)
		for engine.Locked(stateDir) {
			time.Sleep(50 * time.Millisecond)
		}
	} else if !errors.Is(err, api.ErrNotRunning) {
		return err
	}
	rt, err := o.runtimeBinary()
	if err != nil {
		return err
	}
	return engine.Remove(context.Background(), rt, project, stateDir, o.volumes, o.stderr)
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
	var file string
	c := &cobra.Command{
		Use:   "deploy [-c FILE] NAME",
		Short: "singularity-stack's deploy: up -d -f FILE -n NAME",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				o.files = append(o.files, file)
			}
			o.project, o.detach = args[0], true
			return upCmd(cmd.Context(), o, nil)
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
			o.project = args[0]
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

var _ = compose.Options{}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"sstack/actors"
	"sstack/actors/policy"
	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/engine"
	"sstack/internal/logformat"
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
	// This process runs the stack: what it must ask compose-go and
	// apptainer before it starts anything is asked at once.
	collectAsUsual := collectLessWhileStarting()
	compose.CompileSchemaAhead()
	var listed engine.Listing
	if project, _, err := o.stateDir(); err == nil {
		listed = o.listAhead(ctx, project)
		defer func() { _, _ = listed() }() // an up refused early leaves no apptainer behind
	}
	scale, err := parseScale(o.scale)
	if err != nil {
		return err
	}
	o.detectAhead()
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
	rt, parallel, err := o.runtimeWithLimit()
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
		Scale:       scale,
		MetricsAddr: o.metricsAddr,
		NoLimits:    o.noLimits,
		Listed:      listed,
		UpOptions: actors.UpOptions{
			Services:    services,
			NoDeps:      o.noDeps,
			Detached:    child,
			NoStart:     o.converge.noStart,
			Exit:        policy.Exit{AbortOnExit: o.abortOnExit, AbortOnFailure: o.abortOnFail, ExitCodeFrom: o.exitCodeFrom},
			StopTimeout: o.stopTimeout(),
			Parallel:    parallel,
			Format: logformat.Format{
				Prefix:     !o.noLogPrefix,
				Color:      color && !child,
				Timestamps: o.timestamps,
				JSON:       o.logFormat == "json",
				Attached:   engine.Attached(plan, services, o.attach, o.noAttach, o.attachDeps),
			},
			Stdout: stdout,
			Stderr: status,
		},
	})
	if err != nil {
		return err
	}
	collectAsUsual()
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
	code := sup.Session(sigs)
	if report != nil {
		report.finish(code)
	}
	if code != 0 {
		return &exitError{code}
	}
	return nil
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
	c, closeFn, err := o.dialStack(dir)
	if err != nil {
		return false, nil
	}
	defer closeFn()
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err == nil && !info.Supervised {
		return false, nil // no supervisor: up starts one
	}
	scale, err := parseScale(o.scale)
	if err != nil {
		return true, err
	}
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
func showing(ctx context.Context, c api.Stack, w io.Writer, call func() error) error {
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

func newConfig(o *options) *cobra.Command {
	var quiet, services, images bool
	var format string
	c := &cobra.Command{
		Use:   "config",
		Short: "Print the resolved plan (needs no runtime)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
	formatFlag(c, &format, "Format of the plan: yaml or json", "yaml", "json")
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

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/projects"
	"sstack/internal/slurm"
	"sstack/singularity"
)

// withStack runs fn against the project's stack (projects.Open: its
// supervisor's, or what it left), until SIGINT or SIGTERM ends ctx.
func withStack(o *options, fn func(ctx context.Context, st api.Stack, project string) error) error {
	st, project, closeFn, err := o.connect()
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return fn(ctx, st, project)
}

func newPs(o *options) *cobra.Command {
	var all, quiet, services bool
	var format string
	c := &cobra.Command{
		Use:               "ps [OPTIONS] [SERVICE...]",
		Short:             "List the replicas of a project",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tmpl *template.Template
			var table bool
			if format != "table" && format != "json" {
				var err error
				if tmpl, table, err = psTemplate(format); err != nil {
					return err
				}
			}
			rows, err := psRows(o, api.PsOptions{All: all, Services: args})
			if err != nil {
				return err
			}
			switch {
			case tmpl != nil && !quiet && !services:
				return printPsTemplate(o.stdout, tmpl, table, rows, time.Now())
			case services:
				seen := map[string]bool{}
				for _, r := range rows {
					if !seen[r.Service] {
						seen[r.Service] = true
						fmt.Fprintln(o.stdout, r.Service)
					}
				}
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(o.stdout, r.Instance)
				}
			case format == "json":
				return printJSONRows(o.stdout, rows)
			default:
				printPsTable(o.stdout, rows, time.Now())
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&all, "all", "a", false, "Show all replicas, also exited and stopped ones")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display instance names")
	c.Flags().BoolVar(&services, "services", false, "Display services")
	c.Flags().StringVar(&format, "format", "table", "Format the output: table, json, a Go template ('{{.Name}} {{.Status}}', '{{json .}}'), or 'table TEMPLATE'")
	return c
}

// psRows are the project's replicas: the supervisor's, or without one
// the instances found on this host (unsupervised), else the replicas as
// the stack ended. A project that does not run has no replicas to show,
// as docker compose ps shows none: not an error.
func psRows(o *options, opts api.PsOptions) ([]api.Replica, error) {
	st, _, closeFn, err := o.connect()
	if err != nil {
		return nil, err
	}
	defer closeFn()
	return st.Ps(context.Background(), opts)
}

func printJSONRows(w io.Writer, rows []api.Replica) error {
	type row struct {
		api.Replica
		Status string `json:"Status"`
	}
	out := make([]row, len(rows))
	for i, r := range rows {
		out[i] = row{r, r.Status()}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}

func printPsTable(w io.Writer, rows []api.Replica, now time.Time) {
	tw := newTable(w)
	// A NODE column only for a stack spread over a Slurm allocation; an
	// ADDRESS column (last) for replicas with addresses of their own.
	nodes := slices.ContainsFunc(rows, func(r api.Replica) bool { return r.Node != "" })
	addrs := slices.ContainsFunc(rows, func(r api.Replica) bool { return r.Address != "" })
	header := []string{"NAME", "SERVICE", "STATUS", "SINCE", "RESTARTS", "PID", "PORTS"}
	if nodes {
		header = slices.Insert(header, 2, "NODE")
	}
	if addrs {
		header = append(header, "ADDRESS")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		since, pid, restarts := "", "", strconv.Itoa(r.Restarts)
		if !r.Since.IsZero() {
			since = ago(now.Sub(r.Since))
		}
		if r.Pid > 0 {
			pid = strconv.Itoa(r.Pid)
		}
		status := r.Status()
		if !r.Supervised {
			status = "running (no supervisor)"
			restarts = "-"
		}
		cols := []string{r.Name, r.Service, status, since, restarts, pid, portsColumn(r.Publishers)}
		if nodes {
			cols = slices.Insert(cols, 2, r.Node)
		}
		if addrs {
			cols = append(cols, r.Address)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	_ = tw.Flush()
}

// ago renders a duration as docker does in "Up 2 minutes": coarse.
func ago(d time.Duration) string {
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func newLs(o *options) *cobra.Command {
	var format string
	var all, quiet bool
	c := &cobra.Command{
		Use:   "ls [OPTIONS]",
		Short: "List the projects of this user: running ones, and with -a those that ran here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			projects, err := listProjects(o, all)
			if err != nil {
				return err
			}
			return projectListing.print(o.stdout, format, quiet, projects)
		},
	}
	formatFlag(c, &format, "Format the output: table or json", "table", "json")
	c.Flags().BoolVarP(&all, "all", "a", false, "Show all projects, also stopped ones")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display project names")
	return c
}

// projectListing is ls's table: a project's supervisor is its pid.
var projectListing = listing[api.ProjectInfo]{
	header: []string{"NAME", "STATUS", "SUPERVISOR", "CONFIG FILES"},
	key:    func(p api.ProjectInfo) string { return p.Name },
	cells: func(p api.ProjectInfo) []string {
		sup := "none"
		if p.Supervised {
			sup = "pid " + strconv.Itoa(p.Pid)
			if p.Detached {
				sup += " (detached)"
			}
		}
		return []string{p.Name, p.Status, sup, strings.Join(p.ConfigFiles, ",")}
	},
}

// stateBase is the directory that holds one state directory per project.
func (o *options) stateBase() string {
	return filepath.Dir(compose.StateDirFor("x", o.loadOptions()))
}

// listProjects finds the user's projects, with or without a supervisor.
func listProjects(o *options, all bool) ([]api.ProjectInfo, error) {
	rt, _ := o.runtimeBinary() // without a runtime, only supervised projects
	return projects.List(context.Background(), rt, o.stateBase(), all)
}

func newExec(o *options) *cobra.Command {
	var noTTY bool
	var env []string
	var workdir string
	var index int
	c := &cobra.Command{
		Use:               "exec [OPTIONS] SERVICE COMMAND [ARGS...]",
		Short:             "Run a command in a running replica's instance, with the service's environment",
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			var target api.ExecTarget
			err := withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				var err error
				target, err = st.ExecTarget(ctx, api.ExecOptions{Service: args[0], Index: index})
				return err
			})
			if err != nil {
				return err
			}
			return execIn(o, target, args[1:], env, workdir, noTTY)
		},
	}
	c.Flags().SetInterspersed(false) // flags after SERVICE belong to the command
	c.Flags().BoolVarP(&noTTY, "no-TTY", "T", false, "Disable pseudo-TTY allocation: the command gets no terminal")
	c.Flags().StringArrayVarP(&env, "env", "e", nil, "Set environment variables (KEY=VALUE)")
	c.Flags().StringVarP(&workdir, "workdir", "w", "", "Working directory inside the instance")
	c.Flags().IntVar(&index, "index", 0, "Replica number of the service (default 1)")
	return c
}

// execIn runs the command in the instance and returns its exit code as
// sstack's, as docker compose exec does.
func execIn(o *options, t api.ExecTarget, args, extraEnv []string, workdir string, noTTY bool) error {
	rt, err := o.runtimeBinary()
	if err != nil {
		return err
	}
	env := append(append([]string{}, t.Env...), extraEnv...)
	for _, kv := range extraEnv {
		if !strings.Contains(kv, "=") {
			return &usageError{fmt.Errorf("-e %q: want KEY=VALUE", kv)}
		}
	}
	pwd := t.Pwd
	if workdir != "" {
		pwd = workdir
	}
	net := singularity.Network{Holder: t.NetHolder, UserNS: t.NetUserNS}
	spec := singularity.ProcessSpec{Instance: t.Instance, Args: args, Env: env, Pwd: pwd, Net: net}
	// The terminal's signals reach the command (same process group);
	// sstack waits for its exit code.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	return attach(o, rt, spec, t, noTTY)
}

// attach runs spec's process from this shell, with a terminal when stdin
// and stdout are one (and not noTTY), on the node of t when it names one,
// and returns its exit code as sstack's.
func attach(o *options, rt *singularity.Apptainer, spec singularity.ProcessSpec, t api.ExecTarget, noTTY bool) error {
	tty := !noTTY && isTerminal(os.Stdin) && isTerminal(o.stdout)
	if tty {
		if v := os.Getenv("TERM"); v != "" {
			spec.Env = append(slices.Clip(spec.Env), "TERM="+v)
		}
	}
	cmd, err := rt.Interactive(context.Background(), spec)
	if err != nil {
		return err
	}
	if t.Node != "" {
		// The replica runs on another node of the allocation: the same
		// client, run there in a step of its own (its environment goes
		// with srun's --export=ALL).
		argv := slurm.ExecStep("srun", t.Job, t.Node, tty, cmd.Args)
		srun, err := exec.LookPath(argv[0])
		if err != nil {
			return fmt.Errorf("%s runs on node %s of Slurm job %s, and srun is not on PATH to reach it: %w", t.Instance, t.Node, t.Job, err)
		}
		cmd.Path, cmd.Args = srun, argv
	}
	if tty {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	} else {
		// Pipes, not our descriptors: the command must see no terminal.
		cmd.Stdin, cmd.Stdout, cmd.Stderr = io.MultiReader(os.Stdin), o.stdout, o.stderr
	}
	err = cmd.Run()
	if cmd.ProcessState != nil {
		if code := exitStatus(cmd.ProcessState); code != 0 {
			return &exitError{code}
		}
		return nil
	}
	return err
}

func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func newServiceCommand(o *options, verb string) *cobra.Command {
	var wait, noDeps bool
	var waitTimeout int
	short := map[string]string{
		"stop":    "Stop services (stop_signal, then SIGKILL after the grace period); the restart policy does not restart them",
		"start":   "Start stopped services",
		"restart": "Restart services (their depends_on restart: true dependents follow)",
	}[verb]
	c := &cobra.Command{
		Use:               verb + " [OPTIONS] [SERVICE...]",
		Short:             short,
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			timeout := o.stopTimeout()
			return withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				switch verb {
				case "stop":
					return st.Stop(ctx, api.StopOptions{Services: args, Timeout: timeout})
				case "start":
					if waitTimeout > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, time.Duration(waitTimeout)*time.Second)
						defer cancel()
					}
					err := st.Start(ctx, api.StartOptions{Services: args, Wait: wait || waitTimeout > 0})
					if errors.Is(err, context.DeadlineExceeded) {
						err = fmt.Errorf("--wait-timeout %ds: the services were not all running and healthy in time", waitTimeout)
					}
					return err
				default:
					return st.Restart(ctx, api.RestartOptions{Services: args, Timeout: timeout, NoDeps: noDeps})
				}
			})
		},
	}
	switch verb {
	case "start":
		c.Flags().BoolVar(&wait, "wait", false, "Return once the services run, healthy where they have a healthcheck")
		c.Flags().IntVar(&waitTimeout, "wait-timeout", 0, "Seconds to wait for --wait (0: no limit); implies --wait")
	case "restart":
		c.Flags().BoolVar(&noDeps, "no-deps", false, "Don't restart the services that follow these (depends_on restart: true)")
	}
	if verb != "start" {
		c.Flags().IntVarP(&o.timeout, "timeout", "t", -1, "Seconds to wait for the stop signal to work before SIGKILL (default: stop_grace_period)")
	}
	return c
}

// stopTimeout is -t as a grace period; nil means each service's
// stop_grace_period.
func (o *options) stopTimeout() *time.Duration {
	if o.timeout < 0 {
		return nil
	}
	d := time.Duration(o.timeout) * time.Second
	return &d
}

func newKill(o *options) *cobra.Command {
	var sig string
	c := &cobra.Command{
		Use:               "kill [OPTIONS] [SERVICE...]",
		Short:             "Send a signal to the service processes (SIGKILL by default)",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := singularity.ParseSignal(sig); err != nil {
				return &usageError{fmt.Errorf("-s: %w", err)}
			}
			return withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				return st.Kill(ctx, api.KillOptions{Services: args, Signal: sig})
			})
		},
	}
	c.Flags().StringVarP(&sig, "signal", "s", "SIGKILL", "Signal to send")
	return c
}

func newScale(o *options) *cobra.Command {
	var noDeps bool
	return &cobra.Command{
		Use:               "scale SERVICE=NUM... (or singularity-stack's: scale SERVICE NUM)",
		Short:             "Set the number of replicas of services, live",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 && !strings.Contains(args[0], "=") {
				args = []string{args[0] + "=" + args[1]}
			}
			replicas, err := parseScale(args)
			if err != nil {
				return err
			}
			return withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				return st.Scale(ctx, api.ScaleOptions{Replicas: replicas, NoDeps: noDeps})
			})
		},
	}
}

func newEvents(o *options) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:               "events [OPTIONS] [SERVICE...]",
		Short:             "Stream the stack's events (create, start, die, restart, health_status, stop, kill, destroy, ...)",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			enc := json.NewEncoder(o.stdout)
			return withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				err := st.Events(ctx, api.EventsOptions{Services: args}, func(ev api.Event) error {
					if ev.Kind == api.EventState {
						return nil // for ps; nothing happened a user would name
					}
					if asJSON {
						return enc.Encode(ev)
					}
					_, err := fmt.Fprintln(o.stdout, ev.Text())
					return err
				})
				if errors.Is(err, context.Canceled) {
					return nil // Ctrl-C
				}
				return err
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "Output events as a stream of JSON objects")
	return c
}

func newWait(o *options) *cobra.Command {
	var downProject bool
	c := &cobra.Command{
		Use:               "wait SERVICE...",
		Short:             "Block until a process of the services exits; its exit code is sstack's",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				code, err := st.Wait(ctx, api.WaitOptions{Services: args, DownProject: downProject})
				if err != nil {
					return err
				}
				fmt.Fprintln(o.stdout, code)
				if code != 0 {
					return &exitError{code}
				}
				return nil
			})
		},
	}
	c.Flags().BoolVar(&downProject, "down-project", false, "Take the project down when the first one exits")
	return c
}

func newTop(o *options) *cobra.Command {
	return &cobra.Command{
		Use:               "top [SERVICE...]",
		Short:             "Display the processes running in each replica's instance",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				tops, err := st.Top(ctx, api.TopOptions{Services: args})
				if err != nil {
					return err
				}
				for i, t := range tops {
					if i > 0 {
						fmt.Fprintln(o.stdout)
					}
					fmt.Fprintln(o.stdout, t.Name)
					tw := newTable(o.stdout, "UID", "PID", "PPID", "CMD")
					for _, p := range t.Processes {
						fmt.Fprintf(tw, "%d\t%d\t%d\t%s\n", p.UID, p.Pid, p.PPid, p.Command)
					}
					_ = tw.Flush()
				}
				return nil
			})
		},
	}
}

// completeServices completes service names from the compose file.
func completeServices(o *options) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		plan, err := compose.Load(context.Background(), o.loadOptions())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, s := range plan.Services {
			names = append(names, s.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeProjects completes the names of the user's projects.
func completeProjects(o *options) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var names []string
		entries, _ := os.ReadDir(o.stateBase())
		for _, e := range entries {
			if e.IsDir() && !strings.HasPrefix(e.Name(), "_") {
				names = append(names, e.Name())
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

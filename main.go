// Command sstack runs a docker-compose.yml stack on Apptainer/Singularity,
// in the foreground the way `docker compose up` does on Docker, or in the
// background (`up -d`) to be operated from another shell.
//
// main.go only parses flags (cobra, as docker compose's CLI) and calls
// api.Stack: the in-process supervisor (internal/engine) for `up`, and for
// every other command on a project the stack projects.Open gives: the
// control socket client (internal/control) when a supervisor runs, else
// what the stack left (projects.Remains).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/engine"
	"sstack/internal/projects"
	"sstack/internal/stacknet"
	"sstack/metrics"
	"sstack/singularity"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// options holds every flag; each command reads the ones it declares.
type options struct {
	// dial opens a project's stack from its state directory (nil:
	// projects.Open, its supervisor's or what it left); unit tests give
	// a fake api.Stack.
	dial    func(dir string) (api.Stack, func(), error)
	files   []string
	project string
	// projectFlag is how the project name was given (-n, -p,
	// --project-name, --project, or NAME of deploy and rm), for messages.
	projectFlag string
	envFiles    []string
	profiles    []string
	// named are the services the command line names: their profiles are
	// enabled, as docker compose does.
	named    []string
	runtime  string
	detected func() (*singularity.Apptainer, error) // runtimeBinary's, once asked
	loaded   *loaded                                // loadOnce's
	imageDir string
	parallel int
	images   imageFlags // pull, build, up's --pull/--build

	// up
	metricsAddr  string
	noColor      bool
	noLogPrefix  bool
	timestamps   bool
	logFormat    string
	abortOnExit  bool
	abortOnFail  bool
	exitCodeFrom string
	detach       bool
	converge     convergeFlags
	wait         bool
	waitTimeout  int
	noDeps       bool
	scale        []string
	attach       []string
	noAttach     []string
	attachDeps   bool
	noLimits     bool
	network      string // up --network: "" or host

	// down
	volumes bool
	// stop, restart, down: -t seconds; -1 means the compose file's
	// stop_grace_period
	timeout int

	// logs: its own flags (the shared --timestamps, --no-log-prefix and
	// --no-color are above)
	logs api.LogsOptions

	stdout io.Writer
	stderr io.Writer
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == cpOnNodeArg {
		os.Exit(cpHere(os.Args[2:])) // cp of a replica on another node
	}
	if len(os.Args) >= 2 && os.Args[1] == stacknet.HolderArg {
		stacknet.Hold() // a stack network's holder: never returns
	}
	// compose-go reports through logrus (unset variables, obsolete
	// `version`); print those like sstack's own warnings, without logrus's
	// time= key=value decoration.
	logrus.SetFormatter(plainFormatter{})
	os.Exit(withCPUProfile(func() int { return run(os.Args[1:], os.Stdout, os.Stderr) }))
}

// collectLessWhileStarting sets GOGC to 400 (unless GOGC is set) while
// up starts a stack: sstack allocates most then (compose-go's schema, the
// load, the actors) and its live heap is small (2 to 5 MB), so at Go's
// default it collects four times before the instances start. An up of 10
// services takes about 15 ms less of its own CPU that way (8%, 16 runs
// alternating with the default). The function it returns goes back to
// the default once the stack runs: there a heap five times the live one
// costs the log path more in fresh pages than it saves in collections
// (about 4 ns per line more).
func collectLessWhileStarting() (asUsual func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	before := debug.SetGCPercent(400)
	return func() { debug.SetGCPercent(before) }
}

// withCPUProfile runs f; SSTACK_CPUPROFILE=path (hidden, for measuring
// sstack's own CPU, e.g. in BenchmarkLogThroughput) writes a pprof CPU
// profile of the process's whole run to path.
func withCPUProfile(f func() int) int {
	path := os.Getenv("SSTACK_CPUPROFILE")
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sstack: SSTACK_CPUPROFILE: %v\n", err)
		return f()
	}
	defer out.Close()
	defer pprof.StopCPUProfile()
	return f()
}

type plainFormatter struct{}

func (plainFormatter) Format(e *logrus.Entry) ([]byte, error) {
	level := strings.ToUpper(e.Level.String())
	if e.Level == logrus.WarnLevel {
		level = "WARN"
	}
	return []byte(level + " " + e.Message + "\n"), nil
}

// exitError carries an exit code out of a command (exec, wait, up).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a wrong command line: exit code 2, as docker compose.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	return execute(&options{stdout: stdout, stderr: stderr}, args)
}

// execute runs the command line args with o (its output writers, and
// in unit tests a fake stack to dial) and returns the exit code.
func execute(o *options, args []string) int {
	stdout, stderr := o.stdout, o.stderr
	o.projectFlag = projectFlagIn(args)
	root := newRoot(o)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(stderr, "sstack: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "Run 'sstack --help' for usage.")
		return 2
	}
	return 1
}

// usageErrors makes cobra's own errors for a bad command line (flags,
// the number of arguments) usage errors, in c and every command below.
// Flag errors go through the root's FlagErrorFunc, which cobra asks of
// every command.
func usageErrors(c *cobra.Command) {
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageErrors(sub)
	}
}

func newRoot(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:   "sstack [OPTIONS] COMMAND",
		Short: "Run a docker-compose.yml stack on Apptainer/Singularity",
		Long: `Run a docker-compose.yml stack on Apptainer/Singularity, in the foreground as
'docker compose up' does (the default command), or detached (up -d) and then
operated from any shell of the same user (ps, logs, exec, stop, scale, down).`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Project flags go before the command, as with docker compose.
		TraverseChildren: true,
		Args:             cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return upCmd(cmd.Context(), o, nil)
		},
	}
	root.SetVersionTemplate("sstack version {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringArrayVar(&o.files, "file", nil, "Compose configuration files (repeatable; -f before the command or after any command but logs; default: compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml)")
	pf.StringVarP(&o.project, "project-name", "n", "", "Project name (default: COMPOSE_PROJECT_NAME, then the top-level name:, then the directory name)")
	pf.StringVarP(&o.project, "project", "p", "", "Same as --project-name")
	_ = pf.MarkHidden("project")
	pf.StringArrayVar(&o.envFiles, "env-file", nil, "Environment files for interpolation (default: .env in the project directory)")
	pf.StringArrayVar(&o.profiles, "profile", nil, "Profiles to enable (repeatable; also COMPOSE_PROFILES)")
	pf.StringVar(&o.runtime, "runtime", "", "Container runtime binary (default: the first of apptainer, singularity that works)")
	pf.IntVar(&o.parallel, "parallel", -1, "Maximum instances started or stopped at once (default: COMPOSE_PARALLEL_LIMIT, else 8 per core)")
	pf.StringVar(&o.imageDir, "image-dir", "", "Where docker image references are looked up as SIF files (default: SSTACK_IMAGE_DIR, then ./images)")
	fileShorthand(root, o)
	// `sstack -f x.yml -n app` is `up`: the root takes up's flags too.
	upFlags(root, o)
	for _, name := range []string{"detach", "wait", "wait-timeout", "no-deps", "scale"} {
		_ = root.Flags().MarkHidden(name)
	}
	_ = root.RegisterFlagCompletionFunc("project-name", completeProjects(o))

	root.AddCommand(
		newUp(o), newDown(o), newConfig(o), newLogs(o),
		newPs(o), newLs(o), newExec(o), newPort(o), newCp(o), newImages(o), newRun(o),
		newServiceCommand(o, "stop"), newServiceCommand(o, "start"), newServiceCommand(o, "restart"), newKill(o),
		newScale(o), newEvents(o), newWait(o), newTop(o), newStats(o), newVersion(o),
		newDeploy(o), newUpdate(o), newRm(o), newList(o),
		newPull(o), newBuild(o), newAgent(o),
	)
	for _, c := range root.Commands() {
		if c.Name() != "logs" && c.Name() != "completion" && c.Name() != "help" {
			fileShorthand(c, o)
		}
	}
	usageErrors(root)
	return root
}

// fileShorthand adds -f for --file to a command. It cannot be a persistent
// shorthand because `logs -f` means --follow, as in docker compose.
func fileShorthand(c *cobra.Command, o *options) {
	c.Flags().StringArrayVarP(&o.files, "compose-file", "f", nil, "Compose configuration file (same as --file)")
	_ = c.Flags().MarkHidden("compose-file")
}

func (o *options) loadOptions() compose.Options {
	return compose.Options{
		Files:       o.files,
		ProjectName: o.project,
		ProjectFlag: o.projectFlag,
		EnvFiles:    o.envFiles,
		Profiles:    o.profiles,
		Services:    o.named,
		ImageDir:    o.imageDir,
		HostNetwork: o.network == compose.NetworkHost,
	}
}

func (o *options) load() (*compose.Plan, error) {
	if o.network != "" && o.network != compose.NetworkHost {
		return nil, &usageError{fmt.Errorf("--network %q: the one value is host (every service on the host's network); without it each stack has its own", o.network)}
	}
	plan, err := o.loadOnce()
	if err != nil {
		return nil, err
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(o.stderr, "WARN %s\n", w)
	}
	return plan, nil
}

// loaded is a load of the compose files and the options it was asked with.
type loaded struct {
	opts compose.Options
	plan *compose.Plan
	err  error
}

// loadOnce is compose.Load of the flags' options, done once per command
// for the same options: up without -n loads the files to learn the
// project's name (is it running?), then to run it.
func (o *options) loadOnce() (*compose.Plan, error) {
	opts := o.loadOptions()
	if l := o.loaded; l != nil && reflect.DeepEqual(l.opts, opts) {
		return l.plan, l.err
	}
	plan, err := compose.Load(context.Background(), opts)
	o.loaded = &loaded{opts: opts, plan: plan, err: err}
	return plan, err
}

// stateDir of the project the flags name.
func (o *options) stateDir() (project, dir string, err error) {
	project, err = o.projectName()
	if err != nil {
		return "", "", err
	}
	if err := checkProjectName(project, o.projectFlag); err != nil {
		return "", "", err
	}
	return project, compose.StateDirFor(project, o.loadOptions()), nil
}

// checkProjectName refuses names that cannot be projects (their instance
// names would be refused by Apptainer, or escape the state directory);
// the message names flag, the way the user gave the name.
func checkProjectName(name, flag string) error {
	if flag == "" {
		flag = "project"
	}
	if name == "" || strings.ContainsAny(name, "/.") || name != strings.TrimSpace(name) {
		return fmt.Errorf("%s %q: not a project name; a project name has lowercase letters, digits, '-' and '_'", flag, name)
	}
	if err := singularity.ValidateName(name + ".x.1"); err != nil {
		return fmt.Errorf("%s %q: not a project name: %v", flag, name, err)
	}
	return nil
}

// projectFlagIn is the flag that gives the project name in args as the
// user wrote it (the last one wins, as for the value); "" when none does.
// It stops at exec, whose command may have flags of its own.
func projectFlagIn(args []string) string {
	flag := ""
	for _, a := range args {
		if a == "--" || a == "exec" {
			break
		}
		name, _, _ := strings.Cut(a, "=")
		switch {
		case name == "--project-name" || name == "--project":
			flag = name
		case strings.HasPrefix(a, "-n") || strings.HasPrefix(a, "-p"):
			flag = a[:2]
		}
	}
	return flag
}

// connect opens the project's stack (api.Stack: its supervisor's, or
// what it left, whose verbs that need a supervisor say how to start one).
func (o *options) connect() (api.Stack, string, func(), error) {
	project, dir, err := o.stateDir()
	if err != nil {
		return nil, "", nil, err
	}
	st, closeFn, err := o.dialStack(dir)
	if err != nil {
		if errors.Is(err, api.ErrNotRunning) {
			return nil, project, nil, notRunning(project)
		}
		return nil, project, nil, err
	}
	return st, project, closeFn, nil
}

// dialStack opens the stack of the project whose state directory is dir.
func (o *options) dialStack(dir string) (api.Stack, func(), error) {
	return o.openStack(dir, nil)
}

// openStack opens the stack of the project whose state directory is dir:
// its supervisor's when one answers on the control socket, else what its
// stack left (projects.Remains), for which plan, when given, is the
// compose file (down SERVICE's dependents).
func (o *options) openStack(dir string, plan *compose.Plan) (api.Stack, func(), error) {
	if o.dial != nil {
		return o.dial(dir)
	}
	return projects.Open(dir, projects.Remains{Project: filepath.Base(dir), StateDir: dir, Plan: plan, Runtime: o.runtimeBinary, Progress: o.stderr})
}

func notRunning(project string) error {
	return &projects.NotRunningError{Project: project}
}

// parallelLimit is --parallel, else COMPOSE_PARALLEL_LIMIT; 0 means the
// default.
func (o *options) parallelLimit() (int, error) {
	if o.parallel > 0 {
		return o.parallel, nil
	}
	if v := os.Getenv("COMPOSE_PARALLEL_LIMIT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("COMPOSE_PARALLEL_LIMIT=%q: want a number of 1 or more", v)
		}
		return n, nil
	}
	return 0, nil
}

// runtimeWithLimit is the runtime and the parallel limit, as the commands
// that start instances or get images need both.
func (o *options) runtimeWithLimit() (*singularity.Apptainer, int, error) {
	rt, err := o.runtimeBinary()
	if err != nil {
		return nil, 0, err
	}
	parallel, err := o.parallelLimit()
	return rt, parallel, err
}

// runtimeBinary detects the runtime once per command: up asks for it for
// the images and again for the stack, and each detection runs
// `apptainer --version`, a Go binary's start (30 ms of CPU, over 100 ms
// of wall time on a loaded 2-core node).
func (o *options) runtimeBinary() (*singularity.Apptainer, error) {
	o.detectAhead()
	return o.detected()
}

// detectAhead starts the detection of the runtime, which runtimeBinary
// then waits for: up runs it beside the load of the compose file.
func (o *options) detectAhead() {
	if o.detected == nil {
		o.detected = ahead(func() (*singularity.Apptainer, error) { return singularity.Detect(o.runtime) })
	}
}

// listAhead asks apptainer now for the instances of project, which up's
// clash check needs only once the compose file is loaded and checked:
// the two overlap. The listing waits for the answer.
func (o *options) listAhead(ctx context.Context, project string) engine.Listing {
	o.detectAhead()
	return ahead(func() ([]singularity.InstanceInfo, error) {
		rt, err := o.detected()
		if err != nil {
			return nil, err
		}
		return rt.ListInstances(ctx, project+".*")
	})
}

// ahead starts ask in the background and returns what waits for its
// answer (as often as it is called).
func ahead[T any](ask func() (T, error)) func() (T, error) {
	done := make(chan struct{})
	var answer T
	var err error
	go func() {
		defer close(done)
		answer, err = ask()
	}()
	return func() (T, error) {
		<-done
		return answer, err
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// metricsDefault is --metrics-addr's default, exported for the help text.
var metricsDefault = metrics.DefaultAddr

// projectName is -n, or the name of the compose project in this directory.
func (o *options) projectName() (string, error) {
	if o.project != "" {
		return o.project, nil
	}
	project, _, err := o.projectAndPlan()
	return project, err
}

// projectAndPlan is projectName and the compose file's plan of that
// project, loaded once (nil when there is none here, or it is another
// project's).
func (o *options) projectAndPlan() (string, *compose.Plan, error) {
	plan, err := o.loadOnce()
	switch {
	case o.project != "":
		if err != nil || plan.Project != o.project {
			return o.project, nil, nil
		}
		return o.project, plan, nil
	case err != nil:
		return "", nil, fmt.Errorf("give the project with -n NAME, or run this where its compose file is: %w", err)
	}
	return plan.Project, plan, nil
}

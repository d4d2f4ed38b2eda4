// Command sstack runs a docker-compose.yml stack on Apptainer in the
// foreground, the way `docker compose up` does on Docker.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"sstack/actors"
	"sstack/compose"
	"sstack/metrics"
	"sstack/singularity"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `Usage:  sstack [OPTIONS] [COMMAND] [ARGS...]

Run a docker-compose.yml stack on Apptainer/Singularity in the foreground.

Commands:
  up        Start every service and stream their logs (the default); Ctrl-C stops the stack
  config    Print the resolved plan (needs no runtime)
  down      Stop and remove every instance and the state of a project
  logs      Show the logs of a project's services, while it runs or after it stopped:
            sstack logs -n app [-f] [--since D] [--tail N] [-t] [SERVICE...]

Options:
`

type options struct {
	files        []string
	project      string
	envFiles     []string
	profiles     []string
	runtime      string
	imageDir     string
	metricsAddr  string
	noColor      bool
	noLogPrefix  bool
	timestamps   bool
	logFormat    string
	abortOnExit  bool
	abortOnFail  bool
	exitCodeFrom string
	volumes      bool
	follow       bool
	since        string
	tail         string
	until        string
	index        int
	include      []string
	exclude      []string
	onlyStdout   bool
	onlyStderr   bool
	showVersion  bool
	showHelp     bool
	stdout       io.Writer
	stderr       io.Writer
}

func main() {
	// compose-go reports through logrus (unset variables, obsolete
	// `version`); print those like sstack's own warnings, without logrus's
	// time= key=value decoration.
	logrus.SetFormatter(plainFormatter{})
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type plainFormatter struct{}

func (plainFormatter) Format(e *logrus.Entry) ([]byte, error) {
	level := strings.ToUpper(e.Level.String())
	if e.Level == logrus.WarnLevel {
		level = "WARN"
	}
	return []byte(level + " " + e.Message + "\n"), nil
}

// commands are the subcommands; without one, sstack runs up.
var commands = map[string]bool{"up": true, "config": true, "down": true, "logs": true, "version": true}

// newFlagSet declares every flag into o. Flags are global, as docker
// compose users type them either before or after the command; only after
// `logs` does -f mean --follow (as in `docker compose logs -f`).
func newFlagSet(o *options, logsMode bool) *pflag.FlagSet {
	fs := pflag.NewFlagSet("sstack", pflag.ContinueOnError)
	fs.SetOutput(o.stderr)
	fileShort, followShort := "f", ""
	if logsMode {
		fileShort, followShort = "", "f"
	}
	fs.StringArrayVarP(&o.files, "file", fileShort, nil, "Compose configuration files (repeatable; default: compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml in the current directory)")
	fs.StringVarP(&o.project, "project-name", "n", "", "Project name (default: COMPOSE_PROJECT_NAME, then the top-level name:, then the directory name)")
	fs.StringVarP(&o.project, "project", "p", "", "Same as --project-name")
	_ = fs.MarkHidden("project")
	fs.StringArrayVar(&o.envFiles, "env-file", nil, "Environment files for interpolation (default: .env in the project directory)")
	fs.StringArrayVar(&o.profiles, "profile", nil, "Profiles to enable (repeatable; also COMPOSE_PROFILES)")
	fs.StringVar(&o.runtime, "runtime", "", "Container runtime binary (default: the first of apptainer, singularity that works)")
	fs.StringVar(&o.imageDir, "image-dir", "", "Where docker image references are looked up as SIF files (default: SSTACK_IMAGE_DIR, then ./images)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", metrics.DefaultAddr, "up: serve Prometheus /metrics on HOST:PORT; empty turns it off")
	fs.BoolVar(&o.noColor, "no-color", false, "Produce monochrome output")
	fs.BoolVar(&o.noLogPrefix, "no-log-prefix", false, "Don't print a prefix in logs")
	fs.BoolVarP(&o.timestamps, "timestamps", "t", false, "Show timestamps")
	fs.StringVar(&o.logFormat, "log-format", "text", "up: log format, text or json")
	fs.BoolVar(&o.abortOnExit, "abort-on-container-exit", false, "up: stop the stack if any service's process exits")
	fs.BoolVar(&o.abortOnFail, "abort-on-container-failure", false, "up: stop the stack if any service's process exits with a non-zero code")
	fs.StringVar(&o.exitCodeFrom, "exit-code-from", "", "up: return the exit code of the selected service's process (implies --abort-on-container-exit unless --abort-on-container-failure is given)")
	fs.BoolVarP(&o.volumes, "volumes", "v", false, "down: also remove named volumes")
	fs.BoolVarP(&o.follow, "follow", followShort, false, "logs: follow log output (-f after 'logs')")
	fs.StringVar(&o.since, "since", "", "logs: show logs since a timestamp (2026-01-02T13:23:37Z) or relative (42m)")
	fs.StringVar(&o.tail, "tail", "all", "logs: number of lines to show from the end of the logs of each replica")
	fs.StringVar(&o.until, "until", "", "logs: show logs before a timestamp (2026-01-02T13:23:37Z) or relative (42m)")
	fs.IntVar(&o.index, "index", 0, "logs: only replica N (from 1) of the selected services")
	fs.StringArrayVarP(&o.include, "include", logsShort(logsMode, "i"), nil, "logs: only lines matching this regular expression (repeatable: all must match; -i after 'logs')")
	fs.StringArrayVarP(&o.exclude, "exclude", logsShort(logsMode, "x"), nil, "logs: leave out lines matching this regular expression (repeatable; -x after 'logs')")
	fs.BoolVar(&o.onlyStdout, "stdout", false, "logs: only what services wrote to stdout")
	fs.BoolVar(&o.onlyStderr, "stderr", false, "logs: only what services wrote to stderr")
	fs.BoolVar(&o.showVersion, "version", false, "Show the sstack version and quit")
	fs.BoolVarP(&o.showHelp, "help", "h", false, "Show this help")
	fs.SortFlags = false
	return fs
}

// findCommand returns the index of the subcommand in args, or -1: the first
// argument that is neither a flag nor a flag's value.
func findCommand(fs *pflag.FlagSet, args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return -1
		case strings.HasPrefix(a, "--"):
			name := strings.TrimPrefix(a, "--")
			if f := fs.Lookup(name); f != nil && f.NoOptDefVal == "" && !strings.Contains(name, "=") {
				i++ // the flag's value
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			if len(a) == 2 {
				if f := fs.ShorthandLookup(a[1:]); f != nil && f.NoOptDefVal == "" {
					i++
				}
			}
		default:
			if commands[a] {
				return i
			}
			return -1
		}
	}
	return -1
}

func run(args []string, stdout, stderr io.Writer) int {
	o := options{stdout: stdout, stderr: stderr}
	global := newFlagSet(&o, false)
	cmd, before, after := "up", args, []string(nil)
	if i := findCommand(global, args); i >= 0 {
		cmd, before, after = args[i], args[:i], args[i+1:]
	}
	local := newFlagSet(&o, cmd == "logs")
	parseErr := global.Parse(before)
	if parseErr == nil {
		parseErr = local.Parse(after)
	}
	if parseErr != nil {
		if errors.Is(parseErr, pflag.ErrHelp) {
			o.showHelp = true
		} else {
			fmt.Fprintf(stderr, "sstack: %v\nRun 'sstack --help' for usage.\n", parseErr)
			return 2
		}
	}
	if o.showHelp {
		fmt.Fprint(stdout, usage)
		local.SetOutput(stdout)
		local.PrintDefaults()
		return 0
	}
	if o.showVersion {
		fmt.Fprintf(stdout, "sstack version %s\n", version)
		return 0
	}
	rest := append(global.Args(), local.Args()...)
	var err error
	switch cmd {
	case "up":
		if len(rest) > 0 {
			err = fmt.Errorf("up: starting only some services (%s) is not supported yet; run the whole stack", strings.Join(rest, " "))
			break
		}
		return up(o)
	case "config":
		err = config(o)
	case "down":
		err = down(o)
	case "logs":
		err = logs(o, rest)
	case "version":
		fmt.Fprintf(stdout, "sstack version %s\n", version)
	default:
		err = fmt.Errorf("unknown command %q; run 'sstack --help'", cmd)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sstack: %v\n", err)
		return 1
	}
	return 0
}

func (o *options) loadOptions() compose.Options {
	return compose.Options{
		Files:       o.files,
		ProjectName: o.project,
		EnvFiles:    o.envFiles,
		Profiles:    o.profiles,
		ImageDir:    o.imageDir,
	}
}

func (o *options) load() (*compose.Plan, error) {
	plan, err := compose.Load(context.Background(), o.loadOptions())
	if err != nil {
		return nil, err
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(o.stderr, "WARN %s\n", w)
	}
	return plan, nil
}

func config(o options) error {
	plan, err := o.load()
	if err != nil {
		return err
	}
	return plan.Print(o.stdout)
}

// up runs the stack in the foreground until it ends or Ctrl-C.
func up(o options) int {
	fail := func(err error) int {
		fmt.Fprintf(o.stderr, "sstack: %v\n", err)
		return 1
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fail(fmt.Errorf("--log-format %q: use text or json", o.logFormat))
	}
	if o.abortOnExit && o.abortOnFail {
		fmt.Fprintln(o.stderr, "sstack: --abort-on-container-failure cannot be combined with --abort-on-container-exit")
		return 2
	}
	plan, err := o.load()
	if err != nil {
		return fail(err)
	}
	if o.exitCodeFrom != "" && plan.Service(o.exitCodeFrom) == nil {
		return fail(fmt.Errorf("--exit-code-from: no service %q in project %q", o.exitCodeFrom, plan.Project))
	}
	rt, err := singularity.Detect(o.runtime)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	unlock, err := lockProject(plan.StateDir)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	// The two checks each run apptainer: in parallel, they cost one.
	clash := make(chan error, 1)
	go func() { clash <- checkClash(ctx, rt, plan.Project) }()
	runscripts, inspectErr := inspectImages(ctx, rt, plan)
	if err := errors.Join(<-clash, inspectErr); err != nil {
		return fail(err)
	}
	listener, err := metrics.Listen(o.metricsAddr)
	if err != nil {
		return fail(err)
	}
	// New instances, new logs: as docker compose loses a recreated
	// container's logs, `sstack logs` shows the latest run.
	if err := os.RemoveAll(logDir(plan.StateDir)); err != nil {
		return fail(err)
	}
	hosts, err := actors.Prepare(ctx, plan, rt)
	if err != nil {
		return fail(err)
	}

	// Instance monitors become sstack's children, reaped at stop without
	// waiting for a slow init (see BecomeSubreaper); without it stops are
	// only slower.
	_ = singularity.BecomeSubreaper()
	m := metrics.New(plan.Project)
	if listener != nil {
		defer listener.Close()
		go func() { _ = m.Serve(listener) }()
	}
	color := !o.noColor && os.Getenv("NO_COLOR") == "" && isTerminal(o.stdout)
	stack := actors.Start(actors.StackConfig{
		Plan:         plan,
		Runtime:      rt,
		Metrics:      m,
		HasRunscript: runscripts,
		HostsFiles:   hosts,
		Format: actors.LogFormat{
			Prefix:     !o.noLogPrefix,
			Color:      color,
			Timestamps: o.timestamps,
			JSON:       o.logFormat == "json",
			StoreDir:   logDir(plan.StateDir),
		},
		Stdout:         o.stdout,
		Stderr:         o.stderr,
		AbortOnExit:    o.abortOnExit || o.exitCodeFrom != "",
		AbortOnFailure: o.abortOnFail,
		ExitCodeFrom:   o.exitCodeFrom,
	})

	// Capacity 2: the first signal stops gracefully, the second kills.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	// A closed stdout (`sstack | head`) must not kill sstack and orphan the
	// instances: writes then fail with EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)
	defer signal.Stop(sigs)
	stops := 0
	for {
		select {
		case done := <-stack.Done():
			stack.Close()
			return done.ExitCode
		case <-sigs:
			stops++
			if stops == 1 {
				stack.Stop("Gracefully stopping... (press Ctrl+C again to force)")
			} else {
				stack.Status("Killing...")
				stack.Kill()
			}
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// checkClash refuses to start a project whose instances already run: a
// second sstack, or leftovers of one that was killed.
func checkClash(ctx context.Context, rt *singularity.Apptainer, project string) error {
	infos, err := rt.ListInstances(ctx, project+".*")
	if err != nil {
		return err
	}
	var names []string
	for _, i := range infos {
		if strings.HasPrefix(i.Name, project+".") {
			names = append(names, i.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return fmt.Errorf("project %q is already running: instances %s exist (another sstack, or left over from one that was killed); run 'sstack down -n %s' to remove them, or choose another name with -n",
		project, strings.Join(names, ", "), project)
}

// inspectImages reads, in parallel, which images have a runscript, and
// refuses services that then have nothing to run.
func inspectImages(ctx context.Context, rt *singularity.Apptainer, plan *compose.Plan) (map[string]bool, error) {
	type result struct {
		has bool
		err error
	}
	images := map[string]*result{}
	var unique []string
	for _, s := range plan.Services {
		if _, ok := images[s.Image]; !ok {
			images[s.Image] = nil
			unique = append(unique, s.Image)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, img := range unique {
		wg.Add(1)
		go func(img string) {
			defer wg.Done()
			has, err := rt.HasRunscript(ctx, img)
			mu.Lock()
			images[img] = &result{has, err}
			mu.Unlock()
		}(img)
	}
	wg.Wait()
	out := map[string]bool{}
	var errs []error
	for _, s := range plan.Services {
		r := images[s.Image]
		if r.err != nil {
			errs = append(errs, fmt.Errorf("service %q: image %s: %w", s.Name, s.Image, r.err))
			continue
		}
		out[s.Name] = r.has
		if !r.has && s.Entrypoint == nil && len(s.Command) == 0 {
			errs = append(errs, fmt.Errorf("service %q: image %s has no runscript and the service sets no command or entrypoint: nothing to run; set command or entrypoint in the compose file", s.Name, s.Image))
		}
	}
	return out, errors.Join(errs...)
}

// lockProject takes an exclusive lock in the project's state directory so
// two sstacks cannot start the same project at once.
func lockProject(stateDir string) (func(), error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", stateDir, err)
	}
	path := filepath.Join(stateDir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("project state %s is locked by another sstack (%v); stop that one first, or choose another name with -n", stateDir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { _ = f.Truncate(0); f.Close() }, nil
}

// down stops every instance of the project and removes its state. Named
// volumes stay unless -v, as with docker compose.
func down(o options) error {
	project := o.project
	copts := o.loadOptions()
	if project == "" {
		plan, err := compose.Load(context.Background(), copts)
		if err != nil {
			return fmt.Errorf("down: give the project with -n NAME, or run it where its compose file is: %w", err)
		}
		project = plan.Project
	}
	rt, err := singularity.Detect(o.runtime)
	if err != nil {
		return err
	}
	ctx := context.Background()
	infos, err := rt.ListInstances(ctx, project+".*")
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(infos))
	for i, info := range infos {
		if !strings.HasPrefix(info.Name, project+".") {
			continue
		}
		wg.Add(1)
		go func(i int, name string) {
			defer wg.Done()
			fmt.Fprintf(o.stderr, "Instance %s  Stopping\n", name)
			errs[i] = rt.StopInstance(ctx, name, "SIGTERM", 10*time.Second)
			if errs[i] == nil {
				fmt.Fprintf(o.stderr, "Instance %s  Stopped\n", name)
			}
		}(i, info.Name)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	stateDir := compose.StateDirFor(project, copts)
	entries, err := os.ReadDir(stateDir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		if e.Name() == "volumes" && !o.volumes {
			continue
		}
		if err := os.RemoveAll(filepath.Join(stateDir, e.Name())); err != nil {
			return err
		}
	}
	if o.volumes || len(entries) == 0 {
		_ = os.Remove(stateDir)
	}
	return nil
}

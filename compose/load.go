package compose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sstack/singularity"
	"strconv"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
)

// Options says which compose project to load and where its files live.
// The zero value loads compose.yaml (or another default name) from the
// current directory with the process environment.
type Options struct {
	// Files are the compose files (-f, repeatable), merged in order;
	// relative ones are relative to WorkingDir. Empty: COMPOSE_FILE, else
	// the first of compose.yaml, compose.yml, docker-compose.yml,
	// docker-compose.yaml found in WorkingDir or a parent directory (plus
	// the matching compose.override.* beside it), as docker compose does.
	Files []string
	// ProjectName (-p): "" means COMPOSE_PROJECT_NAME (environment or env
	// file), then the top-level `name:`, then the project directory's base
	// name, normalised to [a-z0-9_-].
	ProjectName string
	// ProjectFlag is how the user gave ProjectName (-n, --project-name),
	// for messages; "" means -p, docker compose's.
	ProjectFlag string
	// EnvFiles (--env-file) hold variables for interpolation; default: the
	// .env file of the project directory, if any.
	EnvFiles []string
	// Profiles (--profile) to enable; empty means COMPOSE_PROFILES.
	Profiles []string
	// Services named on the command line (up SVC, build SVC): the
	// profiles they are in are enabled too, as docker compose does.
	Services []string
	// HostNetwork (up --network host) runs every service on the host's
	// network instead of the stack's own, as x-sstack.network: host does.
	HostNetwork bool
	// WorkingDir is the directory relative paths given in Options are
	// resolved against and default files are searched from; "" is the
	// current directory.
	WorkingDir string
	// ImageDir holds the SIF files of registry images, named as
	// `apptainer pull` names them (redis:7 -> redis_7.sif). "" means
	// SSTACK_IMAGE_DIR, else "images" in the project directory. A
	// relative path is relative to WorkingDir.
	ImageDir string
	// StateBase holds one state directory per project (Plan.StateDir is
	// StateBase/<project>) and external volumes (StateBase/_volumes/NAME).
	// "" means SSTACK_STATE_DIR, else ${XDG_STATE_HOME:-$HOME/.local/state}/sstack.
	// A relative path is relative to WorkingDir.
	StateBase string
	// Environ is the process environment (KEY=VALUE); nil means
	// os.Environ(). Tests set it to stay hermetic.
	Environ []string
	// GPUs are the machine's GPUs, for services that ask for some; nil
	// means DetectGPUs(Environ), run only when a service asks. Tests set
	// it to stay hermetic.
	GPUs *singularity.GPUInventory
}

// Environment variables sstack reads besides compose's own.
const (
	EnvImageDir = "SSTACK_IMAGE_DIR"
	EnvStateDir = "SSTACK_STATE_DIR"
)

// Load reads the compose files opts selects, translates them and checks
// that the result can run: every problem found (in every service) is
// returned at once, joined with errors.Join. The plan is nil when the error
// is not.
func Load(ctx context.Context, opts Options) (*Plan, error) {
	env := opts.environ()
	wd, err := opts.workingDir()
	if err != nil {
		return nil, err
	}
	envFiles := make([]string, len(opts.EnvFiles))
	for i, f := range opts.EnvFiles {
		envFiles[i] = absFrom(wd, f)
		if fi, err := os.Stat(envFiles[i]); err != nil {
			return nil, fmt.Errorf("env file %s (--env-file): %w; check the path", f, errors.Unwrap(err))
		} else if fi.IsDir() {
			return nil, fmt.Errorf("env file %s (--env-file) is a directory; give the file", f)
		}
	}
	fileEnv, dotenvUsed, err := composeFileEnv(opts, wd, env, envFiles)
	if err != nil {
		return nil, err
	}
	files, warnings, err := configFiles(opts.Files, wd, fileEnv)
	if err != nil {
		return nil, err
	}
	projectDir := wd
	if files[0] != "-" {
		projectDir = filepath.Dir(files[0])
	}
	if dotenvUsed != "" && len(envFiles) == 0 {
		// COMPOSE_FILE came from the current directory's .env: docker
		// compose interpolates with that file too, wherever the compose
		// files are.
		envFiles = []string{dotenvUsed}
	}
	var p *types.Project
	logged, err := composeGo(func() error {
		po, err := cli.NewProjectOptions(files,
			cli.WithWorkingDirectory(projectDir),
			cli.WithEnv(env),
			cli.WithEnvFiles(envFiles...),
			cli.WithDotEnv,
			cli.WithDefaultProfiles(opts.Profiles...),
			cli.WithName(opts.ProjectName),
			// Translate checks consistency itself, to report every problem at
			// once and to say what to do about each.
			cli.WithConsistency(false),
		)
		if err != nil {
			if opts.ProjectName != "" && strings.Contains(err.Error(), "invalid project name") {
				flag := opts.ProjectFlag
				if flag == "" {
					flag = "-p"
				}
				return fmt.Errorf("%s %q: %w", flag, opts.ProjectName, err)
			}
			return err
		}
		p, err = po.LoadProject(ctx)
		if err != nil {
			return explainLoadError(ctx, err, files, projectDir)
		}
		if len(opts.Services) > 0 {
			p, err = p.WithServicesEnabled(opts.Services...)
		}
		return err
	})
	warnings = append(warnings, logged...)
	if err == nil {
		var plan *Plan
		if plan, err = Translate(p, opts); err == nil {
			plan.Warnings = append(warnings, plan.Warnings...)
			plan.ConfigFiles = files
			return plan, nil
		}
	}
	// The error first: warnings (an obsolete `version`, an unset
	// variable) come after it, and may explain it.
	errs := leaves(err)
	for _, w := range warnings {
		errs = append(errs, &warningNote{w})
	}
	return nil, errors.Join(errs...)
}

// warningNote carries a warning after the errors of a failed Load; it is
// not an *Error.
type warningNote struct{ Warning }

func (w *warningNote) Error() string { return "WARN " + w.String() }

// composeGoLog serialises loads: compose-go warns through logrus's
// standard logger, which composeGo redirects while f runs.
var composeGoLog sync.Mutex

// composeGo runs f, which calls compose-go, and returns what compose-go
// logged as warnings instead of letting it reach stderr, where it would
// come before (and hide) the errors. A panic in compose-go becomes an
// error.
func composeGo(f func() error) (warnings []Warning, err error) {
	composeGoLog.Lock()
	defer composeGoLog.Unlock()
	l := logrus.StandardLogger()
	hook := &warningHook{}
	out, hooks := l.Out, l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(hook)
	l.SetOutput(io.Discard)
	defer func() {
		l.SetOutput(out)
		l.ReplaceHooks(hooks)
		if r := recover(); r != nil {
			err = fmt.Errorf("the compose file loader (compose-go) failed: %v; please report this with the compose file", r)
		}
		warnings = hook.warnings
	}()
	return nil, f()
}

type warningHook struct{ warnings []Warning }

func (h *warningHook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire keeps compose-go's words (the obsolete `version`, an unset
// variable): they are docker compose's, which its users grep for.
func (h *warningHook) Fire(e *logrus.Entry) error {
	h.warnings = append(h.warnings, Warning{Reason: e.Message})
	return nil
}

// StateDirFor is the state directory of a project, as Load would set
// Plan.StateDir, for commands such as `down -p NAME` that need it without
// a compose file.
func StateDirFor(project string, opts Options) string {
	return filepath.Join(opts.stateBase(), project)
}

func (o Options) environ() []string {
	if o.Environ == nil {
		return os.Environ()
	}
	return o.Environ
}

// getenv looks key up in the options' environment; the last entry wins,
// as with os.Getenv on a duplicated variable.
func (o Options) getenv(key string) string {
	env := o.environ()
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func (o Options) workingDir() (string, error) {
	if o.WorkingDir == "" {
		return os.Getwd()
	}
	return filepath.Abs(o.WorkingDir)
}

// absFrom makes p absolute, relative to dir.
func absFrom(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

func (o Options) stateBase() string {
	wd, err := o.workingDir()
	if err != nil {
		wd = "/"
	}
	if o.StateBase != "" {
		return absFrom(wd, o.StateBase)
	}
	if v := o.getenv(EnvStateDir); v != "" {
		return absFrom(wd, v)
	}
	if v := o.getenv("XDG_STATE_HOME"); filepath.IsAbs(v) {
		return filepath.Join(v, "sstack")
	}
	if v := o.getenv("HOME"); filepath.IsAbs(v) {
		return filepath.Join(v, ".local", "state", "sstack")
	}
	// No home (a batch job with a scrubbed environment): a per-user
	// directory that survives until the next reboot at least.
	return filepath.Join(os.TempDir(), "sstack-"+strconv.Itoa(os.Getuid()))
}

// imageDir is where registry images are looked up; projectDir is the
// fallback's base.
func (o Options) imageDir(projectDir string) string {
	wd, err := o.workingDir()
	if err != nil {
		wd = projectDir
	}
	if o.ImageDir != "" {
		return absFrom(wd, o.ImageDir)
	}
	if v := o.getenv(EnvImageDir); v != "" {
		return absFrom(wd, v)
	}
	return filepath.Join(projectDir, "images")
}

// composeFileEnv is the environment COMPOSE_FILE and COMPOSE_PATH_SEPARATOR
// are looked up in when no -f is given: as in docker compose, the process
// environment over the env files (--env-file, else the .env of the current
// directory, since the project directory is not known yet). fromDotenv is
// the default .env when COMPOSE_FILE was taken from it.
func composeFileEnv(opts Options, wd string, env, envFiles []string) (out []string, fromDotenv string, err error) {
	if len(opts.Files) > 0 {
		return env, "", nil
	}
	files := envFiles
	if len(files) == 0 {
		p := filepath.Join(wd, ".env")
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return env, "", nil
		}
		files = []string{p}
	}
	current := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			current[k] = v
		}
	}
	vars, err := dotenv.GetEnvFromFile(current, files)
	if err != nil {
		return nil, "", fmt.Errorf("env file: %w", err)
	}
	for _, k := range []string{"COMPOSE_FILE", "COMPOSE_PATH_SEPARATOR"} {
		if v, ok := vars[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	if _, fromEnv := current["COMPOSE_FILE"]; len(envFiles) == 0 && !fromEnv && vars["COMPOSE_FILE"] != "" {
		fromDotenv = files[0]
	}
	// Later entries win: the process environment over the files.
	return append(out, env...), fromDotenv, nil
}

// configFiles picks the compose files like docker compose: -f, else
// COMPOSE_FILE, else the default names in wd or the nearest parent.
func configFiles(files []string, wd string, env []string) ([]string, []Warning, error) {
	if len(files) == 0 {
		envMap := map[string]string{}
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok {
				envMap[k] = v
			}
		}
		if v := envMap["COMPOSE_FILE"]; v != "" {
			sep := envMap["COMPOSE_PATH_SEPARATOR"]
			if sep == "" {
				sep = string(os.PathListSeparator)
			}
			files = strings.Split(v, sep)
		}
	}
	if len(files) > 0 {
		out := make([]string, len(files))
		for i, f := range files {
			if f == "-" {
				out[i] = f
				continue
			}
			out[i] = absFrom(wd, f)
			fi, err := os.Stat(out[i])
			if err != nil {
				return nil, nil, fmt.Errorf("compose file %s: %w", f, err)
			}
			if fi.IsDir() {
				return nil, nil, fmt.Errorf("compose file %s is a directory; give the file inside it", f)
			}
		}
		return out, nil, nil
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		found := existing(dir, cli.DefaultFileNames)
		if len(found) > 0 {
			var warnings []Warning
			if len(found) > 1 {
				warnings = append(warnings, Warning{Key: "compose file", Reason: fmt.Sprintf(
					"found %s; using %s (choose one with -f)", strings.Join(found, ", "), found[0])})
			}
			files := found[:1]
			if overrides := existing(dir, cli.DefaultOverrideFileNames); len(overrides) > 0 {
				files = append(files, overrides[0])
			}
			return files, warnings, nil
		}
		if filepath.Dir(dir) == dir {
			return nil, nil, fmt.Errorf("no compose file in %s or its parent directories (looked for %s); give one with -f",
				wd, strings.Join(cli.DefaultFileNames, ", "))
		}
	}
}

func existing(dir string, names []string) []string {
	var found []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			found = append(found, p)
		}
	}
	return found
}

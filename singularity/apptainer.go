package singularity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultParallel is the bound of parallel instance starts and stops, 8
// per core: an instance start mostly waits (10 at once take twice one's
// time on 2 cores), so a smaller bound splits a small stack into waves of
// starts (10 with 8 at once: 1.4 s instead of 1.2), while 30 starts on 2
// cores take as long with 8, 16 or 30 at once (3.1-3.8 s, measured
// 2026-12-07); the bound keeps hundreds from starting together.
func DefaultParallel() int { return 8 * runtime.NumCPU() }

// Apptainer runs the apptainer (or singularity) command line. Both names
// take the same flags, so there is one code path. The zero value is not
// usable: get one from Detect.
type Apptainer struct {
	Binary  string // absolute path of the apptainer or singularity binary
	Version string // its `--version` output, e.g. "apptainer version 1.4.5"
	// Env is the client's base environment; nil means os.Environ(). It is
	// filtered by clientEnv before every command.
	Env []string

	// inits caches the init pid of instances seen by ListInstances, so
	// that EndRun after each exit costs no apptainer command.
	initsMu sync.Mutex
	inits   map[string]int
	// logDir is where Apptainer keeps instances' log files (instlogs.go).
	logDir string
	// workDirs caches, per image version and path, whether the path is
	// missing in the image (see missingInImage).
	workDirs sync.Map
}

var _ Runtime = (*Apptainer)(nil)

// ErrNoInstance is wrapped by StopInstance when the instance does not exist.
var ErrNoInstance = errors.New("no such instance")

// isolationFlags give an instance Docker-like isolation. They are what
// `--compat` means in Apptainer 1.4 (see `apptainer help instance start`),
// spelled out so the meaning does not change with the Apptainer version:
//   - --containall: own /tmp, /var/tmp and $HOME (tmpfs), PID and IPC
//     namespaces, clean environment for the startscript;
//   - --no-init, --no-umask: no shim process, umask 0022 as in Docker;
//   - --no-eval: environment values are taken literally, not shell-evaluated;
//   - --writable-tmpfs: the root filesystem is writable, changes live in a
//     tmpfs (RAM) and are gone when the instance stops.
var isolationFlags = []string{"--containall", "--no-init", "--no-umask", "--no-eval"}

// Detect finds a working runtime: preferred if given (a name on PATH or a
// path), else the first of apptainer and singularity that answers
// `--version`.
func Detect(preferred string) (*Apptainer, error) {
	candidates := []string{"apptainer", "singularity"}
	if preferred != "" {
		candidates = []string{preferred}
	}
	var problems []string
	for _, name := range candidates {
		a, err := probe(name)
		if err == nil {
			return a, nil
		}
		problems = append(problems, err.Error())
	}
	if preferred != "" {
		return nil, fmt.Errorf("runtime %s does not work: %s", preferred, strings.Join(problems, "; "))
	}
	return nil, fmt.Errorf("no container runtime found (%s); install Apptainer with scripts/install-apptainer.sh (as root), or name the binary with --runtime", strings.Join(problems, "; "))
}

func probe(name string) (*Apptainer, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s: not found", name)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	a := &Apptainer{Binary: path}
	a.Version, err = asked("version", path, func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := a.command(ctx, nil, "--version").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s --version: %v: %s", path, err, summarize(out))
		}
		return strings.TrimSpace(string(out)), nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// clientEnvKeep are Apptainer variables that configure the tool itself
// (where it caches and builds) rather than the containers; the client keeps
// them. Every other APPTAINER_*/SINGULARITY_* variable (APPTAINER_BIND,
// APPTAINER_CONTAIN, ...) and every APPTAINERENV_*/SINGULARITYENV_* one is
// dropped so that the host's settings cannot change what a service sees.
var clientEnvKeep = map[string]bool{
	"CACHEDIR": true, "TMPDIR": true, "CONFIGDIR": true, "LOCALCACHEDIR": true, "DISABLE_CACHE": true,
}

// clientEnv filters base for the apptainer client. TERM is dropped too:
// with --cleanenv Apptainer still passes it in, and Docker gives services
// no TERM without a tty.
func clientEnv(base []string) []string {
	out := make([]string, 0, len(base))
	for _, kv := range base {
		key, _, _ := strings.Cut(kv, "=")
		drop := key == "TERM"
		for _, prefix := range []string{"APPTAINER_", "SINGULARITY_"} {
			if rest, ok := strings.CutPrefix(key, prefix); ok && !clientEnvKeep[rest] {
				drop = true
			}
		}
		if strings.HasPrefix(key, "APPTAINERENV_") || strings.HasPrefix(key, "SINGULARITYENV_") {
			drop = true
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// serviceEnv adds the process environment as APPTAINERENV_KEY=VALUE. That
// is the one channel that passes any value unchanged (with --no-eval):
// measured, `--env` splits values at commas and drops quotes, and
// `--env-file` turns ' into \'. It needs no temporary file that could leak
// secrets, and the client's environment is readable only by its owner.
func serviceEnv(base, env []string) ([]string, error) {
	out := clientEnv(base)
	for _, kv := range env {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("environment entry %q: want KEY=VALUE", kv)
		}
		if err := ValidateEnv(key, value); err != nil {
			return nil, fmt.Errorf("environment %w", err)
		}
		out = append(out, "APPTAINERENV_"+kv)
	}
	return out, nil
}

func (a *Apptainer) baseEnv() []string {
	if a.Env != nil {
		return a.Env
	}
	return os.Environ()
}

// command prepares an apptainer invocation. env nil means the filtered base
// environment. The client runs in its own process group so that a Ctrl-C
// at the terminal reaches only sstack, which decides how services stop, and
// in "/" so that no host working directory leaks into containers.
func (a *Apptainer) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd, _ := a.commandIn(ctx, Network{}, env, args...)
	return cmd
}

// commandIn is command run in net (see Network.enter).
func (a *Apptainer) commandIn(ctx context.Context, net Network, env []string, args ...string) (*exec.Cmd, error) {
	argv, err := net.enter(append([]string{a.Binary}, args...))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if env == nil {
		env = clientEnv(a.baseEnv())
	}
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Orphans inside an instance may inherit our pipes: do not wait for
	// them after the client has exited.
	cmd.WaitDelay = time.Second
	return cmd, nil
}

// output runs a command and returns stdout and stderr separately.
func (a *Apptainer) output(ctx context.Context, args ...string) (stdout, stderr []byte, err error) {
	return a.outputIn(ctx, Network{}, args...)
}

// outputIn is output with the client run in net.
func (a *Apptainer) outputIn(ctx context.Context, net Network, args ...string) (stdout, stderr []byte, err error) {
	var o, e bytes.Buffer
	cmd, err := a.commandIn(ctx, net, nil, args...)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	// `instance start` leaves a daemon that may hold our pipes: once the
	// client has exited with 0, output still held is no failure.
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		err = nil
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return o.Bytes(), e.Bytes(), err
}

// summarize picks the lines of Apptainer output that say what went wrong:
// FATAL and ERROR lines, else the last few lines.
func summarize(out []byte) string {
	var important, all []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if line == "" {
			continue
		}
		all = append(all, line)
		if strings.HasPrefix(line, "FATAL:") || strings.HasPrefix(line, "ERROR:") || strings.HasPrefix(line, "Error for command") {
			important = append(important, line)
		}
	}
	if len(important) > 0 {
		return strings.Join(important, "; ")
	}
	if len(all) > 3 {
		all = all[len(all)-3:]
	}
	if len(all) == 0 {
		return "no output"
	}
	return strings.Join(all, "; ")
}

// processArgs builds `exec|run instance://NAME`. --cleanenv keeps the host
// environment out (the env given at instance start does not reach exec'd
// processes); --no-eval makes Apptainer take env values literally. --pwd
// defaults to "/", Docker's default working directory: without it
// Apptainer tries the host's current directory, which a contained instance
// lacks, and falls back to $HOME with a warning.
func processArgs(spec ProcessSpec) ([]string, error) {
	if err := ValidateName(spec.Instance); err != nil {
		return nil, err
	}
	verb := "exec"
	if spec.Run {
		verb = "run"
	} else if len(spec.Args) == 0 {
		return nil, fmt.Errorf("instance %q: nothing to exec: no command given", spec.Instance)
	}
	pwd := spec.Pwd
	if pwd == "" {
		pwd = "/"
	}
	if err := ValidateWorkingDir(pwd); err != nil {
		return nil, fmt.Errorf("instance %q: working directory %w", spec.Instance, err)
	}
	if err := ValidateArgs(spec.Args); err != nil {
		return nil, fmt.Errorf("instance %q: %w", spec.Instance, err)
	}
	args := []string{"-s", verb, "--cleanenv", "--no-eval", "--pwd", pwd, "instance://" + spec.Instance}
	return append(args, spec.Args...), nil
}

// Exec runs a short command (a healthcheck) in the instance with only env
// (plus the image's own environment) and returns its exit code and the
// first 4 KiB of its combined output, as Docker keeps for healthchecks.
// When ctx ends first the client is killed (the kernel then kills the
// command) and the code is -1 with ctx's error.
func (a *Apptainer) Exec(ctx context.Context, spec ProcessSpec) (int, []byte, error) {
	instance := spec.Instance
	cargs, env, err := a.processCommand(ProcessSpec{Instance: instance, Args: spec.Args, Env: spec.Env})
	if err != nil {
		return -1, nil, err
	}
	out := &capWriter{max: 4096}
	cmd, err := a.commandIn(ctx, spec.Net, env, cargs...)
	if err != nil {
		return -1, nil, fmt.Errorf("exec in instance %q: %w", instance, err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	if ctx.Err() != nil {
		return -1, out.buf, fmt.Errorf("exec in instance %q: %w", instance, ctx.Err())
	}
	if cmd.ProcessState == nil {
		return -1, out.buf, fmt.Errorf("exec in instance %q: %w", instance, err)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
		return exitCode(cmd.ProcessState), out.buf, fmt.Errorf("exec in instance %q: %w", instance, err)
	}
	return exitCode(cmd.ProcessState), out.buf, nil
}

// exitCode is the shell's view of an exit: the code, or 128+N for death by
// signal N.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// capWriter keeps the first max bytes and discards the rest, never blocking
// the writer.
type capWriter struct {
	max int
	buf []byte
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// ImageInfo is the metadata `apptainer inspect` reports.
type ImageInfo struct {
	Runscript   string            `json:"runscript"`
	Startscript string            `json:"startscript"`
	Environment map[string]string `json:"environment"` // file in /.singularity.d/env -> content
	Labels      map[string]string `json:"labels"`
}

// Inspect runs `inspect --json --all IMAGE`, or gives its answer kept
// from before for the same file (see answers.go).
func (a *Apptainer) Inspect(ctx context.Context, image string) (ImageInfo, error) {
	abs, err := filepath.Abs(image)
	if err != nil {
		return ImageInfo{}, err
	}
	return asked("inspect", abs, func() (ImageInfo, error) { return a.inspect(ctx, image, abs) })
}

func (a *Apptainer) inspect(ctx context.Context, image, abs string) (ImageInfo, error) {
	stdout, stderr, err := a.output(ctx, "-s", "inspect", "--json", "--all", abs)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("inspecting image %s: %s (%v)", image, summarize(append(stderr, stdout...)), err)
	}
	var doc struct {
		Data struct {
			Attributes ImageInfo `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(stdout, &doc); err != nil {
		return ImageInfo{}, fmt.Errorf("inspecting image %s: unexpected output: %w", image, err)
	}
	return doc.Data.Attributes, nil
}

// HasRunscript tells whether `apptainer run` would run something: images
// built without one get a placeholder that only prints "There is no
// runscript defined for this container".
func (a *Apptainer) HasRunscript(ctx context.Context, image string) (bool, error) {
	info, err := a.Inspect(ctx, image)
	if err != nil {
		return false, err
	}
	return realRunscript(info.Runscript), nil
}

func realRunscript(script string) bool {
	if strings.Contains(script, "There is no runscript defined for this container") {
		return false
	}
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return true
		}
	}
	return false
}

// Build runs `build --force DEST SOURCE`, SOURCE being a root filesystem
// directory or a definition file. As root on machines without
// CAP_SYS_RESOURCE, definition files with %post fail; %runscript,
// %startscript and %environment sections work.
func (a *Apptainer) Build(ctx context.Context, dest, source string) error {
	absDest, err := filepath.Abs(dest)
	if err != nil {
		return err
	}
	absSource, err := filepath.Abs(source)
	if err != nil {
		return err
	}
	stdout, stderr, err := a.output(ctx, "-s", "build", "--force", absDest, absSource)
	if err != nil {
		return fmt.Errorf("building %s from %s: %s (%v)", dest, source, summarize(append(stderr, stdout...)), err)
	}
	return nil
}

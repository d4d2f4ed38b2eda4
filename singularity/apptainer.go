package singularity

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := a.command(ctx, nil, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %v: %s", path, err, summarize(out))
	}
	a.Version = strings.TrimSpace(string(out))
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

// StartInstance starts an isolated instance (see isolationFlags). It does
// not list the instance afterwards: that costs a process per start, and a
// failing startscript leaves the instance running anyway (measured), so the
// check would catch nothing the first exec does not.
func (a *Apptainer) StartInstance(ctx context.Context, spec InstanceSpec) error {
	if dir := spec.WorkDir; dir != "" && !providedByMount(spec, dir) && a.missingInImage(ctx, spec.Image, dir) {
		// Docker creates a missing working directory; Apptainer's --pwd
		// fails on one ("failed to set working directory"). An empty
		// tmpfs there, only when the image lacks the path, is the one way
		// that needs no tool in the image and works with a read-only root.
		spec.Tmpfs = append(slices.Clip(spec.Tmpfs), dir)
	}
	args, err := startArgs(spec)
	if err != nil {
		return err
	}
	stdout, stderr, err := a.outputIn(ctx, spec.Net, args...)
	if err != nil {
		return fmt.Errorf("starting instance %q from %s: %s (%v)", spec.Name, spec.Image, summarize(append(stderr, stdout...)), err)
	}
	return nil
}

// startArgs builds `instance start`. Binds use --mount, whose CSV syntax
// can quote any path; --bind cannot carry ',' or ':' in a path.
//
// Tmpfs paths use --scratch: Apptainer mounts a fresh tmpfs there, creating
// the directory if the image lacks it (measured). `--mount type=tmpfs` is
// refused ("only 'bind' is supported"). The tmpfs is mode 0755 and owned by
// the instance's user (Docker's is 1777). /tmp and /var/tmp get none:
// --containall already gives them a private, empty tmpfs (mode 1777, also
// with a read-only root), and a --scratch there makes every bind below it
// fail with "destination ... doesn't exist in container" (measured;
// binds below a --scratch elsewhere work).
//
// Of several mounts on one destination Apptainer keeps the first
// (measured), so the hosts file comes after the user's binds: a user bind
// onto /etc/hosts wins, as in Docker.
func startArgs(spec InstanceSpec) ([]string, error) {
	if err := ValidateName(spec.Name); err != nil {
		return nil, err
	}
	if spec.Image == "" {
		return nil, fmt.Errorf("instance %q: no image given", spec.Name)
	}
	image, err := filepath.Abs(spec.Image)
	if err != nil {
		return nil, fmt.Errorf("instance %q: image %s: %w", spec.Name, spec.Image, err)
	}
	args := append([]string{"-s", "instance", "start"}, isolationFlags...)
	if !spec.ReadOnlyRoot {
		args = append(args, "--writable-tmpfs")
	}
	for _, b := range spec.Binds {
		m, err := mountSpec(b)
		if err != nil {
			return nil, fmt.Errorf("instance %q: %w", spec.Name, err)
		}
		args = append(args, "--mount", m)
	}
	for _, f := range []struct{ source, target string }{{spec.HostsFile, "/etc/hosts"}, {spec.ResolvConf, "/etc/resolv.conf"}} {
		if f.source == "" {
			continue
		}
		m, err := mountSpec(Bind{Source: f.source, Target: f.target, ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("instance %q: %s: %w", spec.Name, f.target, err)
		}
		args = append(args, "--mount", m)
	}
	for _, t := range spec.Tmpfs {
		if err := ValidateTmpfs(t); err != nil {
			return nil, fmt.Errorf("instance %q: tmpfs %w", spec.Name, err)
		}
		if t = filepath.Clean(t); containTmpfs[t] {
			continue
		}
		args = append(args, "--scratch", t)
	}
	if err := spec.Limits.validate(); err != nil {
		return nil, fmt.Errorf("instance %q: %w", spec.Name, err)
	}
	gpu, err := gpuArgs(spec.GPU)
	if err != nil {
		return nil, fmt.Errorf("instance %q: %w", spec.Name, err)
	}
	args = append(append(append(args, spec.Limits.args()...), gpu...), spec.Net.netArgs()...)
	return append(args, image, spec.Name), nil
}

// containTmpfs are the paths --containall already mounts a private tmpfs on.
var containTmpfs = map[string]bool{"/tmp": true, "/var/tmp": true}

// providedByMount: dir is a mount target of spec or lies below one, so the
// mount, not the image, decides whether it exists.
func providedByMount(spec InstanceSpec, dir string) bool {
	dir = filepath.Clean(dir)
	below := func(target string) bool {
		target = filepath.Clean(target)
		return dir == target || strings.HasPrefix(dir, strings.TrimSuffix(target, "/")+"/")
	}
	for _, b := range spec.Binds {
		if below(b.Target) {
			return true
		}
	}
	for _, t := range spec.Tmpfs {
		if below(t) {
			return true
		}
	}
	return false
}

// workDirProbe is a command no image has: the probe only needs to know
// whether Apptainer could enter the working directory before looking for it.
const workDirProbe = "/.sstack-no-such-command"

// missingInImage reports whether dir does not exist in image, as the
// instance would see it (--containall: its own /tmp and home). It asks
// Apptainer to enter dir and run a command that does not exist: a missing
// dir fails first, with "failed to set working directory: chdir DIR: no
// such file or directory" (measured), and no tool of the image is needed.
// The answer is cached per image version; a probe that fails otherwise
// says "not missing", and the start then reports the real problem.
func (a *Apptainer) missingInImage(ctx context.Context, image, dir string) bool {
	dir = filepath.Clean(dir)
	if dir == "/" || !filepath.IsAbs(dir) {
		return false
	}
	abs, err := filepath.Abs(image)
	if err != nil {
		return false
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return false
	}
	key := fmt.Sprintf("%s\x00%d\x00%d\x00%s", abs, fi.Size(), fi.ModTime().UnixNano(), dir)
	if v, ok := a.workDirs.Load(key); ok {
		return v.(bool)
	}
	stdout, stderr, _ := a.output(ctx, "-s", "exec", "--containall", "--no-init", "--no-eval", "--pwd", dir, abs, workDirProbe)
	out := string(append(stderr, stdout...))
	missing := strings.Contains(out, "failed to set working directory") && strings.Contains(out, "no such file or directory")
	if ctx.Err() == nil {
		a.workDirs.Store(key, missing)
	}
	return missing
}

// mountSpec renders a bind for --mount, CSV-quoting fields that need it.
func mountSpec(b Bind) (string, error) {
	if err := ValidateBind(b); err != nil {
		return "", fmt.Errorf("bind %w", err)
	}
	fields := []string{"type=bind", "source=" + filepath.Clean(b.Source), "destination=" + filepath.Clean(b.Target)}
	if b.ReadOnly {
		fields = append(fields, "readonly")
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.Write(fields); err != nil {
		return "", err
	}
	w.Flush()
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// StopInstance runs `instance stop -s SIG -t SECONDS NAME`: Apptainer sends
// sig to the instance and SIGKILLs what is left after timeout, rounded up
// to whole seconds; a timeout <= 0 kills at once. sig "" means SIGTERM
// (Docker's default; Apptainer's own would be SIGINT). It returns once the
// instance is no longer listed, so its name can be reused at once. A
// missing instance gives an error wrapping ErrNoInstance.
func (a *Apptainer) StopInstance(ctx context.Context, name string, sig string, timeout time.Duration) error {
	args, err := stopArgs(name, sig, timeout)
	if err != nil {
		return err
	}
	if monitor := a.monitorChild(ctx, name); monitor > 0 {
		done := make(chan struct{})
		defer close(done)
		go reap(monitor, done)
	}
	stdout, stderr, err := a.output(ctx, args...)
	if err != nil {
		out := append(stderr, stdout...)
		if bytes.Contains(out, []byte("no instance found")) {
			return fmt.Errorf("stopping instance %q: %w", name, ErrNoInstance)
		}
		return fmt.Errorf("stopping instance %q: %s (%v)", name, summarize(out), err)
	}
	return a.waitGone(ctx, name)
}

// goneWithin bounds waitGone. Under load (a hundred instances stopping
// on two cores) an instance can stay listed for many seconds while it is
// really going away: only a much longer wait is a failure.
const goneWithin = 2 * time.Minute

// waitGone waits until name has left `instance list`: `instance stop`
// returns before that (measured: 25 ms later with -t 0), and starting the
// same name meanwhile fails with "already exists".
func (a *Apptainer) waitGone(ctx context.Context, name string) error {
	deadline := time.Now().Add(goneWithin)
	for {
		infos, err := a.ListInstances(ctx, name)
		if err != nil {
			return fmt.Errorf("stopping instance %q: %w", name, err)
		}
		if len(infos) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stopping instance %q: still listed %s after `instance stop` returned", name, goneWithin)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopping instance %q: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func stopArgs(name, sig string, timeout time.Duration) ([]string, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if sig == "" {
		sig = "SIGTERM"
	}
	s, err := ParseSignal(sig)
	if err != nil {
		return nil, fmt.Errorf("stopping instance %q: %w", name, err)
	}
	secs := 0
	if timeout > 0 {
		secs = int(math.Ceil(timeout.Seconds()))
	}
	// Never --all: it stops every instance of the user, other programs' too.
	return []string{"-s", "instance", "stop", "-s", strconv.Itoa(int(s)), "-t", strconv.Itoa(secs), name}, nil
}

// ListInstances runs `instance list --json GLOB` (every instance of the user
// when glob is ""). Match on Name, never on Img.
func (a *Apptainer) ListInstances(ctx context.Context, glob string) ([]InstanceInfo, error) {
	if strings.HasPrefix(glob, "-") {
		return nil, fmt.Errorf("listing instances: pattern %q starts with '-'", glob)
	}
	args := []string{"-s", "instance", "list", "--json"}
	if glob != "" {
		args = append(args, glob)
	}
	stdout, stderr, err := a.output(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("listing instances %q: %s (%v)", glob, summarize(append(stderr, stdout...)), err)
	}
	infos, err := parseInstanceList(stdout)
	if err == nil {
		a.initsMu.Lock()
		if a.inits == nil {
			a.inits = map[string]int{}
		}
		for _, i := range infos {
			a.inits[i.Name] = i.Pid
		}
		a.initsMu.Unlock()
	}
	return infos, err
}

func parseInstanceList(data []byte) ([]InstanceInfo, error) {
	var list struct {
		Instances []InstanceInfo `json:"instances"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("listing instances: unexpected output %q: %w", summarize(data), err)
	}
	return list.Instances, nil
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

// Inspect runs `inspect --json --all IMAGE`.
func (a *Apptainer) Inspect(ctx context.Context, image string) (ImageInfo, error) {
	abs, err := filepath.Abs(image)
	if err != nil {
		return ImageInfo{}, err
	}
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

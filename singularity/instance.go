package singularity

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Instances: their start (the command line, the mounts, a working
// directory the image lacks), stop and listing.

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
	args, err := StartArgs(spec)
	if err != nil {
		return err
	}
	stdout, stderr, err := a.outputIn(ctx, spec.Net, args...)
	if err != nil {
		return fmt.Errorf("starting instance %q from %s: %s (%v)", spec.Name, spec.Image, summarize(append(stderr, stdout...)), err)
	}
	return nil
}

// StartArgs are the arguments of the `apptainer instance start` that
// starts spec's instance (the benchmarks run them as the raw floor).
// Binds use --mount, whose CSV syntax
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
func StartArgs(spec InstanceSpec) ([]string, error) {
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
	if spec.HostIPC {
		// --containall is --contain --ipc --cleanenv (an instance always
		// has its own PID namespace): all but --ipc.
		args = slices.Concat(args[:3], []string{"--contain", "--cleanenv"}, args[4:])
	}
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
	if spec.Hostname != "" {
		if err := ValidateHostname(spec.Hostname); err != nil {
			return nil, fmt.Errorf("instance %q: %w", spec.Name, err)
		}
		args = append(args, "--hostname", spec.Hostname)
	}
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
			// A start that failed leaves log files too.
			a.removeInstanceLogs(name)
			return fmt.Errorf("stopping instance %q: %w", name, ErrNoInstance)
		}
		return fmt.Errorf("stopping instance %q: %s (%v)", name, summarize(out), err)
	}
	if err := a.waitGone(ctx, name); err != nil {
		return err
	}
	a.removeInstanceLogs(name)
	return nil
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
	// Each look is an apptainer client (tens of ms of CPU): the pause
	// doubles up to a second, so an instance that lingers for minutes
	// under load costs a few hundred looks, not thousands.
	pause := 50 * time.Millisecond
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
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
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
		a.noteLogDir(infos)
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

package singularity

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"sstack/internal/usage"
)

// Limits are the cgroup limits of an instance, given to `instance start`
// as its resource flags. Zero values set nothing.
type Limits struct {
	CPUs              float64 // --cpus
	CPUShares         int64   // --cpu-shares
	CPUSetCPUs        string  // --cpuset-cpus, e.g. "0-3,6"
	Memory            int64   // --memory, bytes
	MemoryReservation int64   // --memory-reservation (soft limit), bytes
	MemorySwap        int64   // --memory-swap: memory plus swap in bytes, -1 unlimited
	PidsLimit         int64   // --pids-limit
	OOMKillDisable    bool    // --oom-kill-disable
	BlkioWeight       uint16  // --blkio-weight, 10 to 1000
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

// args are the flags of l. Sizes are passed in bytes, which Apptainer
// takes as they are; the kernel rounds them down to whole pages
// (measured: --memory 50000000 holds 49999872).
func (l Limits) args() []string {
	var a []string
	if l.CPUs > 0 {
		a = append(a, "--cpus", strconv.FormatFloat(l.CPUs, 'f', -1, 64))
	}
	if l.CPUShares > 0 {
		a = append(a, "--cpu-shares", strconv.FormatInt(l.CPUShares, 10))
	}
	if l.CPUSetCPUs != "" {
		a = append(a, "--cpuset-cpus", l.CPUSetCPUs)
	}
	if l.Memory > 0 {
		a = append(a, "--memory", strconv.FormatInt(l.Memory, 10))
	}
	if l.MemoryReservation > 0 {
		a = append(a, "--memory-reservation", strconv.FormatInt(l.MemoryReservation, 10))
	}
	if l.MemorySwap != 0 {
		a = append(a, "--memory-swap", strconv.FormatInt(l.MemorySwap, 10))
	}
	if l.PidsLimit > 0 {
		a = append(a, "--pids-limit", strconv.FormatInt(l.PidsLimit, 10))
	}
	if l.OOMKillDisable {
		a = append(a, "--oom-kill-disable")
	}
	if l.BlkioWeight > 0 {
		a = append(a, "--blkio-weight", strconv.FormatUint(uint64(l.BlkioWeight), 10))
	}
	return a
}

// validate refuses values Apptainer would take as flags or misread.
func (l Limits) validate() error {
	switch {
	case l.CPUs < 0:
		return fmt.Errorf("cpus %v: want a positive number", l.CPUs)
	case strings.HasPrefix(l.CPUSetCPUs, "-") || strings.ContainsAny(l.CPUSetCPUs, " \t\n"):
		return fmt.Errorf("cpuset %q: want a list of CPUs such as 0-3,6", l.CPUSetCPUs)
	case l.MemorySwap < -1:
		return fmt.Errorf("memory swap %d: want bytes or -1 (unlimited)", l.MemorySwap)
	}
	return nil
}

// LimitsError says why this host cannot apply cgroup limits to the
// instances sstack starts, and what the user can do about it.
type LimitsError struct {
	Reason string // what is missing
	Fix    string // what to change so that limits work
}

func (e *LimitsError) Error() string { return e.Reason + "; " + e.Fix }

// cgroupHost is what decides whether Apptainer can apply limits, read
// once: it does not change while sstack runs.
type cgroupHost struct {
	euid          int
	unified       bool   // cgroups v2 only (/sys/fs/cgroup/cgroup.controllers)
	systemdInit   bool   // systemd is PID 1 (/run/systemd/system, as sd_booted)
	confFile      string // apptainer.conf
	systemdCgroup bool   // `systemd cgroups = yes` in it (Apptainer's default)
	dbus, xdg     string // DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR
	writable      bool   // the cgroup file system can be written to
	// noBlkioWeight says why --blkio-weight cannot be applied here ("":
	// it can, as far as can be told).
	noBlkioWeight string
}

var (
	hostOnce sync.Once
	hostInfo cgroupHost
)

// CheckBlkioWeight tells whether this host's cgroups offer block I/O
// weights (--blkio-weight). On cgroups v1 a weight is written to
// blkio.weight (CFQ, kernels before 5.0) or blkio.bfq.weight (BFQ); with
// neither, Apptainer fails the instance at its start (measured: "openat2
// .../blkio.bfq.weight: no such file or directory"). Docker discards the
// weight with a warning on such a host.
func (a *Apptainer) CheckBlkioWeight(ctx context.Context) error {
	hostOnce.Do(func() { hostInfo = a.readCgroupHost(ctx) })
	if hostInfo.noBlkioWeight != "" {
		return errors.New(hostInfo.noBlkioWeight)
	}
	return nil
}

// CheckLimits tells whether Apptainer can apply cgroup limits here, before
// any instance starts: `instance start` with limits would otherwise fail
// (or, for an unprivileged user, fail for every service). It follows
// Apptainer's own rules (internal/pkg/cgroups CanUseCgroups): root can
// always use cgroups, with the systemd manager only when systemd is init;
// an unprivileged user needs cgroups v2, the systemd manager and a systemd
// user session (DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR).
func (a *Apptainer) CheckLimits(ctx context.Context) error {
	hostOnce.Do(func() { hostInfo = a.readCgroupHost(ctx) })
	return hostInfo.check()
}

func (h cgroupHost) check() error {
	conf := "apptainer.conf"
	if h.confFile != "" {
		conf = h.confFile
	}
	if h.euid == 0 {
		switch {
		case h.systemdCgroup && !h.systemdInit:
			return &LimitsError{
				Reason: "Apptainer is set to manage cgroups through systemd (`systemd cgroups = yes` in " + conf + "), but systemd is not running as init on this host",
				Fix:    "set `systemd cgroups = no` there (scripts/install-apptainer.sh does)",
			}
		case !h.writable:
			return &LimitsError{
				Reason: "the cgroup file system /sys/fs/cgroup is missing or read-only",
				Fix:    "run sstack where cgroups are mounted read-write",
			}
		}
		return nil
	}
	batch := "run as root, or leave the limits to the batch scheduler (e.g. Slurm's --mem, --cpus-per-task)"
	switch {
	case !h.unified:
		return &LimitsError{
			Reason: "an unprivileged user can apply cgroup limits only on cgroups v2 with systemd, and this host has cgroups v1",
			Fix:    batch,
		}
	case !h.systemdCgroup:
		return &LimitsError{
			Reason: "an unprivileged user needs Apptainer's systemd cgroup manager, and " + conf + " has `systemd cgroups = no`",
			Fix:    "ask the administrators to set `systemd cgroups = yes`, or " + batch,
		}
	case h.dbus == "" || h.xdg == "":
		return &LimitsError{
			Reason: "an unprivileged user needs a systemd user session to apply cgroup limits, and DBUS_SESSION_BUS_ADDRESS or XDG_RUNTIME_DIR is not set",
			Fix:    "run sstack from a login session with systemd --user (loginctl enable-linger), or " + batch,
		}
	}
	return nil
}

func (a *Apptainer) readCgroupHost(ctx context.Context) cgroupHost {
	h := cgroupHost{euid: os.Geteuid(), systemdCgroup: true}
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	h.unified = err == nil
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		h.systemdInit = true
	}
	h.writable = unix.Access("/sys/fs/cgroup", unix.W_OK) == nil
	if !h.unified {
		// cgroups v1: /sys/fs/cgroup is a tmpfs of controller mounts.
		h.writable = unix.Access("/sys/fs/cgroup/memory", unix.W_OK) == nil || unix.Access("/sys/fs/cgroup/cpu", unix.W_OK) == nil
	}
	for _, kv := range a.baseEnv() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "DBUS_SESSION_BUS_ADDRESS":
			h.dbus = v
		case "XDG_RUNTIME_DIR":
			if unix.Access(v, unix.W_OK) == nil {
				h.xdg = v
			}
		}
	}
	if !h.unified {
		if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			if point, ok := usage.V1Mount(string(mounts), "blkio"); ok {
				h.noBlkioWeight = blkioWeightMissing(point)
			}
		}
	}
	h.confFile = a.confFile(ctx)
	if v, ok := confValue(h.confFile, "systemd cgroups"); ok {
		h.systemdCgroup = strings.EqualFold(v, "yes")
	}
	return h
}

// confFile is the runtime's configuration file as `buildcfg` reports it
// (APPTAINER_CONF_FILE, SINGULARITY_CONF_FILE), else the usual place.
func (a *Apptainer) confFile(ctx context.Context) string {
	out, _, err := a.output(ctx, "buildcfg")
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && strings.HasSuffix(k, "_CONF_FILE") {
				return v
			}
		}
	}
	if filepath.Base(a.Binary) == "singularity" {
		if _, err := os.Stat("/etc/singularity/singularity.conf"); err == nil {
			return "/etc/singularity/singularity.conf"
		}
	}
	return "/etc/apptainer/apptainer.conf"
}

// confValue reads `key = value` from an apptainer.conf; the last one wins.
func confValue(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	value, found := "", false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.EqualFold(strings.Join(strings.Fields(k), " "), key) {
			value, found = strings.TrimSpace(v), true
		}
	}
	return value, found
}

// blkioWeightFiles are the files of a cgroups v1 blkio cgroup that take
// a weight; the kernel shows them in every cgroup but the root when a
// scheduler policy with weights (CFQ, BFQ) is registered.
var blkioWeightFiles = []string{"blkio.weight", "blkio.bfq.weight"}

// blkioWeightMissing says why the blkio hierarchy mounted at dir takes no
// weights, or "" when it does (or it cannot be told). It looks at the
// cgroups below the root (Apptainer's own /apptainer/<pid> among them),
// and when there are none, at a cgroup it creates and removes again.
func blkioWeightMissing(dir string) string {
	hasWeight := func(d string) bool {
		for _, f := range blkioWeightFiles {
			if _, err := os.Stat(filepath.Join(d, f)); err == nil {
				return true
			}
		}
		return false
	}
	var children []string
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				children = append(children, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(children) == 0 {
		probe, err := os.MkdirTemp(dir, "sstack-probe-")
		if err != nil {
			return ""
		}
		defer os.Remove(probe)
		children = []string{probe}
	}
	for _, c := range children {
		if hasWeight(c) {
			return ""
		}
	}
	return fmt.Sprintf("this host's block I/O cgroup (%s) offers no weights (neither %s: the kernel has no BFQ or CFQ I/O scheduler)", dir, strings.Join(blkioWeightFiles, " nor "))
}

// parseOOMKill reads the "oom_kill N" line of memory.oom_control (v1) or
// memory.events (v2).

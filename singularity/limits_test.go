package singularity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sstack/internal/usage"
)

func TestStartArgsLimitsAndGPUs(t *testing.T) {
	isolation := strings.Join(isolationFlags, " | ") + " | --writable-tmpfs"
	cases := []struct {
		name string
		spec InstanceSpec
		want string // the flags between the isolation flags and the image
		err  string
	}{
		{name: "every limit", spec: InstanceSpec{Limits: Limits{
			CPUs: 1.5, CPUShares: 512, CPUSetCPUs: "0-1,3", Memory: 268435456, MemoryReservation: 134217728,
			MemorySwap: 536870912, PidsLimit: 100, OOMKillDisable: true, BlkioWeight: 300,
		}}, want: "--cpus | 1.5 | --cpu-shares | 512 | --cpuset-cpus | 0-1,3 | --memory | 268435456 | --memory-reservation | 134217728 | --memory-swap | 536870912 | --pids-limit | 100 | --oom-kill-disable | --blkio-weight | 300"},
		{name: "unlimited swap", spec: InstanceSpec{Limits: Limits{Memory: 1 << 20, MemorySwap: -1}}, want: "--memory | 1048576 | --memory-swap | -1"},
		{name: "whole cpus", spec: InstanceSpec{Limits: Limits{CPUs: 2}}, want: "--cpus | 2"},
		{name: "nvidia", spec: InstanceSpec{GPU: GPUNvidia}, want: "--nv"},
		{name: "amd", spec: InstanceSpec{GPU: GPUAMD}, want: "--rocm"},
		{name: "gpu and limits", spec: InstanceSpec{GPU: GPUNvidia, Limits: Limits{Memory: 4096}}, want: "--memory | 4096 | --nv"},
		{name: "unknown vendor", spec: InstanceSpec{GPU: "intel"}, err: `GPU vendor "intel"`},
		{name: "negative cpus", spec: InstanceSpec{Limits: Limits{CPUs: -1}}, err: "positive"},
		{name: "cpuset as a flag", spec: InstanceSpec{Limits: Limits{CPUSetCPUs: "--all"}}, err: "list of CPUs"},
		{name: "bad swap", spec: InstanceSpec{Limits: Limits{MemorySwap: -2}}, err: "-1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.spec.Name, c.spec.Image = "p.s.1", "/i.sif"
			checkStartArgs(t, c.spec, "-s | instance | start | "+isolation+" | "+c.want+" | /i.sif | p.s.1", c.err)
		})
	}
}

func TestLimitsCheck(t *testing.T) {
	rootOK := cgroupHost{euid: 0, systemdCgroup: false, writable: true, confFile: "/etc/apptainer/apptainer.conf"}
	userOK := cgroupHost{euid: 1000, unified: true, systemdInit: true, systemdCgroup: true, dbus: "unix:path=/run/user/1000/bus", xdg: "/run/user/1000", writable: true}
	cases := []struct {
		name string
		host cgroupHost
		want string // "" ok, else in the reason or fix
	}{
		{"root with cgroupfs", rootOK, ""},
		{"root with systemd as init", cgroupHost{euid: 0, systemdCgroup: true, systemdInit: true, writable: true}, ""},
		{"root, systemd manager without systemd", cgroupHost{euid: 0, systemdCgroup: true, writable: true, confFile: "/etc/apptainer/apptainer.conf"},
			"`systemd cgroups = yes` in /etc/apptainer/apptainer.conf), but systemd is not running as init on this host; set `systemd cgroups = no` there"},
		{"root, read-only cgroups", cgroupHost{euid: 0}, "read-only"},
		{"user with delegation", userOK, ""},
		{"user on cgroups v1", cgroupHost{euid: 1000, systemdCgroup: true}, "this host has cgroups v1; run as root, or leave the limits to the batch scheduler"},
		{"user with cgroupfs manager", cgroupHost{euid: 1000, unified: true, confFile: "/x.conf"}, "/x.conf has `systemd cgroups = no`"},
		{"user without a session", cgroupHost{euid: 1000, unified: true, systemdCgroup: true}, "DBUS_SESSION_BUS_ADDRESS or XDG_RUNTIME_DIR is not set"},
	}
	for _, c := range cases {
		err := c.host.check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want nil", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestConfValue(t *testing.T) {
	p := filepath.Join(t.TempDir(), "apptainer.conf")
	os.WriteFile(p, []byte("# systemd cgroups = no\nsystemd  cgroups = yes\nroot default capabilities = file\nsystemd cgroups = no\n"), 0o644)
	if v, ok := confValue(p, "systemd cgroups"); !ok || v != "no" {
		t.Errorf("systemd cgroups = %q %v, want the last one, no", v, ok)
	}
	if _, ok := confValue(p, "allow setuid"); ok {
		t.Error("found a key that is not there")
	}
}

// The blkio hierarchy takes weights when a cgroup below its root has
// blkio.weight or blkio.bfq.weight; a kernel without BFQ and CFQ shows
// neither, and --blkio-weight would fail the instance at its start.
func TestBlkioWeightMissing(t *testing.T) {
	mountinfo := `38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`
	if point, ok := usage.V1Mount(mountinfo, "blkio"); !ok || point != "/sys/fs/cgroup/blkio" {
		t.Errorf("blkio mount = %q %v", point, ok)
	}
	if point, ok := usage.V1Mount(`38 31 0:35 / /mnt/a\040b rw - cgroup cgroup rw,blkio`, "blkio"); !ok || point != "/mnt/a b" {
		t.Errorf("escaped mount point: %q %v", point, ok)
	}
	if point, ok := usage.V1Mount(mountinfo, "pids"); ok {
		t.Errorf("pids mount = %q, want none", point)
	}
	hierarchy := func(files ...string) string {
		dir := t.TempDir()
		child := filepath.Join(dir, "apptainer")
		if err := os.Mkdir(child, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range append([]string{"blkio.throttle.read_bps_device"}, files...) {
			if err := os.WriteFile(filepath.Join(child, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if why := blkioWeightMissing(hierarchy(f)); why != "" {
			t.Errorf("with %s: %s", f, why)
		}
	}
	dir := hierarchy()
	if why := blkioWeightMissing(dir); !strings.Contains(why, "offers no weights (neither blkio.weight nor blkio.bfq.weight") || !strings.Contains(why, dir) {
		t.Errorf("without weight files: %q", why)
	}
	// No cgroup below the root yet: one is created to look, then removed.
	empty := t.TempDir()
	if why := blkioWeightMissing(empty); why == "" {
		t.Error("an empty hierarchy (a probe with no weight files) takes weights")
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("probe left behind: %v", entries)
	}
}

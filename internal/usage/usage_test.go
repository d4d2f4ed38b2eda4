package usage

import (
	"os"
	"testing"
)

// The readers against recorded files (testdata/README.md says where each
// comes from): which source each layout gives and every number.
func TestRead(t *testing.T) {
	page := uint64(os.Getpagesize())
	for _, tc := range []struct {
		name  string
		root  string
		inits map[string]int
		want  map[string]Usage
	}{{
		name:  "cgroups v1 (hybrid), root, with and without limits",
		root:  "testdata/v1",
		inits: map[string]int{"p.limited.1": 11359, "p.free.1": 18803, "p.gone.1": 999},
		want: map[string]Usage{
			"p.limited.1": {
				Source: SourceCgroupV1, CPUSeconds: 0.062997457,
				MemoryBytes: 26398720, WorkingSetBytes: 26398720, MemoryLimitBytes: 64000000,
				HostMemoryBytes: 24683772 * 1024,
				Processes:       3, Threads: 10, ReadBytes: 1048576 + 4096, WriteBytes: 20971520 + 8192,
			},
			"p.free.1": {
				Source: SourceCgroupV1, CPUSeconds: 0.014443619,
				MemoryBytes: 4653056, WorkingSetBytes: 4653056, // unlimited: no limit
				HostMemoryBytes: 24683772 * 1024,
				Processes:       1, Threads: 6,
			},
		},
	}, {
		name:  "cgroups v1, unprivileged: summed over the PID namespace from /proc",
		root:  "testdata/proc",
		inits: map[string]int{"p.app.1": 16856},
		want: map[string]Usage{
			// appinit (0+1 ticks, 6 threads, 5316 pages) and sleep (3
			// ticks, 1 thread, 348 pages); not the monitor nor the
			// runtime parent, which live in the host's namespace.
			"p.app.1": {
				Source: SourceProc, CPUSeconds: 0.04,
				MemoryBytes: (5316 + 348) * page, WorkingSetBytes: (5316 + 348) * page,
				HostMemoryBytes: 24683772 * 1024,
				Processes:       2, Threads: 7, ReadBytes: 8192, // appinit's
			},
		},
	}, {
		name:  "cgroups v2: a systemd scope of its own; an instance in the user's session, and one in a cgroup without the memory controller, read from /proc",
		root:  "testdata/v2",
		inits: map[string]int{"p.db.1": 4250, "p.web.1": 5000, "p.bare.1": 4260},
		want: map[string]Usage{
			"p.db.1": {
				Source: SourceCgroupV2, CPUSeconds: 2.534817,
				MemoryBytes: 41943040, WorkingSetBytes: 41943040 - 25165824, MemoryLimitBytes: 67108864,
				HostMemoryBytes: 8025436 * 1024,
				Processes:       3, Threads: 7, ReadBytes: 1052672 + 4096, WriteBytes: 20979712, OOMKills: 2,
			},
			"p.web.1": {
				Source: SourceProc, CPUSeconds: 3.1,
				MemoryBytes: (5316 + 1000) * page, WorkingSetBytes: (5316 + 1000) * page,
				HostMemoryBytes: 8025436 * 1024,
				Processes:       2, Threads: 9, ReadBytes: 8192, WriteBytes: 4096,
			},
			// Its own cgroup, but no memory controller there to count in.
			"p.bare.1": {
				Source: SourceProc, CPUSeconds: 0.5,
				MemoryBytes: 2000 * page, WorkingSetBytes: 2000 * page,
				HostMemoryBytes: 8025436 * 1024,
				Processes:       1, Threads: 6,
			},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reader{Root: tc.root}
			got := r.Read(tc.inits)
			if len(got) != len(tc.want) {
				t.Errorf("got %d instances, want %d: %+v", len(got), len(tc.want), got)
			}
			for name, want := range tc.want {
				g := got[name]
				// CPU seconds are a float: compare to the nanosecond.
				if d := g.CPUSeconds - want.CPUSeconds; d > 1e-9 || d < -1e-9 {
					t.Errorf("%s: CPUSeconds %v, want %v", name, g.CPUSeconds, want.CPUSeconds)
				}
				g.CPUSeconds = want.CPUSeconds
				if g != want {
					t.Errorf("%s:\n got %+v\nwant %+v", name, g, want)
				}
			}
		})
	}
}

// The cgroup of whoever started the instance is never taken for the
// instance's own.
func TestOwnCgroup(t *testing.T) {
	for path, own := range map[string]bool{
		"/apptainer/11359":                   true,
		"/system.slice/apptainer-4242.scope": true,
		"/user.slice/user-1000.slice/user@1000.service/user.slice/apptainer-7.scope": true,
		"/": false,
		"/process_api/d4d9d9564364b7f7b57560e7e5eb27f6": false,
		"/user.slice/user-1000.slice/session-3.scope":   false,
		"/slurm/uid_0/job_5/step_0":                     false,
		"/apptainer":                                    false,
		"/apptainer/11359/child":                        false,
	} {
		if got := ownCgroup.MatchString(path); got != own {
			t.Errorf("%s: own %v, want %v", path, got, own)
		}
	}
}

func TestMountinfoEscapes(t *testing.T) {
	m := parseMountinfo(`35 31 0:32 / /sys/fs/cgroup/mem\040ory rw,relatime - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
`)
	if m.v1["memory"] == nil || m.v1["memory"].point != "/sys/fs/cgroup/mem ory" {
		t.Errorf("memory mount %+v", m.v1["memory"])
	}
	if m.v1["cpuacct"] == nil || m.v1["cpuacct"].point != "/sys/fs/cgroup/cpu,cpuacct" || m.v1["rw"] != nil {
		t.Errorf("mounts %+v", m.v1)
	}
	// A hierarchy mounted from below its root (sstack itself in a
	// container): the instance's path is relative to the mount's root.
	nested := &mount{root: "/docker/abc", point: "/sys/fs/cgroup/memory"}
	if got := (&Reader{}).mountDir(nested, "/docker/abc/apptainer/7"); got != "/sys/fs/cgroup/memory/apptainer/7" {
		t.Errorf("below a mount root: %s", got)
	}
}

// BenchmarkRead is the readers' own cost per instance on the recorded
// files (tmpfs-like: the kernel's cgroup files cost more to generate).
func BenchmarkRead(b *testing.B) {
	for _, c := range []struct {
		name  string
		root  string
		inits map[string]int
	}{
		{"cgroupv1", "testdata/v1", map[string]int{"a": 11359}},
		{"cgroupv2", "testdata/v2", map[string]int{"a": 4250}},
		{"proc", "testdata/proc", map[string]int{"a": 16856}},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &Reader{Root: c.root}
			for i := 0; i < b.N; i++ {
				if len(r.Read(c.inits)) != 1 {
					b.Fatal("not read")
				}
			}
		})
	}
}

// A stack's network namespace, recorded from its holder after a few
// connections: loopback between services, tap0 to slirp4netns.
func TestNetwork(t *testing.T) {
	got, err := (&Reader{Root: "testdata/netdev"}).Network(17815)
	if err != nil {
		t.Fatal(err)
	}
	want := []Interface{{"lo", 100, 100}, {"tap0", 166, 702}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := (&Reader{Root: "testdata/netdev"}).Network(1); err == nil {
		t.Error("a missing process: no error")
	}
}

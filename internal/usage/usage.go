// Package usage reads what Apptainer instances use (CPU time, memory,
// block I/O, processes, OOM kills) and a stack network's bytes, from the
// host that runs them, for the metrics, `sstack stats` and the OOM check
// of a run. It only reads files. Its users: package singularity
// (Runtime.Usage, on each node: it gives the init pids of the instances)
// and the engine (the stack network's holder); it knows nothing of
// compose or of sstack's replicas.
//
// Where the numbers come from (checked against Apptainer 1.4.5 on cgroups
// v1, as root and as a user; see testdata/README.md):
//
//   - An instance has a cgroup of its own when Apptainer made one: as root
//     always (cgroupfs manager: /apptainer/<pid> in every hierarchy, with
//     or without limits), as a user only on cgroups v2 with systemd
//     (.../apptainer-<pid>.scope). Every process of the instance is in it,
//     those of `exec instance://` too, and also the "Apptainer runtime
//     parent" client of each exec (a host process, which holds memory of
//     its own). The cgroup's counters are then used: cAdvisor's numbers.
//   - Otherwise (a user on cgroups v1, or v2 without systemd) the instance
//     shares its user's cgroup with everything else the user runs, so the
//     numbers are summed from /proc over the processes of the instance's
//     PID namespace (sstack starts every instance with its own): CPU time
//     of the live processes and of the children they reaped, resident
//     memory, block I/O of /proc/PID/io. An exited process takes its share
//     of the CPU and I/O counters with it, and there is no memory limit
//     nor OOM count.
package usage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Reader reads usage under a file system root: "" is the host's "/";
// tests point it at recorded files (proc/..., sys/fs/cgroup/...). The
// cgroup mounts and the node's memory are read once, by the first Read:
// they do not change while sstack runs. Its zero value is ready to use,
// from any goroutine.
type Reader struct {
	Root string

	once    sync.Once
	mounts  mounts
	hostMem uint64
}

// clockTicks is USER_HZ, the unit of CPU times in /proc/PID/stat: 100 on
// every Linux architecture sstack runs on (it is part of the kernel ABI).
const clockTicks = 100

var pageSize = uint64(os.Getpagesize())

// Read samples the instances given by the pid of their init (as
// `instance list` reports it), by instance name. An instance whose init
// is gone is left out.
func (r *Reader) Read(inits map[string]int) map[string]Usage {
	out := make(map[string]Usage, len(inits))
	if len(inits) == 0 {
		return out
	}
	r.once.Do(func() {
		r.mounts = parseMountinfo(readFile(r.path("proc/self/mountinfo")))
		r.hostMem = memTotal(readFile(r.path("proc/meminfo")))
	})
	var namespaces *procScan // built once, only when an instance needs /proc
	for name, pid := range inits {
		cg, err := readBytes(r.path("proc", strconv.Itoa(pid), "cgroup"))
		if err != nil {
			continue // gone
		}
		u, ok := r.fromCgroup(r.mounts, string(cg))
		if !ok {
			if namespaces == nil {
				namespaces = r.scanProc()
			}
			if u, ok = r.fromProc(namespaces, pid); !ok {
				continue
			}
		}
		u.HostMemoryBytes = r.hostMem
		out[name] = u
	}
	return out
}

func (r *Reader) path(elem ...string) string {
	root := r.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// ownCgroup: the path is one Apptainer created for an instance (the
// cgroupfs manager's /apptainer/<pid>, the systemd manager's
// apptainer-<pid>.scope), not the cgroup of whoever started it.
var ownCgroup = regexp.MustCompile(`(^|/)apptainer/[0-9]+$|(^|/)apptainer-[0-9]+\.scope$`)

// fromCgroup reads the instance's own cgroup, given its /proc/PID/cgroup.
// On a hybrid host (v1 controllers and an empty v2 hierarchy) the v1
// controllers are read: they hold the counters.
func (r *Reader) fromCgroup(m mounts, procCgroup string) (Usage, bool) {
	v1 := map[string]string{} // controller -> cgroup path
	unified := ""
	hasUnified := false
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified, hasUnified = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1[c] = parts[2]
		}
	}
	if p, ok := v1["memory"]; ok && m.v1["memory"] != nil {
		if !ownCgroup.MatchString(p) {
			return Usage{}, false
		}
		return r.readV1(m, v1), true
	}
	if hasUnified && m.v2 != nil && ownCgroup.MatchString(unified) {
		dir := r.mountDir(m.v2, unified)
		// A hierarchy without the memory controller (a hybrid host whose
		// v1 hierarchies lack it) counts nothing: /proc does.
		if _, err := os.Stat(filepath.Join(dir, "memory.current")); err == nil {
			return r.readV2(dir), true
		}
	}
	return Usage{}, false
}

func (r *Reader) mountDir(m *mount, cgroup string) string {
	rel := strings.TrimPrefix(cgroup, m.root)
	return r.path(m.point, rel)
}

func (r *Reader) readV1(m mounts, paths map[string]string) Usage {
	u := Usage{Source: SourceCgroupV1}
	dir := func(controller string) string {
		mt, p := m.v1[controller], paths[controller]
		if mt == nil || p == "" {
			return ""
		}
		return r.mountDir(mt, p)
	}
	mem := dir("memory")
	u.MemoryBytes = readUint(filepath.Join(mem, "memory.usage_in_bytes"))
	stat := readKeyed(filepath.Join(mem, "memory.stat"))
	u.WorkingSetBytes = workingSet(u.MemoryBytes, stat["total_inactive_file"])
	// An unlimited cgroup reads PAGE_COUNTER_MAX pages, about 2^63.
	if l := readUint(filepath.Join(mem, "memory.limit_in_bytes")); l > 0 && l < 1<<62 {
		u.MemoryLimitBytes = l
	}
	u.OOMKills = readKeyed(filepath.Join(mem, "memory.oom_control"))["oom_kill"]
	u.Processes = countLines(filepath.Join(mem, "cgroup.procs"))
	u.Threads = countLines(filepath.Join(mem, "tasks"))
	if d := dir("cpuacct"); d != "" {
		u.CPUSeconds = float64(readUint(filepath.Join(d, "cpuacct.usage"))) / 1e9
	}
	if d := dir("blkio"); d != "" {
		u.ReadBytes, u.WriteBytes = blkioV1(readFile(filepath.Join(d, "blkio.throttle.io_service_bytes")))
	}
	return u
}

func (r *Reader) readV2(dir string) Usage {
	u := Usage{Source: SourceCgroupV2}
	u.CPUSeconds = float64(readKeyed(filepath.Join(dir, "cpu.stat"))["usage_usec"]) / 1e6
	u.MemoryBytes = readUint(filepath.Join(dir, "memory.current"))
	u.WorkingSetBytes = workingSet(u.MemoryBytes, readKeyed(filepath.Join(dir, "memory.stat"))["inactive_file"])
	u.MemoryLimitBytes = readUint(filepath.Join(dir, "memory.max")) // "max" reads as 0: none
	u.OOMKills = readKeyed(filepath.Join(dir, "memory.events"))["oom_kill"]
	u.Processes = countLines(filepath.Join(dir, "cgroup.procs"))
	u.Threads = countLines(filepath.Join(dir, "cgroup.threads"))
	u.ReadBytes, u.WriteBytes = ioStatV2(readFile(filepath.Join(dir, "io.stat")))
	return u
}

// workingSet is usage less the inactive file cache, never below 0
// (cAdvisor's container_memory_working_set_bytes).
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

// blkioV1 sums the Read and Write lines of blkio.throttle.io_service_bytes
// ("8:0 Read 4096") over the devices.
func blkioV1(s string) (read, write uint64) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write
}

// ioStatV2 sums rbytes and wbytes of io.stat ("8:0 rbytes=4096 wbytes=0 ...").
func ioStatV2(s string) (read, write uint64) {
	for _, line := range strings.Split(s, "\n") {
		for _, kv := range strings.Fields(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				read += n
			case "wbytes":
				write += n
			}
		}
	}
	return read, write
}

// readBytes reads a small file with one open, one read and one close:
// os.ReadFile's stat and second read (to see the end) double the system
// calls, which are most of a scrape's cost. A file that fills the buffer
// is read on, in a larger one, until its end.
func readBytes(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 8192)
	n := 0
	for {
		m, err := syscall.Read(fd, buf[n:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		n += m
		if n < len(buf) {
			// Room left: the end. A regular file reads short only at its
			// end, and the kernel's generated files (seq_file) give all
			// that fits at once.
			return buf[:n], nil
		}
		buf = append(buf, make([]byte, len(buf))...)
	}
}

// readFile is readBytes as a string, "" when unreadable.
func readFile(path string) string {
	b, _ := readBytes(path)
	return string(b)
}

// readUint reads a file holding one number; 0 when it is missing or holds
// something else ("max").
func readUint(path string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimSpace(readFile(path)), 10, 64)
	return n
}

// readKeyed reads "key value" lines (memory.stat, cpu.stat, memory.events,
// memory.oom_control).
func readKeyed(path string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(readFile(path), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func countLines(path string) int {
	b, err := readBytes(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\n"))
}

// memTotal reads MemTotal of /proc/meminfo, in bytes.
func memTotal(meminfo string) uint64 {
	for _, line := range strings.Split(meminfo, "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// mounts are the cgroup hierarchies of the host, from mountinfo.
type mounts struct {
	v1 map[string]*mount // by controller
	v2 *mount
}

// mount is a mounted cgroup hierarchy: the cgroup root is seen at point.
type mount struct{ root, point string }

// V1Mount is where the cgroups v1 hierarchy of controller is mounted,
// read from a mountinfo file (the limits check asks it of the host).
func V1Mount(mountinfo, controller string) (point string, ok bool) {
	if m := parseMountinfo(mountinfo).v1[controller]; m != nil {
		return m.point, true
	}
	return "", false
}

// parseMountinfo finds the cgroup mounts. Fields: ID PARENT MAJ:MIN ROOT
// POINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS.
func parseMountinfo(s string) mounts {
	m := mounts{v1: map[string]*mount{}}
	for _, line := range strings.Split(s, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		mt := &mount{root: f[3], point: unescapeMount(f[4])}
		switch g[0] {
		case "cgroup2":
			if m.v2 == nil {
				m.v2 = mt
			}
		case "cgroup":
			for _, o := range strings.Split(g[2], ",") {
				switch o {
				case "rw", "ro":
					continue
				}
				if m.v1[o] == nil {
					m.v1[o] = mt
				}
			}
		}
	}
	return m
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Usage sources: where the numbers of a Usage were read.
const (
	SourceCgroupV1 = "cgroup v1" // the instance's own cgroup, cgroups v1
	SourceCgroupV2 = "cgroup v2" // the instance's own cgroup, cgroups v2
	SourceProc     = "proc"      // summed over the processes of the instance's PID namespace
)

// Usage is what an instance uses, with cAdvisor's meanings (its
// container_* metrics). Counters (CPU, I/O, OOM kills) count from the
// creation of the cgroup, or with SourceProc over the processes alive now
// (an exited process takes its share with it).
type Usage struct {
	Source string `json:"Source"` // SourceCgroupV1, SourceCgroupV2 or SourceProc
	// CPUSeconds is user plus system CPU time.
	CPUSeconds float64 `json:"CPUSeconds"`
	// MemoryBytes is the memory charged to the cgroup, page cache
	// included; with SourceProc the sum of the processes' resident sets.
	MemoryBytes uint64 `json:"MemoryBytes"`
	// WorkingSetBytes is MemoryBytes less the inactive file cache, what
	// the kernel cannot easily reclaim (cAdvisor's working set, docker
	// stats' MEM USAGE); with SourceProc the same as MemoryBytes.
	WorkingSetBytes uint64 `json:"WorkingSetBytes"`
	// MemoryLimitBytes is the cgroup's memory limit, 0 without one.
	MemoryLimitBytes uint64 `json:"MemoryLimitBytes"`
	// HostMemoryBytes is the node's total memory (MemTotal).
	HostMemoryBytes uint64 `json:"HostMemoryBytes"`
	// Processes and Threads in the cgroup (with SourceProc, in the PID
	// namespace).
	Processes int `json:"Processes"`
	Threads   int `json:"Threads"`
	// ReadBytes and WriteBytes are block device I/O (not page cache hits
	// or tmpfs writes).
	ReadBytes  uint64 `json:"ReadBytes"`
	WriteBytes uint64 `json:"WriteBytes"`
	// OOMKills counts the processes the kernel killed for exceeding the
	// cgroup's memory limit; always 0 with SourceProc (no limit).
	OOMKills uint64 `json:"OOMKills"`
}

// Cgroup reports whether the numbers come from the instance's own cgroup.
func (u Usage) Cgroup() bool { return u.Source == SourceCgroupV1 || u.Source == SourceCgroupV2 }

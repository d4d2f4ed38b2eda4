package main

// Resource limits on real cgroups: the compose file's limits are what the
// kernel holds for the instance, the service process runs under them, a
// service allocating past mem_limit is OOM-killed (exit 137, said so in
// its status line) and restarted by its policy. A host that cannot apply
// limits refuses them before anything starts; --no-limits starts without
// them and says so. Measured on cgroups v1 as root with Apptainer's
// cgroupfs manager (`systemd cgroups = no`, which
// scripts/install-apptainer.sh sets on a host without systemd).

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
	"sstack/internal/testutil"
)

// requireLimits skips (fails when CI=true) unless Apptainer can apply
// cgroup limits here, as root on cgroups v1: the files these tests read.
func requireLimits(t *testing.T) {
	t.Helper()
	rt := testimg.RequireRuntime(t)
	if os.Geteuid() != 0 {
		testimg.Unavailable(t, "cgroup limits need root on this kind of host")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		testimg.Unavailable(t, "these tests read cgroups v1 files; /sys/fs/cgroup/memory is not there")
	}
	if err := rt.CheckLimits(context.Background()); err != nil {
		testimg.Unavailable(t, "Apptainer cannot apply cgroup limits here: %v", err)
	}
}

// instancePid is the pid `instance list` gives for an instance.
func instancePid(t *testing.T, name string) int {
	t.Helper()
	list := instanceList(t, "", name)
	if len(list) != 1 {
		t.Fatalf("instance list %s: %+v, want one instance", name, list)
	}
	return list[0].Pid
}

// cgroupValue reads a file of the instance's cgroup of a controller.
func cgroupValue(t *testing.T, pid int, controller, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, "apptainer", strconv.Itoa(pid), file))
	if err != nil {
		t.Errorf("cgroup of the instance: %v", err)
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Every limit of the compose file is what the kernel holds for the
// instance, and the service process runs in that cgroup.
func TestLimitsHeldByTheKernel(t *testing.T) {
	requireLimits(t)
	t.Parallel()
	p := newProject(t, oneService("limited", `["sh", "-c", "echo cgroup=$$(grep :memory: /proc/self/cgroup); exec sleep 1000"]`, "cpus: 0.5", "cpu_shares: 512", `cpuset: "0"`, "mem_limit: 64m", "mem_reservation: 32m", "memswap_limit: 128m", "pids_limit: 50", "oom_kill_disable: true", "blkio_config: {weight: 300}"))
	r := p.up()
	r.waitStdout(t, "cgroup=")
	pid := instancePid(t, p.name+".limited.1")
	want := map[string]string{
		"memory/memory.limit_in_bytes":       "67108864",
		"memory/memory.soft_limit_in_bytes":  "33554432",
		"memory/memory.memsw.limit_in_bytes": "134217728",
		"cpu/cpu.cfs_quota_us":               "50000",
		"cpu/cpu.cfs_period_us":              "100000",
		"cpu/cpu.shares":                     "512",
		"cpuset/cpuset.cpus":                 "0",
		"pids/pids.max":                      "50",
	}
	for path, w := range want {
		controller, file, _ := strings.Cut(path, "/")
		if file == "memory.memsw.limit_in_bytes" {
			if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err != nil {
				continue // a kernel without swap accounting
			}
		}
		if got := cgroupValue(t, pid, controller, file); got != w {
			t.Errorf("%s = %q, want %q", path, got, w)
		}
	}
	if got := cgroupValue(t, pid, "memory", "memory.oom_control"); !strings.Contains(got, "oom_kill_disable 1") {
		t.Errorf("memory.oom_control: %q, want oom_kill_disable 1", got)
	}
	// A weight needs a kernel with BFQ (blkio.bfq.weight) or CFQ
	// (blkio.weight); where the instance's cgroup has neither, the weight
	// is discarded with a warning, as Docker does.
	weight := ""
	for _, f := range []string{"blkio.bfq.weight", "blkio.weight"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/blkio/apptainer", strconv.Itoa(pid), f)); err == nil {
			weight = f
			break
		}
	}
	discarded := `WARN service "limited": blkio_config.weight: not applied: this host's block I/O cgroup (/sys/fs/cgroup/blkio) offers no weights`
	if weight == "" {
		contains(t, "stderr", r.stderr.String(), discarded)
	} else {
		if got := cgroupValue(t, pid, "blkio", weight); !strings.HasPrefix(got, "300") && !strings.Contains(got, "default 300") {
			t.Errorf("%s = %q, want 300", weight, got)
		}
		if strings.Contains(r.stderr.String(), discarded) {
			t.Errorf("the weight was applied (%s) yet said discarded:\n%s", weight, r.stderr)
		}
	}
	// The service process itself is under the limits, not only the
	// instance's init.
	if got := lines(r.stdout.String(), "limited-1"); len(got) == 0 || !strings.HasSuffix(got[0], ":memory:/apptainer/"+strconv.Itoa(pid)) {
		t.Errorf("the service process runs in %v, want the instance's cgroup /apptainer/%d", got, pid)
	}
	p.ctrlCLeavesNothing(r)
}

// A service that allocates past mem_limit is killed by the kernel: exit
// 137, an OOM line, and its restart policy restarts it.
func TestOOMKilledServiceIsReportedAndRestarted(t *testing.T) {
	requireLimits(t)
	t.Parallel()
	// $(...) holds the whole 200 MB string in the shell itself: it
	// really allocates (measured: oom_kill goes up, exit 137).
	p := newProject(t, oneService("hog", `["sh", "-c", "echo allocating; x=$$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]`,
		"mem_limit: 50m", "restart: on-failure:1"))
	code, out, errs := p.run()
	if code != 0 {
		t.Errorf("exit code %d, want 0 (the service gave up by its policy)", code)
	}
	if n := countLines(out, "hog-1", "allocating"); n != 2 {
		t.Errorf("ran %d times, want 2 (once, then one restart):\n%s", n, out)
	}
	if strings.Contains(out, "survived") {
		t.Errorf("the allocation was not stopped by the limit:\n%s", out)
	}
	contains(t, "stderr", errs,
		"hog-1 exited with code 137 (OOM-killed: it exceeded its memory limit), restarting in 100ms (attempt 1 of 1)",
		"hog-1 exited with code 137 (OOM-killed: it exceeded its memory limit), giving up after 1 attempt",
	)
	p.assertNothingLeft()
}

// A SIGKILL that is not the kernel's OOM killer is not reported as one.
func TestKilledServiceWithLimitIsNoOOM(t *testing.T) {
	requireLimits(t)
	t.Parallel()
	p := newProject(t, oneService("victim", `["sh", "-c", "echo up; kill -KILL $$$$"]`, "mem_limit: 50m"))
	code, out, errs := p.run()
	if code != 0 || countLines(out, "victim-1", "up") != 1 {
		t.Errorf("exit code %d, output:\n%s", code, out)
	}
	contains(t, "stderr", errs, "victim-1 exited with code 137\n")
	if strings.Contains(errs, "OOM") {
		t.Errorf("a plain SIGKILL reported as an OOM kill:\n%s", errs)
	}
	p.assertNothingLeft()
}

// --no-limits starts the service without its limits and says so.
func TestNoLimitsStartsWithoutThem(t *testing.T) {
	requireLimits(t)
	t.Parallel()
	p := newProject(t, oneService("free", `["sh", "-c", "echo up; exec sleep 1000"]`, "mem_limit: 64m", "pids_limit: 50"))
	r := p.up("--no-limits")
	r.waitStdout(t, "up")
	contains(t, "stderr", r.stderr.String(), `WARN service "free": mem_limit, pids_limit: not applied (--no-limits): the service runs without cgroup limits`)
	pid := instancePid(t, p.name+".free.1")
	if got := cgroupValue(t, pid, "memory", "memory.limit_in_bytes"); got == "67108864" {
		t.Errorf("memory limit applied despite --no-limits")
	}
	if got := cgroupValue(t, pid, "pids", "pids.max"); got != "max" {
		t.Errorf("pids.max = %q despite --no-limits, want max", got)
	}
	p.ctrlCLeavesNothing(r)
}

// A user who cannot apply cgroup limits (unprivileged on cgroups v1, or
// without a systemd session) is told before anything starts, with the
// service, its keys and the way out; nothing runs.
func TestLimitsRefusedWhereTheyCannotBeApplied(t *testing.T) {
	testimg.RequireRuntime(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run sstack as another user")
	}
	t.Parallel()
	const uid = 65534
	// A directory the other user can read: the binary, the image, the
	// project; the state directory is its own.
	shared, err := os.MkdirTemp("", "sstack-limits-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	for _, d := range []string{shared, filepath.Join(shared, "proj")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(d, 0o755)
	}
	bin, img := filepath.Join(shared, "sstack"), filepath.Join(shared, "busybox.sif")
	copyExecutable(t, sstackBin, bin, 0o755)
	copyExecutable(t, testimg.Busybox(t), img, 0o644)
	state := filepath.Join(shared, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, uid, uid); err != nil {
		t.Fatal(err)
	}
	compose := filepath.Join(shared, "proj", "docker-compose.yml")
	testutil.WriteFile(t, compose, "services:\n  capped:\n    image: "+img+"\n    command: [\"echo\", \"ran\"]\n    mem_limit: 64m\n    cpus: 0.5\n", 0o644)
	cmd := exec.Command(bin, "-f", compose, "-n", "capped", "--metrics-addr", "", "up")
	cmd.Dir = filepath.Join(shared, "proj")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + state, "SSTACK_STATE_DIR=" + state}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("sstack did not exit")
	}
	t.Logf("as uid %d:\n%s", uid, out)
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1: %s", code, out)
	}
	contains(t, "output", string(out),
		`service "capped": cpus, mem_limit: cgroup limits cannot be applied here: an unprivileged user`,
		"or start without limits: sstack up --no-limits")
	if strings.Contains(string(out), "Creating") || strings.Contains(string(out), "ran") {
		t.Errorf("something started:\n%s", out)
	}
	var lists struct {
		Instances []any `json:"instances"`
	}
	listing := exec.Command("apptainer", "instance", "list", "--json", "capped.*")
	listing.SysProcAttr = cmd.SysProcAttr
	listing.Env = cmd.Env
	if b, err := listing.Output(); err == nil && json.Unmarshal(b, &lists) == nil && len(lists.Instances) > 0 {
		t.Errorf("instances left: %s", b)
	}
}

func copyExecutable(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

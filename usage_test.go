package main

// Resource usage where the instance has no cgroup of its own: an
// unprivileged user on cgroups v1. The numbers come from /proc, summed
// over the processes of the instance's PID namespace.

import (
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
)

// userStack is a project run by sstack as another, unprivileged user.
type userStack struct {
	t                   *testing.T
	bin, compose, state string
	uid                 uint32
}

// newUserStack copies the sstack binary and the busybox image where uid
// can read them and writes compose (with `image: busybox` naming the
// copy) into a project directory; the state directory is uid's own.
func newUserStack(t *testing.T, uid uint32, compose string) *userStack {
	t.Helper()
	testimg.RequireRuntime(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run sstack as another user")
	}
	shared, err := os.MkdirTemp("", "sstack-user-")
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
	u := &userStack{t: t, uid: uid, bin: filepath.Join(shared, "sstack"), state: filepath.Join(shared, "state"),
		compose: filepath.Join(shared, "proj", "docker-compose.yml")}
	img := filepath.Join(shared, "busybox.sif")
	copyExecutable(t, sstackBin, u.bin, 0o755)
	copyExecutable(t, testimg.Busybox(t), img, 0o644)
	if err := os.MkdirAll(u.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.state, int(uid), int(uid)); err != nil {
		t.Fatal(err)
	}
	compose = strings.ReplaceAll(compose, busyboxImage, "image: "+img+"\n")
	if err := os.WriteFile(u.compose, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

// run runs `sstack -f COMPOSE -n usage ARGS...` as the user.
func (u *userStack) run(args ...string) (int, string, string) {
	u.t.Helper()
	cmd := exec.Command(u.bin, append([]string{"-f", u.compose, "-n", "usage"}, args...)...)
	cmd.Dir = filepath.Dir(u.compose)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + u.state, "SSTACK_STATE_DIR=" + u.state}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.uid}}
	return runCommand(u.t, cmd, 3*time.Minute)
}

func TestUsageFromProcForAnUnprivilegedUser(t *testing.T) {
	const uid = 65534
	u := newUserStack(t, uid, `
services:
  busy:
    image: busybox
    command: ["sh", "-c", "while true; do i=0; while [ $$i -lt 3000 ]; do i=$$((i+1)); done; sleep 0.1; done"]
`)
	t.Parallel()
	addr := freeAddr(t)
	if code, out, errs := u.run("up", "-d", "--metrics-addr", addr); code != 0 {
		t.Fatalf("up -d as uid %d: exit code %d\n%s\n%s", uid, code, out, errs)
	}
	t.Cleanup(func() {
		if code, _, errs := u.run("down"); code != 0 {
			t.Errorf("down: %s", errs)
		}
	})
	busy := replicaLabels("usage", "busy", 1)
	var why string
	eventually(t, time.Minute, "usage series of busy", func() bool {
		text, err := scrape(addr)
		if err != nil {
			why = err.Error()
			return false
		}
		s, err := parseScrape(text)
		if err != nil {
			t.Fatal(err)
		}
		cpu, ok1 := s.value("sstack_container_cpu_usage_seconds_total", busy)
		mem, ok2 := s.value("sstack_container_memory_working_set_bytes", busy)
		procs, ok3 := s.value("sstack_container_processes", busy)
		_, limit := s.value("sstack_container_spec_memory_limit_bytes", busy)
		_, oom := s.value("sstack_container_oom_events_total", busy)
		switch {
		case !ok1 || !ok2 || !ok3:
			why = "series missing"
		case cpu <= 0 || mem <= 0 || procs < 2:
			// appinit and the shell at least
			why = "cpu, memory, processes: " + strings.Join([]string{ftoa(cpu), ftoa(mem), ftoa(procs)}, ", ")
		case limit || oom:
			why = "a memory limit or an OOM count without a cgroup"
		default:
			return true
		}
		return false
	})
	if t.Failed() {
		t.Fatal(why)
	}
	code, out, errs := u.run("stats", "--no-stream", "--format", "json")
	if code != 0 {
		t.Fatalf("stats: %d %s", code, errs)
	}
	var row statsRow
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &row); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if row.Name != "busy-1" || row.Usage.Source != "proc" || row.Usage.CPUSeconds <= 0 || row.CPUPerc == "0.00%" || row.Usage.MemoryLimitBytes != 0 {
		t.Errorf("stats as uid %d: %+v", uid, row)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

package usage

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkReadProcHost times the /proc source on this host's real /proc
// for N instances, each stood for by a PID namespace of its own (unshare
// --pid, as root) holding a shell and a sleep: one scan of /proc per Read,
// then the processes of each namespace. It skips where namespaces cannot
// be made.
func BenchmarkReadProcHost(b *testing.B) {
	for _, n := range []int{10, 200} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			inits := namespaces(b, n)
			r := &Reader{}
			if got := r.Read(inits); len(got) != n {
				b.Fatalf("read %d of %d", len(got), n)
			} else {
				for _, u := range got {
					if u.Source != "proc" || u.Processes != 2 {
						b.Fatalf("%+v, want 2 processes from /proc", u)
					}
					break
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.Read(inits)
			}
			entries, _ := os.ReadDir("/proc")
			b.ReportMetric(float64(len(entries)), "proc-entries")
		})
	}
}

// namespaces starts n PID namespaces, each with an init shell and a
// sleep, and returns their inits (host pids) by a made-up instance name.
func namespaces(b *testing.B, n int) map[string]int {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("unshare --pid needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		b.Skip(err)
	}
	inits := map[string]int{}
	for i := 0; i < n; i++ {
		// unshare forks the shell as PID 1 of the new namespace and waits.
		cmd := exec.Command("unshare", "--pid", "--fork", "sh", "-c", "sleep 600 & wait")
		if err := cmd.Start(); err != nil {
			b.Skip(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		inits["b.ns."+strconv.Itoa(i)] = cmd.Process.Pid
	}
	// The namespace's init is unshare's child: wait for it and its sleep.
	deadline := time.Now().Add(30 * time.Second)
	for name, pid := range inits {
		for {
			kids, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
			if f := strings.Fields(string(kids)); len(f) == 1 {
				child, _ := strconv.Atoi(f[0])
				grand, _ := os.ReadFile("/proc/" + f[0] + "/task/" + f[0] + "/children")
				if len(strings.Fields(string(grand))) == 1 {
					inits[name] = child
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("namespace of %d not ready", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return inits
}

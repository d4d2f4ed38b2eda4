package singularity

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sstack/internal/proctree"
)

// EndRun SIGKILLs every process left in the instance after its service
// process exited (daemons it forked, a shell's background jobs): in Docker
// a container and everything in it ends with its main process, so a
// restart starts from a clean instance and `restart: no` leaves nothing
// running. The instance's init (appinit) stays. It returns how many
// processes it ended.
func (a *Apptainer) EndRun(ctx context.Context, instance string) (int, error) {
	a.initsMu.Lock()
	init, ok := a.inits[instance]
	a.initsMu.Unlock()
	if ok && isInstanceInit(init, instance) {
		return endNamespace(init)
	}
	infos, err := a.ListInstances(ctx, instance)
	if err != nil {
		return 0, err
	}
	for _, info := range infos {
		if info.Name != instance {
			continue
		}
		return endNamespace(info.Pid)
	}
	return 0, nil
}

// isInstanceInit: pid is still the init of instance (its monitor, the
// parent, is titled "Apptainer instance: USER [NAME]"), not a recycled pid.
func isInstanceInit(pid int, instance string) bool {
	_, ppid, err := procStat(pid)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid))
	return err == nil && strings.Contains(string(b), "["+instance+"]")
}

// endNamespace kills every process sharing init's PID namespace, but init,
// until none is left (a process may fork while the list is read).
func endNamespace(init int) (int, error) {
	ended := 0
	for round := 0; round < 10; round++ {
		procs, err := proctree.InNamespaceOf(init)
		if err != nil {
			if os.IsNotExist(err) {
				return ended, nil // the instance is gone
			}
			return ended, err
		}
		left := 0
		for _, p := range procs {
			if p.Pid == init {
				continue
			}
			left++
			if syscall.Kill(p.Pid, syscall.SIGKILL) == nil {
				ended++
			}
		}
		if left == 0 {
			return ended, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ended, fmt.Errorf("processes keep appearing in the instance of pid %d", init)
}

// StartsInFlight lists the `instance start` clients still running for
// names: an sstack killed during start-up leaves them, and the instance
// they start appears after it died.
func StartsInFlight(names []string) []int {
	if len(names) == 0 {
		return nil // the common case at up: no scan of every process (thousands on a login node)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !isInstanceStart(args) || !want[args[len(args)-1]] {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(f)), "%d", &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isInstanceStart: argv of `apptainer [-s] instance start ... IMAGE NAME`
// as StartArgs builds it.
func isInstanceStart(args []string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "instance" && args[i+1] == "start" {
			return len(args) > i+3
		}
	}
	return false
}

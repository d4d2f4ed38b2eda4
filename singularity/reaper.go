package singularity

import (
	"context"
	"os"
	"syscall"
	"time"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// BecomeSubreaper makes the calling process the reaper of its orphaned
// descendants, so the monitor of every instance it starts (a daemon that
// would be re-parented to PID 1) becomes its child. `instance stop` waits
// until the monitor's pid is gone; an init that reaps slowly (measured:
// about once a second in containers) then delays every stop by up to a
// second. StopInstance reaps the monitor itself instead.
func BecomeSubreaper() error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// monitorChild returns the pid of the instance's monitor when it is a child
// of this process (see BecomeSubreaper), else 0.
func (a *Apptainer) monitorChild(ctx context.Context, name string) int {
	infos, err := a.ListInstances(ctx, name)
	if err != nil || len(infos) != 1 || infos[0].Pid <= 0 {
		return 0
	}
	_, monitor, err := procStat(infos[0].Pid)
	if err != nil || monitor <= 1 {
		return 0
	}
	if _, parent, err := procStat(monitor); err != nil || parent != os.Getpid() {
		return 0
	}
	return monitor
}

// reap waits for pid (a child) to exit and collects it, until done closes.
// Only that pid is waited for, so os/exec's own children are not stolen.
func reap(pid int, done <-chan struct{}) {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || (err != nil && err != syscall.EINTR) {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

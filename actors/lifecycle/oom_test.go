package lifecycle

import (
	"testing"

	"sstack/internal/api"
)

// An OOM kill is an exit like any other for the restart policy; the die
// event says the kernel killed the process.
func TestOOMKilledExitIsReportedAndRestarted(t *testing.T) {
	d := newDriver(t, service("hog", onFailure(0)))
	d.start()
	d.do(ProcessExited{Run: d.run, Code: 137, OOMKilled: true})
	ev := d.last(api.EventDied)
	if !ev.OOMKilled || ev.ExitCode != 137 || !ev.Restart {
		t.Errorf("die event %+v: want OOMKilled, code 137, restart", ev)
	}
	d.wantState(api.StateRestarting)
	d.elapse(TimerRestart)
	d.wantState(api.StateRunning)
	d.exit(137) // killed by SIGKILL, not for memory
	if ev := d.last(api.EventDied); ev.OOMKilled {
		t.Errorf("a plain SIGKILL reported as an OOM kill: %+v", ev)
	}
}

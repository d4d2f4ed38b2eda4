package projects

import (
	"testing"

	"sstack/internal/api"
)

// The rows kept when a stack ends: a replica whose instance the end
// removed shows how its process exited, with no pid.
func TestLastRows(t *testing.T) {
	dir := t.TempDir()
	if got := LastRows(dir); got != nil {
		t.Errorf("nothing recorded: %v", got)
	}
	RecordLastRows(dir, []api.Replica{
		{Name: "web-1", State: api.StateStopped, Ran: true, ExitCode: 143, Pid: 7},
		{Name: "job-1", State: api.StateExited, Ran: true, ExitCode: 3},
		{Name: "never-1", State: api.StateStopped},
	})
	got := LastRows(dir)
	if len(got) != 3 || got[0].Status() != "exited (143)" || got[0].Pid != 0 || got[1].Status() != "exited (3)" || got[2].State != api.StateStopped {
		t.Errorf("recorded rows: %+v", got)
	}
}

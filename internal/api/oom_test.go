package api

import (
	"strings"
	"testing"
)

func TestOOMKilledLine(t *testing.T) {
	e := Event{Kind: EventDied, Name: "hog-1", ExitCode: 137, OOMKilled: true, Restart: true, Delay: 100 * ms, Attempt: 1}
	if got, want := e.Line(), "hog-1 exited with code 137 (OOM-killed: it exceeded its memory limit), restarting in 100ms (attempt 1)"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	e.Restart = false
	if got, want := e.Line(), "hog-1 exited with code 137 (OOM-killed: it exceeded its memory limit)"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	if attrs := strings.Join(e.Attributes(), ", "); !strings.Contains(attrs, "exitCode=137, oomKilled=true") {
		t.Errorf("attributes %s lack oomKilled=true", attrs)
	}
}

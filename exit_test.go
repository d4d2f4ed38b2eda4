package main

// The exit code of up with --abort-on-container-exit,
// --abort-on-container-failure and --exit-code-from, as docker compose:
// the first exit (or the first failure) of any service aborts the stack,
// and its code, or SERVICE's own, is up's.

import (
	"fmt"
	"strings"
	"testing"
)

func TestAbortFlagsSetExitCode(t *testing.T) {
	server := `
  server:
    image: busybox
    command: ["sh", "-c", "trap 'echo server stopping; exit 42' TERM; echo serving; while true; do sleep 0.1; done"]`
	// job exits 3 once server runs.
	jobFails := "services:" + server + `
  job:
    image: busybox
    depends_on: [server]
    command: ["sh", "-c", "sleep 1; exit 3"]
`
	// ok exits 0 at once, job 5 later.
	okThenFailure := "services:" + server + `
  ok:
    image: busybox
    depends_on: [server]
    command: ["sh", "-c", "echo ok done"]
  job:
    image: busybox
    depends_on: [server]
    command: ["sh", "-c", "sleep 2; exit 5"]
`
	// job runs until stopped; ok starts once job runs and exits 0.
	okWhileJobRuns := services(
		service("job", `["sleep", "1000"]`),
		service("ok", `["sh", "-c", "echo ok done"]`, `depends_on: ["job"]`),
	)
	tests := []struct {
		compose string
		args    []string
		want    int
	}{
		{jobFails, []string{"--abort-on-container-exit"}, 3},
		{jobFails, []string{"--exit-code-from", "job"}, 3},
		// server is stopped by the abort: its own exit code counts.
		{jobFails, []string{"--exit-code-from", "server"}, 42},
		// ok's exit 0 does not abort, job's exit 5 does.
		{okThenFailure, []string{"--abort-on-container-failure"}, 5},
		// --exit-code-from does not imply --abort-on-container-exit
		// when --abort-on-container-failure is given.
		{okThenFailure, []string{"--exit-code-from", "job", "--abort-on-container-failure"}, 5},
		// It does otherwise: ok's exit aborts, and job's code is the one
		// of its stop by SIGTERM (docker compose's e2e test expects 137
		// for one it had to kill).
		{okWhileJobRuns, []string{"--exit-code-from", "job"}, 143},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%d %s", i, strings.Join(tc.args, " ")), func(t *testing.T) {
			t.Parallel()
			p := newProject(t, tc.compose)
			code, _, errs := p.run(tc.args...)
			if code != tc.want {
				t.Errorf("exit code %d, want %d:\n%s", code, tc.want, errs)
			}
			if !strings.Contains(errs, "Aborting on container exit...") {
				t.Errorf("no abort line:\n%s", errs)
			}
			p.assertNothingLeft()
		})
	}
}

// Package slurmtest is what tests need of a Slurm job beyond what sstack
// runs (package slurm): the steps a job has, and a signal to one from
// outside, as an operator would send it. Only tests import it.
package slurmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Step is one job step, as squeue shows it.
type Step struct {
	ID    string // JOB.STEP, e.g. "8.51"
	Name  string // its --job-name, AgentName for agents
	Nodes string // its node list, e.g. "n3"
}

// StepsOf lists the steps of job, but not the extern, batch and interactive
// ones Slurm makes itself. It is empty for a job that has ended.
func StepsOf(ctx context.Context, job string) ([]Step, error) {
	out, err := run(ctx, "squeue", "-h", "-s", "-j", job, "-o", "%i %j %N")
	if err != nil {
		return nil, fmt.Errorf("steps of Slurm job %s: %w; check that slurmctld answers (sinfo)", job, err)
	}
	return parseSteps(out), nil
}

// parseSteps reads `squeue -h -s -o '%i %j %N'`. A name may hold spaces;
// the id and the node list cannot.
func parseSteps(out string) []Step {
	var steps []Step
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		id, rest, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		if i < 0 {
			continue
		}
		_, sub, _ := strings.Cut(id, ".")
		if sub == "extern" || sub == "batch" || sub == "interactive" {
			continue
		}
		steps = append(steps, Step{ID: id, Name: strings.TrimSpace(rest[:i]), Nodes: rest[i+1:]})
	}
	return steps
}

// SignalStep sends signal (a name: "TERM", "USR1", "KILL") to the tasks of
// step (JOB.STEP), which go on unless they die of it. --ctld: without it
// scancel 22.05 signals the step but then fails with "Kill job error on
// job step id 8: Invalid job id specified" (exit 225). Plain `scancel
// J.S` would be SIGKILL at once, no SIGTERM first.
func SignalStep(ctx context.Context, step, signal string) error {
	if _, err := run(ctx, "scancel", "--ctld", "--signal="+signal, step); err != nil {
		return fmt.Errorf("signal %s to Slurm step %s: %w; squeue -s lists the steps", signal, step, err)
	}
	return nil
}

// run is cmd's stdout; its error carries what it said on stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(exit.Stderr))
	}
	return string(out), err
}

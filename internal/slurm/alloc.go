// Package slurm owns every Slurm command line sstack runs; it knows
// nothing of compose.
package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
)

// Allocation is the Slurm job sstack runs inside.
type Allocation struct {
	JobID string
	Nodes []Node // in the order of `scontrol show hostnames`
}

// Node is one node of the allocation.
type Node struct {
	Name     string   // NodeName
	Addr     string   // NodeAddr, else what NodeHostName resolves to, else Name
	Hostname string   // NodeHostName
	Features []string // ActiveFeatures
	// CPUs the job has on the node (SLURM_JOB_CPUS_PER_NODE), 0 unknown.
	CPUs int
}

// Detect returns the allocation environ describes (SLURM_JOB_ID and
// SLURM_JOB_NODELIST, or SLURM_NODELIST), or nil when there is none.
func Detect(ctx context.Context, environ []string) (*Allocation, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	job := env["SLURM_JOB_ID"]
	if job == "" {
		return nil, nil
	}
	list := env["SLURM_JOB_NODELIST"]
	if list == "" {
		list = env["SLURM_NODELIST"]
	}
	if list == "" {
		return nil, fmt.Errorf("SLURM_JOB_ID=%s is set but SLURM_JOB_NODELIST is not: run sstack inside the allocation (salloc, sbatch), or unset SLURM_JOB_ID to run on this host only", job)
	}
	if _, err := exec.LookPath("scontrol"); err != nil {
		return nil, fmt.Errorf("SLURM_JOB_ID=%s is set but scontrol is not on PATH: sstack needs Slurm's commands (scontrol, srun) to spread the stack over the allocation; unset SLURM_JOB_ID to run on this host only", job)
	}
	out, err := scontrol(ctx, "show", "hostnames", list)
	if err != nil {
		return nil, err
	}
	names := strings.Fields(out)
	if len(names) == 0 {
		return nil, fmt.Errorf("scontrol show hostnames %s: no node", list)
	}
	out, err = scontrol(ctx, "show", "node", "-o", strings.Join(names, ","))
	if err != nil {
		return nil, err
	}
	byName := map[string]Node{}
	for _, n := range ParseNodes(out) {
		byName[n.Name] = n
	}
	a := &Allocation{JobID: job}
	for _, name := range names {
		n, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("scontrol show node %s: no such node in Slurm's answer", name)
		}
		a.Nodes = append(a.Nodes, n)
	}
	for i, c := range cpusPerNode(env["SLURM_JOB_CPUS_PER_NODE"], len(a.Nodes)) {
		a.Nodes[i].CPUs = c
	}
	return a, nil
}

// cpusPerNode expands SLURM_JOB_CPUS_PER_NODE ("2(x3),1": 2, 2, 2, 1) to
// n counts; nil when it does not fit.
func cpusPerNode(v string, n int) []int {
	var out []int
	for _, part := range strings.Split(v, ",") {
		count, rep := part, "1"
		if i := strings.Index(part, "(x"); i >= 0 && strings.HasSuffix(part, ")") {
			count, rep = part[:i], part[i+2:len(part)-1]
		}
		c, err1 := strconv.Atoi(count)
		r, err2 := strconv.Atoi(rep)
		if err1 != nil || err2 != nil || c < 0 || r < 1 || r > n {
			return nil
		}
		for range r {
			out = append(out, c)
		}
	}
	if len(out) != n {
		return nil
	}
	return out
}

func scontrol(ctx context.Context, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "scontrol", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scontrol %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// ParseNodes reads `scontrol show node -o`: one node a line, KEY=VALUE
// fields. A value may hold spaces (OS=Linux 6.1 #1 SMP ...): a field runs
// until the next word that starts with KEY=.
func ParseNodes(out string) []Node {
	var nodes []Node
	for _, line := range strings.Split(out, "\n") {
		f := fields(line)
		if f["NodeName"] == "" {
			continue
		}
		n := Node{Name: f["NodeName"], Hostname: f["NodeHostName"], Addr: f["NodeAddr"]}
		if feats := f["ActiveFeatures"]; feats != "" && feats != "(null)" {
			n.Features = strings.Split(feats, ",")
		}
		if n.Addr == "" || n.Addr == n.Name {
			// NodeAddr defaults to the name: what the host name resolves
			// to is where the node is reached.
			if n.Hostname != "" {
				if ips, err := net.LookupHost(n.Hostname); err == nil && len(ips) > 0 {
					n.Addr = ips[0]
				}
			}
			if n.Addr == "" {
				n.Addr = n.Name
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

func fields(line string) map[string]string {
	f := map[string]string{}
	var key string
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok && k != "" && isKey(k) {
			key = k
			f[key] = v
			continue
		}
		if key != "" {
			f[key] += " " + w
		}
	}
	return f
}

// isKey: Slurm's keys are CamelCase words (NodeName, CPUTot, MCS_label).
func isKey(k string) bool {
	if k[0] < 'A' || k[0] > 'Z' {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// AgentStep is the srun command line that runs cmd as one task on node,
// a job step of job that lasts as long as cmd:
//   - --overlap: steps of one allocation otherwise wait for each other's
//     resources ("step creation temporarily disabled");
//   - -c CPUS and --mem=0: the step gets all the job's CPUs and memory on
//     the node (else one CPU, and under task/cgroup every instance in the
//     step would be confined to it; more than the job has is refused:
//     "More processors requested than permitted");
//   - --kill-on-bad-exit=0: one step's end is not the others';
//   - --export=ALL: the token is in the environment;
//   - -Q: srun's own chatter is not the stack's.
//
// No --cpu-bind: where no task plugin binds, srun warns about it.
func AgentStep(srun, job string, node Node, cmd []string) []string {
	args := []string{srun, "--jobid=" + job, "--overlap", "-N1", "-n1", "-w", node.Name,
		"--job-name=sstack-agent", "--export=ALL", "--kill-on-bad-exit=0", "--mem=0", "-Q"}
	if node.CPUs > 1 {
		args = append(args, "-c", strconv.Itoa(node.CPUs))
	}
	return append(args, cmd...)
}

// Step is one job step.
type Step struct {
	ID    string // JOB.STEP
	Name  string
	Nodes string
}

// StepsOf lists the job's steps (not the extern and batch ones).
func StepsOf(ctx context.Context, job string) ([]Step, error) {
	out, err := exec.CommandContext(ctx, "squeue", "-h", "-s", "-j", job, "-o", "%i %j %N").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("squeue -s -j %s: %s", job, bytes.TrimSpace(ee.Stderr))
		}
		return nil, err
	}
	var steps []Step
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || strings.HasSuffix(f[0], ".extern") || strings.HasSuffix(f[0], ".batch") {
			continue
		}
		steps = append(steps, Step{ID: f[0], Name: f[1], Nodes: f[2]})
	}
	return steps, nil
}

// Package slurm owns every Slurm command line sstack runs; it knows
// nothing of compose.
//
// Facts measured on the test cluster (Slurm 22.05.8, task/none,
// proctrack/linuxproc; scripts/slurm-cluster.sh) that the callers rely on:
//
//   - Signals to the srun client of a step: SIGTERM, SIGHUP and SIGQUIT are
//     not forwarded, srun answers "forcing job termination" and the task is
//     SIGKILLed at once (srun exits 137 within 10 ms; a task trapping TERM
//     never sees it), once or twice alike. SIGUSR1 and SIGUSR2 are forwarded
//     to the task as they are and the step goes on. One SIGINT only prints
//     the tasks' status ("one more within 1 sec to abort"); a second within
//     a second sends SIGINT to the task, then kills the step. SIGKILL of srun
//     leaves the step running for 2-3 s, then Slurm kills it. So a graceful
//     stop is the agent's own protocol, SIGUSR1/2 through srun, or
//     `scancel --ctld --signal=TERM JOB.STEP` from outside (slurmtest.SignalStep); never SIGTERM to srun.
//   - An `srun --overlap ... true` step takes 25-29 ms end to end; 30 in
//     parallel (10 a node) finish in 0.28 s, and 30 long ones have all their
//     tasks running 240 ms after the first srun was started.
//   - A task's stdout comes through srun a line at a time, unbuffered: lines
//     written 2 s apart arrive 2 s apart (28 ms, 2023 ms). A partial line
//     is held until its newline (srun -u would pass it on at once).
//   - Step ids are JOB.STEP ("8.51"); `squeue -h -s -j J` lists them and is
//     empty (exit 0) for a job that has ended or never was.
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
	Nodes []Node // in the order of `scontrol show hostnames $SLURM_JOB_NODELIST`
}

// Node is one node of the allocation.
type Node struct {
	Name     string   // NodeName
	Addr     string   // NodeAddr, resolved to an IP when it is a name, else Name
	Hostname string   // NodeHostName
	Features []string // ActiveFeatures; nil for "(null)"
	CPUs     int      // the job's CPUs on the node (SLURM_JOB_CPUS_PER_NODE); 0 when unknown
}

// Detect returns the allocation environ describes (SLURM_JOB_ID and
// SLURM_JOB_NODELIST, else SLURM_NODELIST), or nil, nil when environ has no
// SLURM_JOB_ID. It runs scontrol to expand the node list and read the nodes.
//
// In a step started by `srun --jobid` from outside the allocation,
// SLURM_JOB_NODELIST is the step's nodes, not the job's (measured): call
// Detect where the allocation was made (salloc's shell, the batch script).
func Detect(ctx context.Context, environ []string) (*Allocation, error) {
	return detect(ctx, environ, runScontrol, lookupIP)
}

// runFunc runs scontrol with args and returns its stdout.
type runFunc func(ctx context.Context, args ...string) (string, error)

// lookupFunc resolves a host name to its addresses.
type lookupFunc func(ctx context.Context, host string) ([]string, error)

func detect(ctx context.Context, environ []string, scontrol runFunc, lookup lookupFunc) (*Allocation, error) {
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
		return nil, fmt.Errorf("SLURM_JOB_ID=%s is set but neither SLURM_JOB_NODELIST nor SLURM_NODELIST is: run sstack inside the allocation (salloc, sbatch), or unset SLURM_JOB_ID to run on this host only", job)
	}
	out, err := scontrol(ctx, "show", "hostnames", list)
	if err != nil {
		return nil, detectErr(job, err)
	}
	names := strings.Fields(out)
	if len(names) == 0 {
		return nil, fmt.Errorf("SLURM_JOB_ID=%s: scontrol show hostnames %s names no node: check SLURM_JOB_NODELIST", job, list)
	}
	out, err = scontrol(ctx, "show", "node", "-o", strings.Join(names, ","))
	if err != nil {
		return nil, detectErr(job, err)
	}
	byName := map[string]Node{}
	for _, n := range parseNodes(out) {
		byName[n.Name] = n
	}
	cpus := parseCPUsPerNode(env["SLURM_JOB_CPUS_PER_NODE"], len(names))
	a := &Allocation{JobID: job}
	for i, name := range names {
		n, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("SLURM_JOB_ID=%s: node %s of SLURM_JOB_NODELIST=%s is not in the answer of scontrol show node: check that the job belongs to this cluster (SLURM_CONF)", job, name, list)
		}
		n.Addr = resolve(ctx, n, lookup)
		if cpus != nil {
			n.CPUs = cpus[i]
		}
		a.Nodes = append(a.Nodes, n)
	}
	return a, nil
}

func detectErr(job string, err error) error {
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("SLURM_JOB_ID=%s is set but scontrol is not on PATH: add Slurm's commands (scontrol, srun) to PATH to spread the stack over the allocation, or unset SLURM_JOB_ID to run on this host only: %w", job, err)
	}
	return fmt.Errorf("SLURM_JOB_ID=%s: %w; check that slurmctld answers (sinfo) and that the job is still running (squeue -j %s)", job, err, job)
}

func runScontrol(ctx context.Context, args ...string) (string, error) {
	path, err := exec.LookPath("scontrol")
	if err != nil {
		return "", err
	}
	return run(ctx, path, args...)
}

// run returns the command's stdout; its error holds the command line and
// what it printed on stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func lookupIP(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}

// resolve is the node's address as an IP where one can be had: services on
// other nodes are given it in hosts files and agents listen on it.
func resolve(ctx context.Context, n Node, lookup lookupFunc) string {
	if net.ParseIP(n.Addr) != nil {
		return n.Addr
	}
	for _, host := range []string{n.Addr, n.Hostname} {
		if host == "" {
			continue
		}
		if ips, err := lookup(ctx, host); err == nil {
			if ip := pickIP(ips); ip != "" {
				return ip
			}
		}
	}
	if n.Addr != "" {
		return n.Addr
	}
	return n.Name
}

// pickIP prefers IPv4: hosts files and --listen are simpler with it.
func pickIP(ips []string) string {
	first := ""
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			continue
		}
		if ip.To4() != nil {
			return s
		}
		if first == "" {
			first = s
		}
	}
	return first
}

// parseCPUsPerNode expands SLURM_JOB_CPUS_PER_NODE ("2(x3),1" is 2, 2, 2, 1)
// to n counts; nil when v is empty, malformed or not n long.
func parseCPUsPerNode(v string, n int) []int {
	if v == "" {
		return nil
	}
	var out []int
	for _, part := range strings.Split(v, ",") {
		count, rep := part, "1"
		if i := strings.Index(part, "(x"); i >= 0 && strings.HasSuffix(part, ")") {
			count, rep = part[:i], part[i+2:len(part)-1]
		}
		c, err1 := strconv.Atoi(count)
		r, err2 := strconv.Atoi(rep)
		if err1 != nil || err2 != nil || c < 0 || r < 1 || len(out)+r > n {
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

// parseNodes reads `scontrol show node -o`: a node a line, Key=Value fields
// apart by spaces. Addr is NodeAddr as printed (Detect resolves it); a node
// whose NodeAddr is missing gets its NodeHostName, else its name.
func parseNodes(out string) []Node {
	var nodes []Node
	for _, line := range strings.Split(out, "\n") {
		f := nodeFields(line)
		if f["NodeName"] == "" {
			continue
		}
		n := Node{Name: f["NodeName"], Addr: f["NodeAddr"], Hostname: f["NodeHostName"]}
		if n.Addr == "" {
			n.Addr = n.Hostname
		}
		if n.Addr == "" {
			n.Addr = n.Name
		}
		if feats := f["ActiveFeatures"]; feats != "" && feats != "(null)" {
			n.Features = strings.Split(feats, ",")
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// nodeKeys are the keys Slurm 22.05 prints for a node (the format strings
// of src/api/node_info.c, read from libslurmfull.so) and a few of later
// releases.
var nodeKeys = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`NodeName Arch CoresPerSocket CPUAlloc CPUEfctv CPUTot CPULoad
		AvailableFeatures ActiveFeatures Gres GresDrain GresUsed NodeAddr NodeHostName BcastAddr
		Port Version OS RealMemory AllocMem FreeMem Sockets Boards CoreSpecCount CPUSpecList
		MemSpecLimit State ThreadsPerCore TmpDisk Weight Owner MCS_label NextState Partitions
		BootTime SlurmdStartTime LastBusyTime ResumeAfterTime CfgTRES AllocTRES CapWatts
		CurrentWatts AveWatts ExtSensorsJoules ExtSensorsWatts ExtSensorsTemp Power Reason
		Comment Extra InstanceId InstanceType Topology`) {
		nodeKeys[k] = true
	}
}

// freeText fields hold what an admin or the OS wrote, spaces and "x=y"
// words included; only a known key ends them.
var freeText = map[string]bool{"OS": true, "Reason": true, "Comment": true, "Extra": true}

func nodeFields(line string) map[string]string {
	f := map[string]string{}
	key := ""
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok && (nodeKeys[k] || !freeText[key] && isKey(k)) {
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

// isKey: a key of a release newer than nodeKeys (CamelCase, MCS_label).
func isKey(k string) bool {
	if k == "" || k[0] < 'A' || k[0] > 'Z' {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// AgentName is the job name of the agent steps, as squeue shows them.
const AgentName = "sstack-agent"

// NoBindingWarning is what srun prints on stderr for --cpu-bind=none where
// no task plugin binds (TaskPlugin=task/none, as on the test cluster), at
// every launch, -Q or not. It is harmless; a log may drop it.
const NoBindingWarning = "srun: cluster configuration lacks support for cpu binding"

// AgentStep is the srun command line that runs cmd (an absolute path and
// its arguments) as one task on node, a job step of job that overlaps the
// others. What each flag is for, as measured on the test cluster:
//
//   - --overlap: without it a second step waits for the first to end
//     ("step creation temporarily disabled, retrying (Requested nodes are
//     busy)").
//   - --whole and --mem=0: the step gets all the CPUs and memory the job has
//     on the node, so that under task/cgroup the instances in it are not
//     held to one CPU. -c N works up to the job's CPUs on the node and fails
//     above ("More processors requested than permitted"); --whole needs no
//     count. --exclusive is refused with --overlap.
//   - --cpu-bind=none: task/affinity would pin the one task to one CPU. It
//     costs NoBindingWarning on stderr where nothing binds.
//   - --export=ALL: the agent's token is in the environment.
//   - -Q: drops srun's info lines ("forcing job termination", "Job step
//     aborted: Waiting up to 32 seconds", "step creation temporarily
//     disabled"); errors stay ("srun: error: n3: task 0: Exited with exit
//     code 3", slurmstepd's "*** STEP 8.9 ON n3 CANCELLED ***").
//
// No --kill-on-bad-exit: it kills the other tasks of the same step, and
// the step has one. No -u: whole lines are what the log wants.
func AgentStep(srun string, job string, node Node, cmd []string) []string {
	args := []string{srun, "--jobid=" + job, "--overlap", "--whole", "--mem=0", "--cpu-bind=none",
		"-N1", "-n1", "-w", node.Name, "--job-name=" + AgentName, "--export=ALL", "-Q"}
	return append(args, cmd...)
}

// ExecStep is the srun command line of `sstack exec` into a replica on
// node: one task in a step of its own (named sstack-exec), with a
// pseudo-terminal when tty. srun passes its stdin to the task.
func ExecStep(srun, job, node string, tty bool, cmd []string) []string {
	args := []string{srun, "--jobid=" + job, "--overlap", "-N1", "-n1", "-w", node, "--job-name=sstack-exec", "--export=ALL", "-Q"}
	if tty {
		args = append(args, "--pty")
	}
	return append(args, cmd...)
}

package slurm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sstack/internal/slurm/slurmtest"
	"strings"
	"testing"
	"time"
)

// Captured on the test cluster: `scontrol show node -o n1,n2,n3`, then n3
// again after `scontrol update NodeName=n3 Comment="maint window Foo=bar,
// see ticket 12" Extra="rack=4 row 2"` (reverted at once).
const capturedNodes = `NodeName=n1 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 CPUTot=2 CPULoad=0.11 AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.11 NodeHostName=vm Port=17001 Version=22.05.8 OS=Linux 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=23814 Sockets=2 Boards=1 State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=main  BootTime=2026-12-02T11:21:16 SlurmdStartTime=2026-12-02T12:14:22 LastBusyTime=2026-12-02T12:40:44 CfgTRES=cpu=2,mem=4000M,billing=2 AllocTRES=cpu=1 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
NodeName=n2 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 CPUTot=2 CPULoad=0.11 AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.12 NodeHostName=vm Port=17002 Version=22.05.8 OS=Linux 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=23814 Sockets=2 Boards=1 State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=main  BootTime=2026-12-02T11:21:16 SlurmdStartTime=2026-12-02T12:14:22 LastBusyTime=2026-12-02T12:40:44 CfgTRES=cpu=2,mem=4000M,billing=2 AllocTRES=cpu=1 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
NodeName=n3 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 CPUTot=2 CPULoad=0.11 AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.13 NodeHostName=vm Port=17003 Version=22.05.8 OS=Linux 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=23814 Sockets=2 Boards=1 State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=main  BootTime=2026-12-02T11:21:16 SlurmdStartTime=2026-12-02T12:14:22 LastBusyTime=2026-12-02T12:40:44 CfgTRES=cpu=2,mem=4000M,billing=2 AllocTRES=cpu=1 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
`

const capturedComment = `NodeName=n3 Arch=x86_64 CoresPerSocket=1  CPUAlloc=2 CPUEfctv=2 CPUTot=2 CPULoad=0.11 AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.13 NodeHostName=vm Port=17003 Version=22.05.8 OS=Linux 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=23814 Sockets=2 Boards=1 State=ALLOCATED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=main  BootTime=2026-12-02T11:21:16 SlurmdStartTime=2026-12-02T12:14:22 LastBusyTime=2026-12-02T12:40:44 CfgTRES=cpu=2,mem=4000M,billing=2 AllocTRES=cpu=2 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s Comment=maint window Foo=bar, see ticket 12 Extra=rack=4 row 2`

// Not captured (changing them here would touch other people's jobs): a
// drained node with features and a Reason in 22.05's "Reason=%s [%s@%s]",
// and a node whose NodeAddr is its name.
const (
	editedDrained = `NodeName=gpu01 Arch=x86_64 CoresPerSocket=16 CPUAlloc=0 CPUEfctv=32 CPUTot=32 CPULoad=0.01 AvailableFeatures=a100,ib ActiveFeatures=a100,ib Gres=gpu:a100:4 NodeAddr=10.1.0.1 NodeHostName=gpu01 Version=22.05.8 OS=Linux 5.14.0-362.el9.x86_64 #1 SMP PREEMPT_DYNAMIC Wed Nov 8 12:00:00 UTC 2023 RealMemory=512000 AllocMem=0 FreeMem=500000 Sockets=2 Boards=1 State=IDLE+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=gpu BootTime=2026-12-01T08:00:00 SlurmdStartTime=2026-12-01T08:01:00 LastBusyTime=2026-12-02T10:00:00 CfgTRES=cpu=32,mem=500G,billing=32,gres/gpu=4 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s Reason=NHC: check_fs_mount: /scratch not mounted, Node=gpu01 [root@2026-12-02T11:00:00]`
	editedByName  = `NodeName=localhost NodeAddr=localhost NodeHostName=localhost OS=Linux 6.1 #1 SMP State=IDLE`
)

func TestParseNodes(t *testing.T) {
	for _, c := range []struct {
		name string
		out  string
		want []Node
	}{
		{"captured", capturedNodes, []Node{
			{Name: "n1", Addr: "127.0.0.11", Hostname: "vm"},
			{Name: "n2", Addr: "127.0.0.12", Hostname: "vm"},
			{Name: "n3", Addr: "127.0.0.13", Hostname: "vm"},
		}},
		{"free text with key=value words", capturedComment, []Node{{Name: "n3", Addr: "127.0.0.13", Hostname: "vm"}}},
		{"drained, features", editedDrained, []Node{{Name: "gpu01", Addr: "10.1.0.1", Hostname: "gpu01", Features: []string{"a100", "ib"}}}},
		{"address by name", editedByName, []Node{{Name: "localhost", Addr: "localhost", Hostname: "localhost"}}},
		{"no NodeAddr", "NodeName=c1 NodeHostName=h1", []Node{{Name: "c1", Addr: "h1", Hostname: "h1"}}},
		{"empty", "\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := parseNodes(c.out)
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestNodeFields(t *testing.T) {
	for _, c := range []struct{ line, key, want string }{
		{capturedNodes, "OS", "Linux 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0"},
		{capturedNodes, "CfgTRES", "cpu=2,mem=4000M,billing=2"},
		{capturedNodes, "RealMemory", "4000"},
		{capturedComment, "Comment", "maint window Foo=bar, see ticket 12"},
		{capturedComment, "Extra", "rack=4 row 2"},
		{editedDrained, "Reason", "NHC: check_fs_mount: /scratch not mounted, Node=gpu01 [root@2026-12-02T11:00:00]"},
		{editedDrained, "OS", "Linux 5.14.0-362.el9.x86_64 #1 SMP PREEMPT_DYNAMIC Wed Nov 8 12:00:00 UTC 2023"},
		{editedDrained, "AllocTRES", ""},
		{"NodeName=x FutureKey=1 2 NextKey=3", "FutureKey", "1 2"},
	} {
		line, _, _ := strings.Cut(c.line, "\n")
		if got := nodeFields(line)[c.key]; got != c.want {
			t.Errorf("%s = %q, want %q", c.key, got, c.want)
		}
	}
}

func TestParseCPUsPerNode(t *testing.T) {
	for _, c := range []struct {
		v    string
		n    int
		want []int
	}{
		{"2(x3)", 3, []int{2, 2, 2}},
		{"4,2", 2, []int{4, 2}},
		{"4,2(x2),1", 4, []int{4, 2, 2, 1}},
		{"1", 1, []int{1}},
		{"2(x3)", 2, nil},
		{"2(x3)", 4, nil},
		{"", 1, nil},
		{"x", 1, nil},
		{"2(x0)", 1, nil},
	} {
		if got := parseCPUsPerNode(c.v, c.n); !slices.Equal(got, c.want) {
			t.Errorf("parseCPUsPerNode(%q, %d) = %v, want %v", c.v, c.n, got, c.want)
		}
	}
}

// fakeScontrol answers like scontrol on the test cluster.
func fakeScontrol(_ context.Context, args ...string) (string, error) {
	switch strings.Join(args[:2], " ") {
	case "show hostnames":
		if args[2] == "n[3,1]" {
			return "n3\nn1\n", nil
		}
		return "n1\nn2\nn3\n", nil
	case "show node":
		return capturedNodes, nil
	}
	return "", errors.New("unexpected scontrol " + strings.Join(args, " "))
}

func noLookup(context.Context, string) ([]string, error) {
	return nil, errors.New("no DNS in this test")
}

func TestDetect(t *testing.T) {
	ctx := context.Background()
	a, err := detect(ctx, []string{"SLURM_JOB_ID=8", "SLURM_NODELIST=n[3,1]", "SLURM_JOB_CPUS_PER_NODE=4,2"}, fakeScontrol, noLookup)
	if err != nil {
		t.Fatal(err)
	}
	want := &Allocation{JobID: "8", Nodes: []Node{
		{Name: "n3", Addr: "127.0.0.13", Hostname: "vm", CPUs: 4},
		{Name: "n1", Addr: "127.0.0.11", Hostname: "vm", CPUs: 2},
	}}
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", want) {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}

	a, err = detect(ctx, []string{"HOME=/root"}, fakeScontrol, noLookup)
	if a != nil || err != nil {
		t.Errorf("outside an allocation: %v, %v", a, err)
	}
	for _, c := range []struct {
		environ []string
		run     runFunc
		want    string
	}{
		{[]string{"SLURM_JOB_ID=3"}, fakeScontrol, "neither SLURM_JOB_NODELIST nor SLURM_NODELIST"},
		{[]string{"SLURM_JOB_ID=3", "SLURM_JOB_NODELIST=n9"}, func(context.Context, ...string) (string, error) {
			return "", fmt.Errorf("exec: %w", exec.ErrNotFound)
		}, "SLURM_JOB_ID=3 is set but scontrol is not on PATH"},
		{[]string{"SLURM_JOB_ID=3", "SLURM_JOB_NODELIST=n[1-4]"}, func(_ context.Context, args ...string) (string, error) {
			if args[1] == "hostnames" {
				return "n1\nn4\n", nil
			}
			return capturedNodes, nil
		}, "node n4 of SLURM_JOB_NODELIST=n[1-4] is not in the answer"},
	} {
		if _, err := detect(ctx, c.environ, c.run, noLookup); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.environ, err, c.want)
		}
	}
}

func TestResolve(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "vm":
			return []string{"::1", "127.0.0.1"}, nil
		case "v6":
			return []string{"fe80::1"}, nil
		}
		return nil, errors.New("no such host")
	}
	for _, c := range []struct {
		n    Node
		want string
	}{
		{Node{Name: "n1", Addr: "127.0.0.11", Hostname: "vm"}, "127.0.0.11"},
		{Node{Name: "n1", Addr: "vm", Hostname: "other"}, "127.0.0.1"},
		{Node{Name: "n1", Addr: "n1", Hostname: "vm"}, "127.0.0.1"},
		{Node{Name: "n1", Addr: "v6"}, "fe80::1"},
		{Node{Name: "n1", Addr: "n1", Hostname: "nowhere"}, "n1"},
		{Node{Name: "n1"}, "n1"},
	} {
		if got := resolve(context.Background(), c.n, lookup); got != c.want {
			t.Errorf("%+v: %s, want %s", c.n, got, c.want)
		}
	}
}

func TestAgentStep(t *testing.T) {
	got := AgentStep("/usr/bin/srun", "7", Node{Name: "n2", CPUs: 4}, []string{"/bin/sstack", "agent", "--listen", "127.0.0.12:0"})
	want := []string{"/usr/bin/srun", "--jobid=7", "--overlap", "--whole", "--mem=0", "--cpu-bind=none",
		"-N1", "-n1", "-w", "n2", "--job-name=sstack-agent", "--export=ALL", "-Q",
		"/bin/sstack", "agent", "--listen", "127.0.0.12:0"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// requireCluster skips without the test cluster of scripts/slurm-cluster.sh,
// except in CI, where its absence is a failure.
func requireCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Slurm test cluster: not with -short")
	}
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if _, err := exec.LookPath("sinfo"); err != nil {
		fail("no Slurm (sinfo is not on PATH): scripts/slurm-cluster.sh up")
		return
	}
	out, err := exec.Command("sinfo", "-h", "-N", "-o", "%N %t").CombinedOutput()
	up := 0
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && slices.Contains([]string{"n1", "n2", "n3"}, f[0]) &&
			!strings.ContainsAny(f[1], "*~#!%") && !slices.Contains([]string{"down", "drain", "drng", "fail", "unk"}, f[1]) {
			up++
		}
	}
	if err != nil || up != 3 {
		fail("the Slurm test cluster is not up (scripts/slurm-cluster.sh up): sinfo: %v %s", err, out)
	}
}

var grantedRE = regexp.MustCompile(`Granted job allocation (\d+)`)

// allocate makes a job of the three nodes, cancelled when the test ends.
func allocate(t *testing.T) string {
	t.Helper()
	requireCluster(t)
	// --immediate: salloc gives up, and cancels the job, rather than wait.
	out, err := exec.Command("salloc", "-N3", "--no-shell", "--immediate=60", "-J", "sstack-test").CombinedOutput()
	m := grantedRE.FindSubmatch(out)
	if m != nil {
		job := string(m[1])
		t.Cleanup(func() {
			if out, err := exec.Command("scancel", job).CombinedOutput(); err != nil {
				t.Errorf("scancel %s: %v %s", job, err, out)
			}
		})
		return job
	}
	t.Fatalf("salloc: %v: %s", err, out)
	return ""
}

func detectJob(t *testing.T, job string) *Allocation {
	t.Helper()
	a, err := Detect(context.Background(), []string{"SLURM_JOB_ID=" + job, "SLURM_JOB_NODELIST=n[1-3]", "SLURM_JOB_CPUS_PER_NODE=1(x3)"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// agentStep allocates a job of the three nodes and makes the command of an
// agent step on its node n (from 0) that runs script with /bin/sh, killed
// after a minute at the most; it returns the job, the context that bounds
// the step, and the command, not started.
func agentStep(t *testing.T, n int, script string) (string, context.Context, *exec.Cmd) {
	t.Helper()
	job := allocate(t)
	a := detectJob(t, job)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	argv := AgentStep("srun", job, a.Nodes[n], []string{"/bin/sh", "-c", script})
	return job, ctx, exec.CommandContext(ctx, argv[0], argv[1:]...)
}

func TestDetectOnTheCluster(t *testing.T) {
	job := allocate(t)
	a := detectJob(t, job)
	want := &Allocation{JobID: job, Nodes: []Node{
		{Name: "n1", Addr: "127.0.0.11", Hostname: "vm", CPUs: 1},
		{Name: "n2", Addr: "127.0.0.12", Hostname: "vm", CPUs: 1},
		{Name: "n3", Addr: "127.0.0.13", Hostname: "vm", CPUs: 1},
	}}
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", want) {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}
}

func TestAgentStepOnTheCluster(t *testing.T) {
	job, ctx, cmd := agentStep(t, 1, "echo $SLURMD_NODENAME")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != "n2\n" {
		t.Errorf("the step printed %q (%v), want n2; srun's stderr: %s", out, err, stderr.String())
	}
	if s := strings.TrimSpace(strings.ReplaceAll(stderr.String(), NoBindingWarning, "")); s != "" {
		t.Errorf("srun's stderr: %q", s)
	}
	if steps, err := slurmtest.StepsOf(ctx, job); err != nil || len(steps) != 0 {
		t.Errorf("steps left: %v %v", steps, err)
	}
}

// A step is found by its name and stopped from outside with SIGTERM, which
// its task sees and survives long enough to say so.
func TestStepsOfAndSignalStep(t *testing.T) {
	job, ctx, cmd := agentStep(t, 2, `trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the step said %q before anything else", lines.Text())
	}
	steps, err := slurmtest.StepsOf(ctx, job)
	if err != nil || len(steps) != 1 || steps[0].Name != AgentName || steps[0].Nodes != "n3" || !strings.HasPrefix(steps[0].ID, job+".") {
		t.Fatalf("steps: %+v %v", steps, err)
	}
	if err := slurmtest.SignalStep(ctx, steps[0].ID, "TERM"); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() || lines.Text() != "got TERM" {
		t.Errorf("after SIGTERM the task said %q", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("srun: %v, want exit 0 as the task's", err)
	}
	if steps, err := slurmtest.StepsOf(ctx, job); err != nil || len(steps) != 0 {
		t.Errorf("steps left: %+v %v", steps, err)
	}
}

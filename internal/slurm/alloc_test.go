package slurm

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Captured from the test cluster (scontrol show node -o n1,n2).
const nodesOut = `NodeName=n1 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 CPUTot=2 CPULoad=0.07 AvailableFeatures=gpu,big ActiveFeatures=gpu,big Gres=(null) NodeAddr=127.0.0.11 NodeHostName=vm Port=17001 Version=22.05.8 OS=Linux 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=23925 Sockets=2 Boards=1 State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=main  BootTime=2026-12-02T11:21:15 SlurmdStartTime=2026-12-02T12:14:22 LastBusyTime=2026-12-02T12:14:22 CfgTRES=cpu=2,mem=4000M,billing=2 AllocTRES=cpu=1 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
NodeName=n2 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 CPUTot=2 CPULoad=0.07 AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.12 NodeHostName=vm Port=17002 Version=22.05.8 OS=Linux 6.18.44-fc-v1045 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=4000 AllocMem=0 FreeMem=23925 Sockets=2 Boards=1 State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=main  BootTime=2026-12-02T11:21:15 SlurmdStartTime=2026-12-02T12:14:22 LastBusyTime=2026-12-02T12:14:22 CfgTRES=cpu=2,mem=4000M,billing=2 AllocTRES=cpu=1 CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
NodeName=c7 NodeAddr=c7 NodeHostName=localhost OS=Linux 6.1 #1 SMP State=IDLE
`

func TestParseNodes(t *testing.T) {
	nodes := ParseNodes(nodesOut)
	if len(nodes) != 3 {
		t.Fatalf("%d nodes: %+v", len(nodes), nodes)
	}
	n1, n2, c7 := nodes[0], nodes[1], nodes[2]
	if n1.Name != "n1" || n1.Addr != "127.0.0.11" || n1.Hostname != "vm" || !slices.Equal(n1.Features, []string{"gpu", "big"}) {
		t.Errorf("n1: %+v", n1)
	}
	if n2.Addr != "127.0.0.12" || n2.Features != nil {
		t.Errorf("n2: %+v", n2)
	}
	// NodeAddr defaulting to the name: what the host name resolves to.
	if c7.Addr != "127.0.0.1" && c7.Addr != "::1" {
		t.Errorf("c7: %+v", c7)
	}
}

func TestCPUsPerNode(t *testing.T) {
	for _, c := range []struct {
		v    string
		n    int
		want []int
	}{
		{"2(x3)", 3, []int{2, 2, 2}},
		{"4,2(x2),1", 4, []int{4, 2, 2, 1}},
		{"1", 1, []int{1}},
		{"2(x3)", 2, nil},
		{"", 1, nil},
		{"x", 1, nil},
	} {
		if got := cpusPerNode(c.v, c.n); !slices.Equal(got, c.want) {
			t.Errorf("cpusPerNode(%q, %d) = %v, want %v", c.v, c.n, got, c.want)
		}
	}
}

func TestAgentStep(t *testing.T) {
	got := strings.Join(AgentStep("srun", "7", Node{Name: "n2", CPUs: 4}, []string{"/bin/sstack", "agent"}), " ")
	for _, want := range []string{"--jobid=7", "--overlap", "-w n2", "-N1 -n1", "-c 4", "--mem=0", "--export=ALL"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s: no %s", got, want)
		}
	}
	if !strings.HasSuffix(got, " /bin/sstack agent") {
		t.Errorf("%s: the command is not last", got)
	}
	if strings.Contains(strings.Join(AgentStep("srun", "7", Node{Name: "n2", CPUs: 1}, nil), " "), "-c") {
		t.Error("-c 1 is the default and needs no flag")
	}
}

func TestDetectOutsideAnAllocation(t *testing.T) {
	a, err := Detect(context.Background(), []string{"HOME=/root"})
	if a != nil || err != nil {
		t.Errorf("%v %v", a, err)
	}
	_, err = Detect(context.Background(), []string{"SLURM_JOB_ID=3"})
	if err == nil || !strings.Contains(err.Error(), "SLURM_JOB_NODELIST") {
		t.Errorf("%v", err)
	}
}

// On the real cluster (scripts/slurm-cluster.sh): the allocation's nodes
// and addresses, and a step of AgentStep lands on its node.
func TestDetectAndAgentStepOnTheCluster(t *testing.T) {
	if _, err := exec.LookPath("salloc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no Slurm: .ci/run starts scripts/slurm-cluster.sh")
		}
		t.Skip("no Slurm test cluster (scripts/slurm-cluster.sh up)")
	}
	out, err := exec.Command("salloc", "-N3", "--no-shell", "-J", "sstack-slurm-test").CombinedOutput()
	m := regexp.MustCompile(`Granted job allocation (\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("salloc: %v %s", err, out)
	}
	job := string(m[1])
	t.Cleanup(func() { _ = exec.Command("scancel", job).Run() })
	ctx := context.Background()
	a, err := Detect(ctx, []string{"SLURM_JOB_ID=" + job, "SLURM_JOB_NODELIST=n[1-3]", "SLURM_JOB_CPUS_PER_NODE=1(x3)"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range a.Nodes {
		got = append(got, n.Name+"@"+n.Addr)
	}
	if want := []string{"n1@127.0.0.11", "n2@127.0.0.12", "n3@127.0.0.13"}; !slices.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	argv := AgentStep("srun", job, a.Nodes[1], []string{"/bin/sh", "-c", "echo $SLURMD_NODENAME"})
	res, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(res)) != "n2" {
		t.Errorf("step on n2 printed %q (%v)", res, err)
	}
	steps, err := StepsOf(ctx, job)
	if err != nil || len(steps) != 0 {
		t.Errorf("steps after the step ended: %v %v", steps, err)
	}
}

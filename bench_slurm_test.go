package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"sstack/internal/slurm"
)

// BenchmarkSlurmUp3x10 times a stack of 3 services of 10 replicas each,
// one service per node of a 3-node allocation of the test cluster
// (scripts/slurm-cluster.sh): from launching `sstack up` until all 30
// processes print "ready", and from SIGINT until sstack has exited with
// nothing left. The floor, in the same run, is what one would launch by
// hand: 30 parallel job steps (`srun --overlap -w NODE`, the same flags
// as sstack's agent steps), each starting its instance and running the same
// command in it until it prints "ready"; then 30 parallel `instance stop`
// and the steps' end.
func BenchmarkSlurmUp3x10(b *testing.B) {
	if _, err := exec.LookPath("salloc"); err != nil {
		b.Skip("no Slurm test cluster (scripts/slurm-cluster.sh up)")
	}
	e := newBenchEnv(b)
	job := allocate(b, "sstack-bench")
	e.env = []string{"SLURM_JOB_ID=" + job, "SLURM_JOB_NODELIST=n[1-3]"}
	nodes := []string{"n1", "n2", "n3"}
	var compose strings.Builder
	compose.WriteString("services:\n")
	for i, n := range nodes {
		fmt.Fprintf(&compose, "  svc%d:\n    image: %s\n    command: [\"sh\", \"-c\", %q]\n    deploy:\n      replicas: 10\n      placement:\n        constraints: [\"node.hostname == %s\"]\n",
			i, e.image, strings.ReplaceAll(benchCmd, "$", "$$"), n)
	}
	composeFile := e.writeFile("docker-compose.yml", compose.String())
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")

	var floor, sstack upDownSeries
	b.ResetTimer()
	alternate(b,
		func() { floor.add(e.floorSlurm(job, hosts, nodes, 10)) },
		func() { sstack.add(e.sstackUp(composeFile, 30)) },
	)
	b.StopTimer()
	reportUpDownVsFloor(b, floor, sstack)
}

// floorSlurm launches perNode replicas on each node by hand, each in its
// own step that starts the instance and runs benchCmd in it (floorRun).
func (e *benchEnv) floorSlurm(job, hosts string, nodes []string, perNode int) (up, down time.Duration) {
	project := benchName("benchslurmfloor")
	var names []string
	nodeOf := map[string]string{}
	for _, node := range nodes {
		for r := 1; r <= perNode; r++ {
			name := fmt.Sprintf("%s.%s.%d", project, node, r)
			names = append(names, name)
			nodeOf[name] = node
		}
	}
	return e.floorRun(project, names, func(name string) (*exec.Cmd, error) {
		script := fmt.Sprintf(`%s %s >/dev/null && exec %s %s`,
			e.apptBin, strings.Join(quoteAll(e.startArgs(name, hosts)), " "), e.apptBin, strings.Join(quoteAll(execArgs(name, "sh", "-c", benchCmd)), " "))
		argv := slurm.AgentStep("srun", job, slurm.Node{Name: nodeOf[name]}, []string{"/bin/sh", "-c", script})
		return exec.Command(argv[0], argv[1:]...), nil
	})
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

package main

// Across the nodes of a Slurm allocation, on the real three-node cluster of
// scripts/slurm-cluster.sh (n1..n3 on 127.0.0.11..13, all on this host): a
// replica's node is observable from the address it is reached at and from
// the SLURMD_NODENAME of the agent step its process runs under.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sstack/internal/slurm/slurmtest"
	"sstack/internal/testimg"
)

var nodeAddr = map[string]string{"n1": "127.0.0.11", "n2": "127.0.0.12", "n3": "127.0.0.13"}

// Compose fixtures.

// placement is the deploy.placement key of a service that constraint
// places, in YAML's flow style.
func placement(constraint string) string {
	return `placement: {constraints: ["` + constraint + `"]}`
}

// onNode places a service on node.
func onNode(node string) string { return "deploy: {" + placement("node.hostname == "+node) + "}" }

// onePerNode spreads a service's replicas one to a node.
const onePerNode = "deploy: {placement: {max_replicas_per_node: 1}}"

// serverOnN2 serves the page hello-from-n2 on n2, at n2's address only.
var serverOnN2 = service("server", `["sh", "-c", "mkdir -p /tmp/www && echo hello-from-n2 > /tmp/www/index.html && exec httpd -f -p 127.0.0.12:8080 -h /tmp/www"]`, onNode("n2"))

// requireSlurm skips without the test cluster, except in CI, where .ci/run
// has started it and its absence is a failure.
func requireSlurm(t *testing.T) {
	t.Helper()
	out, err := exec.Command("sinfo", "-h", "-N", "-o", "%N %t").Output()
	if err == nil && strings.Count(string(out), "n") >= 3 && !strings.Contains(string(out), "down") {
		return
	}
	msg := "no Slurm test cluster (scripts/slurm-cluster.sh up): " + strings.TrimSpace(string(out))
	if err != nil {
		msg += " " + err.Error()
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

var grantedRE = regexp.MustCompile(`Granted job allocation (\d+)`)

// allocate makes an allocation of the three nodes, as salloc does, and
// cancels it at the end of the test (after cleanups registered later).
func allocate(tb testing.TB, name string) string {
	tb.Helper()
	out, err := exec.Command("salloc", "-N3", "--no-shell", "-J", name).CombinedOutput()
	m := grantedRE.FindSubmatch(out)
	if err != nil || m == nil {
		tb.Fatalf("salloc: %v: %s", err, out)
	}
	job := string(m[1])
	tb.Cleanup(func() { _ = exec.Command("scancel", job).Run() })
	return job
}

// inAllocation gives the project an allocation of the three nodes: up
// sees SLURM_JOB_ID and SLURM_JOB_NODELIST. The job is cancelled at the
// end of the test, after the project's own cleanup.
func (p *project) inAllocation() string {
	p.t.Helper()
	requireSlurm(p.t)
	p.job = allocate(p.t, "sstack-test-"+p.name)
	p.env = append(p.env, "SLURM_JOB_ID="+p.job, "SLURM_JOB_NODELIST=n[1-3]")
	return p.job
}

// steps are the job's steps.
func steps(t *testing.T, job string) []slurmtest.Step {
	t.Helper()
	s, err := slurmtest.StepsOf(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// nodeOfPid is the SLURMD_NODENAME of the agent step pid runs under (its
// nearest ancestor that is `sstack agent`), "" if none.
func nodeOfPid(pid int) string {
	for pid > 1 {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if strings.Contains(strings.ReplaceAll(string(cmd), "\x00", " "), " agent --runtime ") {
			env, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			for _, kv := range strings.Split(string(env), "\x00") {
				if v, ok := strings.CutPrefix(kv, "SLURMD_NODENAME="); ok {
					return v
				}
			}
			return ""
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return ""
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		pid, _ = strconv.Atoi(f[1])
	}
	return ""
}

// agents are the `sstack agent` processes of this test's binary.
func agents() []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, _ := os.ReadFile(f)
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.HasPrefix(cmd, sstackBin+" agent ") {
			found = append(found, f)
		}
	}
	return found
}

// assertNothingLeftInJob: no step of the job and no agent are left on any
// node (all on this host here); project.assertNothingLeft checks the
// project's instances and processes.
func assertNothingLeftInJob(t *testing.T, job string) {
	t.Helper()
	eventually(t, 30*time.Second, "the job's steps to end", func() bool { return len(steps(t, job)) == 0 })
	if a := agents(); len(a) > 0 {
		t.Errorf("agents left: %v", a)
	}
}

func TestSlurmPlacesByConstraintAndSpread(t *testing.T) {
	p := newProject(t, services(
		service("db", "sleep 3600", onNode("n2")),
		service("web", "sleep 3600", "deploy: {replicas: 3, placement: {max_replicas_per_node: 1}}"),
		service("gpu", "sleep 3600", "deploy: {"+placement("node.labels.gpu == true")+"}"),
	)+`x-sstack:
  node_labels:
    n3: {gpu: "true"}
`)
	job := p.inAllocation()
	p.upDetached()
	rows := p.waitRunning("db-1", "web-1", "web-2", "web-3", "gpu-1")
	where := map[string]string{}
	for _, r := range rows {
		if r.Status != "running" {
			t.Errorf("%s: %s", r.Name, r.Status)
		}
		where[r.Name] = r.Node
		// The process runs under the agent step of the node ps names.
		if got := nodeOfPid(r.Pid); got != r.Node {
			t.Errorf("%s: ps says node %s, its process (pid %d) runs in the step of %q", r.Name, r.Node, r.Pid, got)
		}
	}
	if where["db-1"] != "n2" || where["gpu-1"] != "n3" {
		t.Errorf("db-1 on %q (want n2), gpu-1 on %q (want n3)", where["db-1"], where["gpu-1"])
	}
	webs := map[string]bool{where["web-1"]: true, where["web-2"]: true, where["web-3"]: true}
	if len(webs) != 3 {
		t.Errorf("web replicas on %v: want one on each of n1, n2, n3", where)
	}
	contains(t, "ps", p.must("ps"), "NODE")
	if s := steps(t, job); len(s) != 3 {
		t.Errorf("want one agent step per node, got %v", s)
	}
	p.downLeavesNothing()
}

// A client on n3 reaches a server on n2 by service name, at n2's address:
// the server listens on that address only.
func TestSlurmNamesResolveToNodes(t *testing.T) {
	p := newProject(t, services(serverOnN2, service("client",
		`["sh", "-c", "until wget -q -O- http://server:8080/; do sleep 0.2; done; wget -q -O- http://server-1:8080/; grep -w server /etc/hosts; exec sleep 3600"]`,
		"depends_on: [server]", onNode("n3"))))
	job := p.inAllocation()
	r := p.up()
	r.waitStdout(t, "127.0.0.12")
	out := r.stdout.String()
	if n := countLines(out, "client-1", "hello-from-n2"); n != 2 {
		t.Errorf("client-1 got the server's page %d times, want 2 (by service and by replica name):\n%s", n, out)
	}
	contains(t, "client's /etc/hosts", strings.Join(lines(out, "client-1"), "\n"), "127.0.0.12\tserver")
	rows := p.ps()
	if s, c := row(rows, "server-1"), row(rows, "client-1"); s == nil || c == nil || s.Node != "n2" || c.Node != "n3" {
		t.Errorf("ps: %+v", rows)
	}
	// exec reaches the replica on its node, in a step of its own.
	if out := p.must("exec", "-T", "server", "sh", "-c", "echo $SSTACK_NODE; wget -q -O- http://127.0.0.12:8080/"); out != "n2\nhello-from-n2\n" {
		t.Errorf("exec: %q", out)
	}
	sleeper := p.command("exec", "-T", "server", "sleep", "5")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "an exec step on n2", func() bool {
		return slices.ContainsFunc(steps(t, job), func(s slurmtest.Step) bool { return s.Name == "sstack-exec" && s.Nodes == "n2" })
	})
	_ = sleeper.Wait()
	p.ctrlCLeavesNothing(r)
}

// A crashing replica on another node is restarted by its policy there; a
// replica whose node step dies is brought back too, in a new step.
func TestSlurmRestartsRemoteReplicas(t *testing.T) {
	p := newProject(t, services(
		service("crash", `["sh", "-c", "echo run; exit 3"]`, "deploy: {restart_policy: {condition: on-failure, max_attempts: 2, delay: 100ms}, "+placement("node.hostname == n3")+"}"),
		service("steady", `["sh", "-c", "echo up; exec sleep 3600"]`, "restart: always", onNode("n2")),
	))
	job := p.inAllocation()
	r := p.up()
	r.waitStderr(t, "giving up after")
	if n := countLines(r.stdout.String(), "crash-1", "run"); n != 3 {
		t.Errorf("crash-1 ran %d times, want 3", n)
	}
	r.waitStdout(t, "steady-1")
	// Kill the step of n2's agent, as a node failure or an OOM kill of
	// the step would.
	var n2 string
	for _, s := range steps(t, job) {
		if s.Nodes == "n2" {
			n2 = s.ID
		}
	}
	if n2 == "" {
		t.Fatalf("no step on n2: %v", steps(t, job))
	}
	if err := slurmtest.SignalStep(context.Background(), n2, "KILL"); err != nil {
		t.Fatal(err)
	}
	r.waitUntil(t, 60*time.Second, "steady-1 to run again", func() bool {
		return countLines(r.stdout.String(), "steady-1", "up") >= 2
	})
	rows := p.waitPs("steady-1 running again", func(rows []replicaRow) bool {
		s := row(rows, "steady-1")
		return s != nil && s.Status == "running" && s.Restarts >= 1
	})
	if s := row(rows, "steady-1"); nodeOfPid(s.Pid) != "n2" {
		t.Errorf("steady-1 runs in the step of %q, want n2", nodeOfPid(s.Pid))
	}
	p.ctrlCLeavesNothing(r)
}

// A constraint no node of the allocation meets is refused before anything
// starts.
func TestSlurmUnmeetableConstraintStartsNothing(t *testing.T) {
	p := newProject(t, services(service("ok", "sleep 3600"), service("db", "sleep 3600", onNode("n9"))))
	p.inAllocation()
	p.refusedBeforeStart(-1, nil, `service "db"`, "node.hostname == n9", "n1")
}

// Outside an allocation, a service placed on another host is not started,
// as singularity-stack does, and the rest runs.
func TestOutsideAllocationSkipsOtherHosts(t *testing.T) {
	p := newProject(t, services(
		service("here", "sleep 3600", "depends_on: [elsewhere]"),
		service("elsewhere", "sleep 3600", onNode("no-such-host")),
	))
	errs := p.upDetached()
	contains(t, "up -d", errs, `WARN service "elsewhere": not started on this host`, "node.hostname == no-such-host", `depends_on "elsewhere"`)
	rows := p.waitRunning("here-1")
	if len(rows) != 1 {
		t.Errorf("ps: %+v", rows)
	}
	p.downLeavesNothing()
}

// scale places new replicas by the same rules, refuses one that fits no
// node, and running instances learn the new names.
func TestSlurmScalePlacesNewReplicas(t *testing.T) {
	p := newProject(t, oneService("web", "sleep 3600", onePerNode))
	p.inAllocation()
	p.upDetached()
	p.must("scale", "web=3")
	rows := p.waitRunning("web-1", "web-2", "web-3")
	nodes := map[string]bool{}
	for _, r := range rows {
		nodes[r.Node] = true
	}
	if len(nodes) != 3 {
		t.Errorf("web replicas on %v, want one on each node", nodes)
	}
	code, _, errs := p.sstack("scale", "web=4")
	if code == 0 || !strings.Contains(errs, "max_replicas_per_node") {
		t.Errorf("scale web=4 with one per node on 3 nodes: exit %d: %s", code, errs)
	}
	hosts := p.must("exec", "-T", "web", "cat", "/etc/hosts")
	w3 := row(rows, "web-3")
	contains(t, "web-1's /etc/hosts", hosts, nodeAddr[w3.Node]+"\tweb-3")
	p.downLeavesNothing()
}

// Across an allocation each node's agent reads its own replicas: the
// usage series carry the node they run on, the limit where one is set,
// and `stats` shows the node.
func TestSlurmUsageFromEachNode(t *testing.T) {
	p := newProject(t, services(
		service("capped", `["sh", "-c", "echo up; exec sleep 3600"]`, "mem_limit: 48m", onNode("n2")),
		service("busy", `["sh", "-c", "while true; do i=0; while [ $$i -lt 3000 ]; do i=$$((i+1)); done; sleep 0.1; done"]`, onNode("n3")),
	))
	requireLimits(t)
	p.inAllocation()
	addr := freeAddr(t)
	r := p.up("--metrics-addr", addr)
	capped := replicaLabels(p.name, "capped", 1, "node", "n2")
	busy := replicaLabels(p.name, "busy", 1, "node", "n3")
	waitScrape(t, r, addr, 90*time.Second, func(s scraped) string {
		if v, ok := s.value("sstack_container_spec_memory_limit_bytes", capped); !ok || v != 48<<20 {
			return fmt.Sprintf("capped's limit on n2: %v %v", v, ok)
		}
		if v, ok := s.value("sstack_container_cpu_usage_seconds_total", busy); !ok || v <= 0 {
			return fmt.Sprintf("busy's CPU on n3: %v %v", v, ok)
		}
		if v, ok := s.value("sstack_container_processes", capped); !ok || v < 2 {
			return fmt.Sprintf("capped's processes on n2: %v %v", v, ok)
		}
		return ""
	})
	nodes := map[string]string{}
	for _, row := range p.stats() {
		nodes[row.Name] = row.Node
	}
	if nodes["capped-1"] != "n2" || nodes["busy-1"] != "n3" {
		t.Errorf("stats nodes %v, want capped-1 on n2, busy-1 on n3", nodes)
	}
	p.ctrlCLeavesNothing(r)
}

// A service on another node that allocates past its mem_limit is reported
// as OOM-killed, as on one host (limits_test.go): its status line says so
// and its die event carries oomKilled. The count is read from the cgroup on
// the replica's node, through its agent.
func TestSlurmOOMKillIsReported(t *testing.T) {
	requireLimits(t)
	p := newProject(t, services(
		service("hog", `["sh", "-c", "trap '' USR1; echo ready; until [ -e /tmp/go ]; do sleep 0.1; done; echo allocating; x=$$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]`, "mem_limit: 50m", onNode("n2")),
		service("steady", "sleep 3600", onNode("n3")),
	))
	p.inAllocation()
	r := p.up()
	r.waitUntil(t, time.Minute, "hog-1 to be ready", func() bool { return countLines(r.stdout.String(), "hog-1", "ready") == 1 })
	evs := p.events("--json", "hog")
	// The stream is subscribed once it shows an event: a signal the hog
	// ignores, sent until one is seen.
	eventually(t, time.Minute, "the event stream to show a kill event", func() bool {
		p.must("kill", "-s", "SIGUSR1", "hog")
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(evs.out.String(), `"action":"kill"`) {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	})
	p.must("exec", "-T", "hog", "touch", "/tmp/go")
	r.waitStderr(t, "hog-1 exited with code 137")
	if rows := p.ps("-a"); row(rows, "hog-1") == nil || row(rows, "hog-1").Node != "n2" {
		t.Errorf("hog-1 not on n2: %+v", rows)
	}
	eventually(t, 30*time.Second, "hog's die event", func() bool {
		return strings.Contains(evs.out.String(), `"action":"die"`)
	})
	evs.interrupt(t)
	if strings.Contains(r.stdout.String(), "survived") {
		t.Errorf("the allocation was not stopped by the limit:\n%s", r.stdout)
	}
	contains(t, "stderr", r.stderr.String(), "hog-1 exited with code 137 (OOM-killed: it exceeded its memory limit)")
	var die string
	for _, line := range strings.Split(evs.out.String(), "\n") {
		if strings.Contains(line, `"action":"die"`) {
			die = line
		}
	}
	if !strings.Contains(die, `"oomKilled":true`) {
		t.Errorf("die event without oomKilled: %s", die)
	}
	p.ctrlCLeavesNothing(r)
}

// A replica added by scale on another node gets its own named volume
// ({{.Task.Slot}} in its path), filled from the image as the first
// replica's was at up.
func TestSlurmScaleSeedsSlotVolume(t *testing.T) {
	p := newProject(t, oneService("web", `["sh", "-c", "echo seed=$$(cat `+testimg.SeedDir+`/`+testimg.SeedFile+`); exec sleep 3600"]`,
		`volumes: [{type: volume, source: data, target: `+testimg.SeedDir+`, volume: {subpath: "{{.Task.Slot}}"}}]`, onePerNode)+
		"volumes:\n  data: {}\n")
	p.inAllocation()
	p.upDetached()
	seed := strings.TrimSpace(testimg.SeedContent)
	p.waitLogs("web-1 | seed=" + seed)
	p.must("scale", "web=3")
	out := p.waitLogs("web-2 | seed=", "web-3 | seed=")
	for _, r := range []string{"web-2", "web-3"} {
		contains(t, "logs", out, r+" | seed="+seed+"\n")
		n := strings.TrimPrefix(r, "web-")
		if b, err := os.ReadFile(filepath.Join(p.stateDir, p.name, "volumes", p.name+"_data", n, testimg.SeedFile)); err != nil || string(b) != testimg.SeedContent {
			t.Errorf("%s's volume: %q %v, want the image's %s", r, b, err, testimg.SeedFile)
		}
	}
	p.downLeavesNothing()
}

// update NAME (up on a running stack) across an allocation: the changed
// service is recreated on the nodes its replicas had, the unchanged one
// keeps its process, a new one is placed and started.
func TestSlurmUpdateConverges(t *testing.T) {
	file := func(marker string, withC bool) string {
		s := services(
			service("web", `["sh", "-c", "echo web-`+marker+`; exec sleep 3600"]`, "deploy: {replicas: 2, placement: {max_replicas_per_node: 1}}"),
			service("db", "sleep 3600"),
		)
		if withC {
			s += service("c", "sleep 3600")
		}
		return s
	}
	p := newProject(t, file("one", false))
	p.inAllocation()
	p.upDetached()
	before := p.waitRunning("web-1", "web-2", "db-1")
	p.rewrite(file("two", true))
	if code, errs := p.update(); code != 0 {
		t.Fatalf("update: exit code %d\n%s", code, errs)
	}
	after := p.waitRunning("web-1", "web-2", "db-1", "c-1")
	for _, name := range []string{"web-1", "web-2"} {
		b, a := row(before, name), row(after, name)
		if a.Pid == b.Pid && a.Node == b.Node {
			t.Errorf("%s was not recreated: pid %d on %s before and after", name, a.Pid, a.Node)
		}
		if a.Node != b.Node {
			t.Errorf("%s moved from %s to %s: a recreated replica keeps its node", name, b.Node, a.Node)
		}
	}
	if b, a := row(before, "db-1"), row(after, "db-1"); a.Pid != b.Pid {
		t.Errorf("db did not change, yet its process did: pid %d -> %d", b.Pid, a.Pid)
	}
	if c := row(after, "c-1"); c.Node == "" {
		t.Errorf("the new service c has no node: %+v", c)
	}
	p.waitLogs("web-two")
	p.downLeavesNothing()
}

// cp reaches a replica on another node of the allocation: the copy runs
// there, in a step of the job (the instance's root is that node's).
func TestSlurmCpRemoteReplica(t *testing.T) {
	p := newProject(t, oneService("app", "sleep 3600", onNode("n3")))
	p.inAllocation()
	p.upDetached()
	p.waitRunning("app-1")
	in := p.write("in.txt", "to n3\n")
	p.must("cp", in, "app:/tmp/in.txt")
	if out := p.must("exec", "-T", "app", "cat", "/tmp/in.txt"); out != "to n3\n" {
		t.Errorf("copied into the replica on n3: %q", out)
	}
	out := filepath.Join(p.dir, "back.txt")
	p.must("cp", "app:/tmp/in.txt", out)
	if b, err := os.ReadFile(out); err != nil || string(b) != "to n3\n" {
		t.Errorf("copied out of the replica on n3: %q, %v", b, err)
	}
	if code, _, errs := p.sstack("cp", "app:/no/such", out); code == 0 || !strings.Contains(errs, "/no/such") {
		t.Errorf("a missing source on n3: exit code %d, %q", code, errs)
	}
	p.downLeavesNothing()
}

// run inside an allocation: the dependency is started on its node, and
// the one-off reaches it by name at that node's address.
func TestSlurmRunReachesDependency(t *testing.T) {
	p := newProject(t, services(serverOnN2, service("client", `["true"]`, "depends_on: [server]")))
	p.inAllocation()
	code, out, errs := p.sstack("run", "--rm", "-T", "client", "sh", "-c", "until wget -q -O- http://server:8080/; do sleep 0.2; done")
	if code != 0 || !strings.Contains(out, "hello-from-n2") {
		t.Errorf("run client: exit code %d, want the page of server on n2\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if s := row(p.ps(), "server-1"); s == nil || s.Node != "n2" {
		t.Errorf("the dependency: %+v, want server-1 on n2", s)
	}
	p.downLeavesNothing()
}

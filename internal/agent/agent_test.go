package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
	"sstack/internal/testutil"
	"sstack/internal/usage"
	"sstack/singularity"
)

// The test binary is the agent when it finds this in its environment, as
// `sstack agent` is in a job step.
const beAgent = "SSTACK_TEST_BE_AGENT"

// beNode, with beAgent=fake, names the node whose agent the test binary is,
// serving fakeNode instead of Apptainer.
const beNode = "SSTACK_TEST_NODE"

func TestMain(m *testing.M) {
	if os.Getenv(beAgent) != "" {
		token := os.Getenv(TokenEnv)
		var rt singularity.Runtime = fakeNode{node: os.Getenv(beNode)}
		if os.Getenv(beAgent) != "fake" {
			var err error
			if rt, err = singularity.Detect(""); err != nil {
				os.Stderr.WriteString(err.Error())
				os.Exit(1)
			}
		}
		ctx, stop := context.WithCancel(context.Background())
		go func() {
			ch := make(chan os.Signal, 1)
			signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
			<-ch
			stop()
		}()
		_ = NewServer(rt, token, os.Stderr).Serve(ctx, "127.0.0.1:0", os.Stdout)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type syncBuffer = testutil.Buffer

func newRemote(t *testing.T) (*Remote, *syncBuffer) {
	return launchAs(t, "local", beAgent+"=1")
}

// remoteWithInstance is newRemote's agent with an instance of the busybox
// image started through it, named after prefix; it returns the agent, its
// log and the instance's spec.
func remoteWithInstance(t *testing.T, prefix string) (*Remote, *syncBuffer, singularity.InstanceSpec) {
	t.Helper()
	spec := singularity.InstanceSpec{Name: testimg.InstanceName(t, prefix), Image: testimg.Busybox(t)}
	r, log := newRemote(t)
	if err := r.StartInstance(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	return r, log, spec
}

// newFakeRemote is node's agent serving fakeNode: the wire and the
// dispatch without Apptainer.
func newFakeRemote(t *testing.T, node string) *Remote {
	r, _ := launchAs(t, node, beAgent+"=fake", beNode+"="+node)
	return r
}

func launchAs(t *testing.T, node string, env ...string) (*Remote, *syncBuffer) {
	log := &syncBuffer{}
	r := &Remote{Node: node, Log: log, Command: func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r, log
}

// fakeNode is the runtime of a node named nN: its instances have had N
// OOM kills, except p.gone.N, which do not exist; a seed writes a file
// named after the node into the volume.
type fakeNode struct {
	singularity.Runtime // the rest: not served (nil)
	node                string
}

func (f fakeNode) Usage(ctx context.Context, instances []string) (map[string]usage.Usage, error) {
	kills, _ := strconv.ParseUint(strings.TrimPrefix(f.node, "n"), 10, 64)
	out := map[string]usage.Usage{}
	for _, inst := range instances {
		if !strings.HasPrefix(inst, "p.gone.") {
			out[inst] = usage.Usage{Source: usage.SourceCgroupV1, OOMKills: kills}
		}
	}
	return out, nil
}

func (f fakeNode) SeedVolume(ctx context.Context, spec singularity.SeedSpec) error {
	if spec.Image == "" {
		return fmt.Errorf("seeding on %s: no image", f.node)
	}
	return os.WriteFile(filepath.Join(spec.HostDir, f.node), []byte(spec.Instance+" "+spec.Image+":"+spec.Path), 0o644)
}

// A stack across nodes counts OOM kills and seeds volumes on the node of
// the replica concerned, through its agent; errors, ErrNoInstance among
// them, come back across the wire. A seed launches the node's agent when
// none runs (the instance starts right after); a count does not (no agent,
// no instance).
func TestPlacedDispatchesToTheReplicasNode(t *testing.T) {
	n1, n2, n3 := newFakeRemote(t, "n1"), newFakeRemote(t, "n2"), newFakeRemote(t, "n3")
	p := NewPlaced([]*Remote{n1, n2, n3})
	if err := p.StartAll(context.Background(), func(node string) bool { return node != "n3" }); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for inst, node := range map[string]string{"p.a.1": "n1", "p.b.1": "n2", "p.gone.1": "n2", "p.c.1": "n3"} {
		if err := p.Place(inst, node); err != nil {
			t.Fatal(err)
		}
	}
	use, err := p.Usage(ctx, []string{"p.a.1", "p.b.1", "p.gone.1", "p.nowhere.1", "p.c.1"})
	if err != nil {
		t.Fatal(err)
	}
	for inst, want := range map[string]uint64{"p.a.1": 1, "p.b.1": 2} {
		if use[inst].OOMKills != want {
			t.Errorf("Usage(%s).OOMKills = %d; want %d from its node", inst, use[inst].OOMKills, want)
		}
	}
	for _, inst := range []string{"p.gone.1", "p.nowhere.1", "p.c.1"} {
		if u, ok := use[inst]; ok {
			t.Errorf("Usage(%s) = %+v for an instance that is not running", inst, u)
		}
	}
	if n3.live() != nil {
		t.Error("a count launched an agent")
	}

	for inst, node := range map[string]string{"p.b.1": "n2", "p.c.1": "n3"} {
		dir := t.TempDir()
		if err := p.SeedVolume(ctx, singularity.SeedSpec{Instance: inst, Image: "/i.sif", Path: "/data", HostDir: dir}); err != nil {
			t.Fatalf("seed for %s: %v", inst, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, node)); err != nil || string(b) != inst+" /i.sif:/data" {
			t.Errorf("seed for %s: not done on %s: %q %v", inst, node, b, err)
		}
	}
	if err := p.SeedVolume(ctx, singularity.SeedSpec{Instance: "p.b.1", HostDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "seeding on n2: no image") {
		t.Errorf("a failed seed: %v", err)
	}
	if err := p.SeedVolume(ctx, singularity.SeedSpec{Instance: "p.nowhere.1", Image: "/i.sif", HostDir: "/v"}); err == nil || !strings.Contains(err.Error(), "placed on no node") {
		t.Errorf("a seed for an instance placed nowhere: %v", err)
	}
}

// The runtime through an agent behaves as the local one: an instance, a
// process whose output and exit code come back, signals reaching it, a
// healthcheck-style exec, and ErrNoInstance across the wire.
func TestRemoteRuntime(t *testing.T) {
	testimg.RequireRuntime(t)
	r, log, spec := remoteWithInstance(t, "agent")
	ctx, name := context.Background(), spec.Name
	infos, err := r.ListInstances(ctx, name)
	if err != nil || len(infos) != 1 || infos[0].Name != name {
		t.Fatalf("list: %v %v", infos, err)
	}
	code, out, err := r.Exec(ctx, singularity.ProcessSpec{Instance: name, Args: []string{"sh", "-c", "echo $FOO; exit 4"}, Env: []string{"FOO=bar"}})
	if err != nil || code != 4 || strings.TrimSpace(string(out)) != "bar" {
		t.Fatalf("exec: %d %q %v", code, out, err)
	}

	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	proc, err := r.StartProcess(ctx, singularity.ProcessSpec{Instance: name, Args: []string{"sh", "-c", "trap 'echo got-term; exit 7' TERM; echo oops >&2; echo ready; while :; do sleep 0.1; done"}, Stdout: outW, Stderr: errW})
	outW.Close() // as the service actor does: the runtime holds its own copies
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := proc.Running(10 * time.Second)
	if err != nil || pid <= 0 {
		t.Fatalf("running: %d %v", pid, err)
	}
	// The trap is set once ready is printed.
	first := make([]byte, len("ready\n"))
	if _, err := io.ReadFull(outR, first); err != nil || string(first) != "ready\n" {
		t.Fatalf("first output %q %v", first, err)
	}
	var stdout, stderr bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = stdout.ReadFrom(outR) }()
	go func() { defer wg.Done(); _, _ = stderr.ReadFrom(errR) }()
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err = proc.Wait()
	wg.Wait()
	if code != 7 || err != nil {
		t.Errorf("exit %d %v, want 7", code, err)
	}
	if stdout.String() != "got-term\n" || stderr.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	if err := r.StopInstance(ctx, name, "SIGTERM", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	err = r.StopInstance(ctx, name, "SIGTERM", time.Second)
	if !errors.Is(err, singularity.ErrNoInstance) {
		t.Errorf("stopping a stopped instance: %v, want ErrNoInstance", err)
	}
	if t.Failed() {
		t.Log(log.String())
	}
}

// An agent whose supervisor is gone stops what it started: nothing stays
// on the node. Killing the agent's step ends the process with 137 for the
// restart policy.
func TestAgentCleansUpWhenTheSupervisorIsGone(t *testing.T) {
	rt := testimg.RequireRuntime(t)
	r, _, spec := remoteWithInstance(t, "agentgone")
	ctx, name := context.Background(), spec.Name
	proc, err := r.StartProcess(ctx, singularity.ProcessSpec{Instance: name, Args: []string{"sleep", "3600"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Running(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The session's end is what the agent sees when the supervisor dies.
	c := r.live()
	c.cancel()
	code, _ := proc.Wait()
	if code == 0 {
		t.Errorf("process exit %d after the agent ended", code)
	}
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not end when its session was lost")
	}
	if infos, _ := rt.ListInstances(ctx, name); len(infos) != 0 {
		t.Errorf("instance left behind: %v", infos)
	}
	// The next call launches a new agent.
	if err := r.StartInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if r.live() == c {
		t.Error("no new agent")
	}
	if err := r.StopInstance(ctx, name, "SIGKILL", time.Second); err != nil {
		t.Error(err)
	}
}

// Usage of a node's instances comes back through its agent, for the
// instances placed on it; one that does not exist is left out.
func TestUsageThroughTheAgent(t *testing.T) {
	rt := testimg.RequireRuntime(t)
	image := testimg.Busybox(t)
	r, log := newRemote(t)
	placed := NewPlaced([]*Remote{r})
	ctx := context.Background()
	name := testimg.InstanceName(t, "agentusage")
	spec := singularity.InstanceSpec{Name: name, Image: image}
	limited := os.Geteuid() == 0 && rt.CheckLimits(ctx) == nil
	if limited {
		spec.Limits.Memory = 64 << 20
	}
	if err := placed.Place(name, r.Node); err != nil {
		t.Fatal(err)
	}
	if err := placed.StartInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = placed.StopInstance(ctx, name, "SIGKILL", time.Second) }()
	proc, err := placed.StartProcess(ctx, singularity.ProcessSpec{Instance: name, Args: []string{"sleep", "3600"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Running(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	use, err := placed.Usage(ctx, []string{name, "nowhere.x.1"})
	if err != nil {
		t.Fatal(err)
	}
	u, ok := use[name]
	if !ok || len(use) != 1 {
		t.Fatalf("usage %v, want %s alone", use, name)
	}
	if u.Processes < 2 || u.MemoryBytes == 0 || u.HostMemoryBytes == 0 {
		t.Errorf("usage %+v: want appinit and sleep, some memory, the node's memory", u)
	}
	if limited && (u.Source != "cgroup v1" && u.Source != "cgroup v2" || u.MemoryLimitBytes != 64<<20) {
		t.Errorf("usage %+v: want the instance's cgroup with its 64 MiB limit", u)
	}
	_ = proc.Kill()
	_, _ = proc.Wait()
	if t.Failed() {
		t.Log(log.String())
	}
}

package main

// The example stack of the README (example/), built and run as a user
// would: its services talk to each other by name, keep their state in a
// named volume across runs, and stop gracefully on Ctrl-C.

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
)

// TestExampleStack runs the README's first command's stack: it builds the
// example's images offline (debootstrap from Debian's mirror) and checks
// that the services talk to each other by name, that the counter persists
// in the named volume, and that Ctrl-C leaves nothing behind.
func TestExampleStack(t *testing.T) {
	testimg.RequireRuntime(t)
	if os.Getuid() != 0 {
		t.Skip("building the example's images needs root (debootstrap)")
	}
	build := exec.Command("bash", "example/build-images.sh")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("example/build-images.sh: %v\n%s", err, out)
	}
	compose, err := filepath.Abs("example/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	p := &project{t: t, name: "exampletest", dir: filepath.Dir(compose), stateDir: t.TempDir()}
	p.env = append(os.Environ(), "SSTACK_STATE_DIR="+p.stateDir)
	t.Cleanup(p.cleanup)

	r := p.up()
	r.waitStdout(t, "visits: 3")
	r.waitStderr(t, "redis-1 is healthy")
	page := ""
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(page, "visits = ") && time.Now().Before(deadline) {
		if resp, err := http.Get("http://127.0.0.1:8080/cgi-bin/index.cgi"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(page, "visits = ") {
		t.Errorf("web did not show the counter from redis: %q", page)
	}
	r.ctrlC(t)
	if !strings.Contains(r.stdout.String(), "counter: stopping") || !strings.Contains(r.stdout.String(), "DB saved on disk") {
		t.Errorf("services did not stop gracefully:\n%s", r.stdout)
	}
	p.assertNothingLeft()

	// A second run continues counting from the named volume.
	r = p.up()
	r.waitStdout(t, "counter: connected to redis, visits so far: ")
	out := r.stdout.String()
	if strings.Contains(out, "visits so far: 0\n") {
		t.Errorf("the count did not survive in the named volume:\n%s", out)
	}
	r.interrupt(t)
	p.assertNothingLeft()
}

// TestSlurmExample submits example/slurm/stack.sbatch, as its README says,
// to the test cluster: the server on the allocation's first node, the
// clients on the second reach it by name, and scancel leaves nothing.
func TestSlurmExample(t *testing.T) {
	testimg.RequireRuntime(t)
	requireSlurm(t)
	images := t.TempDir()
	if err := os.Symlink(testimg.Busybox(t), filepath.Join(images, "busybox_1.35.sif")); err != nil {
		t.Fatal(err)
	}
	state, outDir := t.TempDir(), t.TempDir()
	env := append(os.Environ(), "SSTACK_IMAGE_DIR="+images, "SSTACK_STATE_DIR="+state, "SSTACK="+sstackBin)
	submit := exec.Command("sbatch", "--parsable", "-w", "n1,n2", "--output="+filepath.Join(outDir, "out-%j"), "example/slurm/stack.sbatch")
	submit.Env = env
	b, err := submit.CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch: %v: %s", err, b)
	}
	job := strings.TrimSpace(strings.Split(string(b), ";")[0])
	t.Cleanup(func() { _ = exec.Command("scancel", job).Run() })
	out := filepath.Join(outDir, "out-"+job)
	read := func() string { b, _ := os.ReadFile(out); return string(b) }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the job's output:\n%s", read())
		}
	})
	eventually(t, 90*time.Second, "both clients to get the server's page", func() bool {
		s, want := read(), "client on n2 got: hello from server on n1"
		return slices.Contains(lines(s, "client-1"), want) && slices.Contains(lines(s, "client-2"), want)
	})
	dir, _ := filepath.Abs("example/slurm")
	p := &project{t: t, name: "slurm-example", dir: dir, stateDir: state, env: append(env, "SERVER_NODE=n1")}
	rows := p.ps()
	if s, c := row(rows, "server-1"), row(rows, "client-2"); s == nil || c == nil || s.Node != "n1" || c.Node != "n2" {
		t.Errorf("ps: %+v", rows)
	}
	if err := exec.Command("scancel", job).Run(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the job to end", func() bool {
		b, _ := exec.Command("squeue", "-h", "-j", job).Output()
		return strings.TrimSpace(string(b)) == ""
	})
	contains(t, "the job's output", read(), "Gracefully stopping", "serving on n1")
	assertNothingLeft(t, "slurm-example")
	if a := agents(); len(a) > 0 {
		t.Errorf("agents left: %v", a)
	}
}

// The README's first screen lets a new user run the example: it says
// before the two commands that Go must be installed (the scripts do not
// install it), does not call the image build offline (it needs Debian's
// mirror), and names the binary and project example.sh uses, with ps and
// logs against them.
func TestReadmeFirstScreen(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("scripts/example.sh")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(readme), "\n## Usage")
	commands := strings.Index(first, "./scripts/example.sh")
	if commands < 0 {
		t.Fatal("no ./scripts/example.sh on the first screen")
	}
	if goAt := strings.Index(first, "Go 1.26"); goAt < 0 || goAt > commands {
		t.Errorf("Go 1.26 is not said before the two commands")
	}
	if strings.Contains(first, "offline") {
		t.Errorf("the first screen calls the example's build offline; it needs Debian's mirror")
	}
	// exec ./bin/sstack -f example/docker-compose.yml -n example "$@"
	m := regexp.MustCompile(`(?m)^exec (\S+) .*-n (\S+)`).FindStringSubmatch(string(script))
	if m == nil {
		t.Fatal("scripts/example.sh: no exec line with -n PROJECT")
	}
	bin, name := m[1], m[2]
	for _, want := range []string{bin + " -n " + name + " ps", bin + " -n " + name + " logs"} {
		if !strings.Contains(first, want) {
			t.Errorf("the first screen lacks %q (the binary and project of scripts/example.sh)", want)
		}
	}
}

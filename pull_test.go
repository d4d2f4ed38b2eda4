package main

// Pulls against a real registry on 127.0.0.1 (Debian's docker-registry,
// started and stopped by each test with scripts/registry.sh), filled with
// images made offline: a busybox root filesystem turned into an OCI image
// with umoci, pushed with skopeo, pulled by sstack with apptainer pull.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
)

// testRegistry is a registry of one test.
type testRegistry struct {
	t    *testing.T
	addr string // 127.0.0.1:PORT
	dir  string
	oci  string // the OCI layout images are made in
}

// startRegistry starts a registry for the test, stopped at its end. The
// packages it needs are installed when missing and the test runs as root
// (scripts/install-test-deps.sh); otherwise the test is skipped.
func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	testimg.RequireRuntime(t)
	var missing []string
	for _, tool := range []string{"docker-registry", "skopeo", "umoci", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			t.Skipf("the pull tests need %s: run scripts/install-test-deps.sh as root", strings.Join(missing, ", "))
		}
		if out, err := exec.Command("bash", "scripts/install-test-deps.sh").CombinedOutput(); err != nil {
			t.Fatalf("installing the registry packages: %v\n%s", err, out)
		}
	}
	r := &testRegistry{t: t, dir: t.TempDir()}
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	r.addr = "127.0.0.1:" + port
	if out, err := exec.Command("scripts/registry.sh", "up", port, r.dir).CombinedOutput(); err != nil {
		t.Fatalf("scripts/registry.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("scripts/registry.sh", "down", port, r.dir).CombinedOutput(); err != nil {
			t.Errorf("scripts/registry.sh down: %v\n%s", err, out)
		}
	})
	r.oci = filepath.Join(t.TempDir(), "oci")
	bundle := filepath.Join(t.TempDir(), "bundle")
	r.run("umoci", "init", "--layout", r.oci)
	r.run("umoci", "new", "--image", r.oci+":base")
	r.run("umoci", "unpack", "--rootless", "--image", r.oci+":base", bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "cat", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	r.run("umoci", "repack", "--image", r.oci+":base", bundle)
	return r
}

func (r *testRegistry) run(name string, args ...string) string {
	r.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// push makes an image whose CMD prints message (plus extra bytes of
// random data in /data, to make it big) and pushes it as repo (e.g.
// "tools/bb:1.0"); it returns the full reference and its digest.
func (r *testRegistry) push(repo, message string, extra int) (ref, digest string) {
	r.t.Helper()
	tag := strings.NewReplacer("/", "-", ":", "-").Replace(repo)
	src := "base"
	if extra > 0 {
		bundle := filepath.Join(r.t.TempDir(), "bundle")
		r.run("umoci", "unpack", "--rootless", "--image", r.oci+":base", bundle)
		f, err := os.Create(filepath.Join(bundle, "rootfs", "data"))
		if err != nil {
			r.t.Fatal(err)
		}
		if _, err := io.CopyN(f, randReader{}, int64(extra)); err != nil {
			r.t.Fatal(err)
		}
		f.Close()
		src = tag + "-big"
		r.run("umoci", "repack", "--image", r.oci+":"+src, bundle)
	}
	r.run("umoci", "config", "--image", r.oci+":"+src, "--tag", tag,
		"--config.cmd", "sh", "--config.cmd", "-c", "--config.cmd", "echo "+message)
	ref = r.addr + "/" + repo
	r.run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:"+r.oci+":"+tag, "docker://"+ref)
	var inspect struct{ Digest string }
	if err := json.Unmarshal([]byte(r.run("skopeo", "inspect", "--tls-verify=false", "docker://"+ref)), &inspect); err != nil {
		r.t.Fatal(err)
	}
	return ref, inspect.Digest
}

// randReader: incompressible bytes, cheaply.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Read(p)
}

// pullProject is a project whose pulls reach the test registry: plain
// HTTP (APPTAINER_NOHTTPS, which sstack must pass on to apptainer pull)
// and a cache of its own.
func pullProject(t *testing.T, compose string) *project {
	t.Helper()
	p := newProject(t, compose)
	p.env = append(p.env, "APPTAINER_NOHTTPS=1", "APPTAINER_CACHEDIR="+t.TempDir())
	return p
}

// imageFiles lists the image directory, hidden files (temporary pulls)
// included.
func (p *project) imageFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(p.dir, "images"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// sifName is the file sstack gives ref in the image directory.
func sifName(ref string) string {
	return strings.NewReplacer(":", "+", "/", "%").Replace(ref) + ".sif"
}

func TestPullOnUp(t *testing.T) {
	reg := startRegistry(t)
	ref, _ := reg.push("tools/bb:1.0", "hello from the registry", 0)
	p := pullProject(t, "services:\n  app:\n    image: "+ref+"\n")

	// config prints the plan, warns, and says how to fetch the image.
	code, stdout, stderr := p.run("config")
	if code != 0 {
		t.Fatalf("config: exit %d: %s", code, stderr)
	}
	contains(t, "config stdout", stdout, `image: "`+filepath.Join(p.dir, "images", sifName(ref))+`"`, "image_missing: true", `pull: "docker://`+ref+`"`)
	contains(t, "config stderr", stderr, `WARN service "app": image: no SIF for "`+ref+`"`, "sstack pull app", "apptainer pull "+sifName(ref)+" docker://"+ref)

	code, stdout, stderr = p.run()
	if code != 0 {
		t.Fatalf("up: exit %d: %s", code, stderr)
	}
	contains(t, "stdout", stdout, "app-1 | hello from the registry")
	contains(t, "stderr", stderr, "app Pulling docker://"+ref, "app Pulled docker://"+ref+" (1.")
	before(t, stderr, "app Pulled", "Instance "+p.name+".app.1  Creating")
	if got := p.imageFiles(); !slices.Equal(got, []string{sifName(ref)}) {
		t.Errorf("image directory: %v, want only %s", got, sifName(ref))
	}

	// Present now: not pulled again.
	code, _, stderr = p.run()
	if code != 0 || strings.Contains(stderr, "Pulling") {
		t.Errorf("second up: exit %d, pulled again:\n%s", code, stderr)
	}
	p.assertNothingLeft()
}

// TestPullFailureStartsNothing: a failed pull names the service, the
// reference and apptainer's FATAL line; no service starts, no file is
// left.
func TestPullFailureStartsNothing(t *testing.T) {
	reg := startRegistry(t)
	ok, _ := reg.push("tools/bb:1.0", "hello", 0)
	p := pullProject(t, "services:\n  good:\n    image: "+ok+"\n  bad:\n    image: "+reg.addr+"/tools/bb:9.9\n")
	stdout, _ := p.refusedBeforeStart(1, nil, `sstack: service "bad": image: pulling docker://`+reg.addr+`/tools/bb:9.9: FATAL: `, "manifest unknown")
	if strings.Contains(stdout, "hello") {
		t.Errorf("a service started:\n%s", stdout)
	}
	if got := p.imageFiles(); !slices.Equal(got, []string{sifName(ok)}) {
		t.Errorf("image directory: %v, want only the good image", got)
	}
}

// TestPullEnvironmentReachesApptainer: sstack keeps APPTAINER_* from its
// instances, but apptainer pull gets them: without APPTAINER_NOHTTPS the
// plain-HTTP registry is refused, with it the pull works.
func TestPullEnvironmentReachesApptainer(t *testing.T) {
	reg := startRegistry(t)
	ref, _ := reg.push("tools/bb:1.0", "hello", 0)
	p := newProject(t, "services:\n  app:\n    image: "+ref+"\n")
	p.env = append(p.env, "APPTAINER_CACHEDIR="+t.TempDir())
	code, _, stderr := p.run("pull")
	if code != 1 || !strings.Contains(stderr, "server gave HTTP response to HTTPS client") {
		t.Fatalf("without APPTAINER_NOHTTPS: exit %d\n%s", code, stderr)
	}
	p.env = append(p.env, "APPTAINER_NOHTTPS=1")
	if code, _, stderr := p.run("pull"); code != 0 {
		t.Fatalf("with APPTAINER_NOHTTPS=1: exit %d\n%s", code, stderr)
	}
	if got := p.imageFiles(); !slices.Equal(got, []string{sifName(ref)}) {
		t.Errorf("image directory: %v", got)
	}
}

func TestPullPolicies(t *testing.T) {
	reg := startRegistry(t)
	ref, _ := reg.push("tools/bb:1.0", "first", 0)

	t.Run("--pull never", func(t *testing.T) {
		p := pullProject(t, "services:\n  app:\n    image: "+ref+"\n")
		code, _, stderr := p.run("up", "--pull", "never")
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		contains(t, "stderr", stderr, `service "app": image: no SIF for "`+ref+`"`, "--pull never", "sstack pull app")
		if len(p.imageFiles()) != 0 || strings.Contains(stderr, "Pulling") {
			t.Errorf("pulled: %v\n%s", p.imageFiles(), stderr)
		}
		p.assertNothingLeft()
	})
	t.Run("pull_policy never", func(t *testing.T) {
		p := pullProject(t, "services:\n  app:\n    image: "+ref+"\n    pull_policy: never\n")
		code, _, stderr := p.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		contains(t, "stderr", stderr, "pull_policy is never")
	})
	t.Run("pull_policy always pulls at every up", func(t *testing.T) {
		p := pullProject(t, "services:\n  app:\n    image: "+ref+"\n    pull_policy: always\n")
		code, stdout, stderr := p.run()
		if code != 0 || !strings.Contains(stdout, "| first") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		reg.push("tools/bb:1.0", "second", 0)
		defer reg.push("tools/bb:1.0", "first", 0)
		code, stdout, stderr = p.run()
		if code != 0 || !strings.Contains(stdout, "| second") {
			t.Fatalf("not pulled again: exit %d\n%s%s", code, stdout, stderr)
		}
	})
	t.Run("up --pull always", func(t *testing.T) {
		p := pullProject(t, "services:\n  app:\n    image: "+ref+"\n")
		if code, _, stderr := p.run(); code != 0 {
			t.Fatal(stderr)
		}
		code, _, stderr := p.run("up", "--pull", "always")
		if code != 0 || !strings.Contains(stderr, "app Pulled") {
			t.Fatalf("exit %d, not pulled again\n%s", code, stderr)
		}
	})
	t.Run("daily pulls an image a day old", func(t *testing.T) {
		p := pullProject(t, "services:\n  app:\n    image: "+ref+"\n    pull_policy: daily\n")
		if code, _, stderr := p.run("pull"); code != 0 {
			t.Fatal(stderr)
		}
		code, _, stderr := p.run()
		if code != 0 || strings.Contains(stderr, "Pulling") {
			t.Fatalf("a fresh image was pulled again: exit %d\n%s", code, stderr)
		}
		old := time.Now().Add(-25 * time.Hour)
		if err := os.Chtimes(filepath.Join(p.dir, "images", sifName(ref)), old, old); err != nil {
			t.Fatal(err)
		}
		code, _, stderr = p.run()
		if code != 0 || !strings.Contains(stderr, "app Pulled") {
			t.Fatalf("a day-old image was not pulled: exit %d\n%s", code, stderr)
		}
	})
}

// TestParallelPullsShareACache: images that share layers, pulled at once
// into one empty APPTAINER_CACHEDIR, all arrive. Raw parallel apptainer
// pulls lose a race over the cache here now and then ("conveyor failed to
// get"); several rounds make that likely enough to see.
func TestParallelPullsShareACache(t *testing.T) {
	reg := startRegistry(t)
	var yml strings.Builder
	yml.WriteString("services:\n")
	for i := range 4 {
		ref, _ := reg.push(fmt.Sprintf("team-%d/bb:1.0", i), "image", 0)
		fmt.Fprintf(&yml, "  s%d:\n    image: %s\n", i, ref)
	}
	for round := range 6 {
		p := pullProject(t, yml.String())
		if code, _, stderr := p.run("pull"); code != 0 {
			t.Fatalf("round %d: exit %d\n%s", round, code, stderr)
		}
	}
}

// TestImageNamesDoNotCollide: two images that apptainer pull would both
// name bb_1.0.sif get files of their own, and a bb_1.0.sif already there
// is taken for neither.
func TestImageNamesDoNotCollide(t *testing.T) {
	reg := startRegistry(t)
	a, _ := reg.push("team-a/bb:1.0", "image of team a", 0)
	b, _ := reg.push("team-b/bb:1.0", "image of team b", 0)
	p := pullProject(t, "services:\n  a:\n    image: "+a+"\n  b:\n    image: "+b+"\n")
	p.write("images/bb_1.0.sif", "not an image")
	code, stdout, stderr := p.run()
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	contains(t, "stdout", stdout, "a-1 | image of team a", "b-1 | image of team b")
	got := p.imageFiles()
	for _, want := range []string{sifName(a), sifName(b), "bb_1.0.sif"} {
		if !slices.Contains(got, want) {
			t.Errorf("image directory %v lacks %s", got, want)
		}
	}
	p.assertNothingLeft()
}

// TestImageFetchedByHand: a SIF with the name apptainer pull gives it by
// default is used as it is.
func TestImageFetchedByHand(t *testing.T) {
	reg := startRegistry(t)
	ref, _ := reg.push("tools/bb:1.0", "pulled by hand", 0)
	p := newProject(t, "services:\n  app:\n    image: "+ref+"\n")
	images := filepath.Join(p.dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	pull := exec.Command("apptainer", "-s", "pull", "--no-https", "docker://"+ref)
	pull.Dir, pull.Env = images, append(os.Environ(), "APPTAINER_CACHEDIR="+t.TempDir())
	if out, err := pull.CombinedOutput(); err != nil {
		t.Fatalf("apptainer pull: %v\n%s", err, out)
	}
	if got := p.imageFiles(); !slices.Equal(got, []string{"bb_1.0.sif"}) {
		t.Fatalf("apptainer pull wrote %v", got)
	}
	code, stdout, stderr := p.run("up", "--pull", "never")
	if code != 0 || !strings.Contains(stdout, "app-1 | pulled by hand") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	p.assertNothingLeft()
}

// TestPullByDigest: name@sha256:... is pulled, also written with a tag
// (which apptainer itself refuses), and named by its digest.
func TestPullByDigest(t *testing.T) {
	reg := startRegistry(t)
	ref, digest := reg.push("tools/bb:1.0", "pinned", 0)
	byDigest := reg.addr + "/tools/bb@" + digest
	p := pullProject(t, "services:\n  a:\n    image: "+byDigest+"\n  b:\n    image: "+ref+"@"+digest+"\n")
	code, stdout, stderr := p.run()
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	contains(t, "stdout", stdout, "a-1 | pinned", "b-1 | pinned")
	want := strings.NewReplacer(":", "+", "/", "%").Replace(byDigest) + ".sif"
	if got := p.imageFiles(); !slices.Equal(got, []string{want}) {
		t.Errorf("image directory: %v, want %s", got, want)
	}
	if strings.Count(stderr, "Pulling") != 1 {
		t.Errorf("one image, want one pull:\n%s", stderr)
	}
}

// TestPullCommand: sstack pull as docker compose pull: SERVICE selects,
// --ignore-pull-failures goes on, -q is quiet.
func TestPullCommand(t *testing.T) {
	reg := startRegistry(t)
	a, _ := reg.push("tools/a:1", "a", 0)
	b, _ := reg.push("tools/b:1", "b", 0)
	p := pullProject(t, "services:\n  a:\n    image: "+a+"\n  b:\n    image: "+b+"\n  c:\n    image: "+reg.addr+"/tools/none:1\n")
	code, _, stderr := p.run("pull", "a")
	if code != 0 || !slices.Equal(p.imageFiles(), []string{sifName(a)}) {
		t.Fatalf("pull a: exit %d, images %v\n%s", code, p.imageFiles(), stderr)
	}
	code, _, stderr = p.run("pull", "-q", "--ignore-pull-failures")
	if code != 0 || stderr != "" {
		t.Errorf("pull -q --ignore-pull-failures: exit %d\n%s", code, stderr)
	}
	if got := p.imageFiles(); !slices.Equal(got, []string{sifName(a), sifName(b)}) {
		t.Errorf("images %v", got)
	}
	code, _, stderr = p.run("pull", "nope")
	if code != 1 || !strings.Contains(stderr, "no such service: nope") {
		t.Errorf("pull nope: exit %d\n%s", code, stderr)
	}
}

// TestInterruptedPull: Ctrl-C during a pull leaves no SIF and no
// temporary file behind, and no apptainer running; the next up pulls
// again.
func TestInterruptedPull(t *testing.T) {
	reg := startRegistry(t)
	ref, _ := reg.push("tools/big:1", "big", 60<<20)
	p := pullProject(t, "services:\n  app:\n    image: "+ref+"\n")
	r := p.launch("", nil, "pull")
	r.waitStderr(t, "app Pulling")
	time.Sleep(300 * time.Millisecond)
	_ = r.cmd.Process.Signal(syscall.SIGINT)
	code := r.wait(t, time.Minute)
	if code == 0 {
		t.Skipf("the pull ended before Ctrl-C (%s)", r.stderr)
	}
	contains(t, "stderr", r.stderr.String(), "interrupted")
	if got := p.imageFiles(); len(got) != 0 {
		t.Errorf("left in the image directory: %v", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for pullsOf(ref) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := pullsOf(ref); n > 0 {
		t.Errorf("%d apptainer pull processes still run", n)
	}
	code, stdout, stderr := p.run()
	if code != 0 || !strings.Contains(stdout, "app-1 | big") {
		t.Fatalf("up after the interrupted pull: exit %d\n%s%s", code, stdout, stderr)
	}
}

// pullsOf counts the processes whose command line pulls ref.
func pullsOf(ref string) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte("pull\x00")) && bytes.Contains(b, []byte(ref)) {
			n++
		}
	}
	return n
}

// TestPullProgressOnTerminal: on a terminal, one line per image, redrawn
// in place, ending with its size.
func TestPullProgressOnTerminal(t *testing.T) {
	reg := startRegistry(t)
	a, _ := reg.push("tools/a:1", "a", 0)
	b, _ := reg.push("tools/b:1", "b", 0)
	p := pullProject(t, "services:\n  first:\n    image: "+a+"\n  second:\n    image: "+b+"\n")
	master, slave := openPty(t)
	defer master.Close()
	cmd := p.command("pull")
	cmd.Stdout, cmd.Stderr = io.Discard, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	read := make(chan struct{})
	go func() { defer close(read); _, _ = io.Copy(&out, master) }()
	err := cmd.Wait()
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("terminal output did not end")
	}
	if err != nil {
		t.Fatalf("pull: %v; terminal:\n%s", err, out.String())
	}
	screen := out.String()
	contains(t, "terminal", screen, "\x1b[2A", "\x1b[2K", "✔ first  Pulled docker://"+a+" (", "✔ second Pulled docker://"+b+" (")
	if t.Failed() {
		t.Logf("%q", screen)
	}
}

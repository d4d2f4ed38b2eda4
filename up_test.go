package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
)

// sandboxImage builds a busybox sandbox directory image with a file at
// /seed/hello.txt, for named volume seeding.
func sandboxImage(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "root", "seed", "proc", "sys", "dev", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox-static is needed: ", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "echo", "sleep", "env", "ls", "printf", "seq", "touch", "id", "hostname", "grep", "tr", "pwd"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\n"), 0o644)
	if err := os.WriteFile(filepath.Join(root, "seed", "hello.txt"), []byte("seeded from image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sandbox := filepath.Join(t.TempDir(), "sandbox")
	if out, err := exec.Command("apptainer", "-s", "build", "--sandbox", sandbox, root).CombinedOutput(); err != nil {
		t.Fatalf("building a sandbox image: %v: %s", err, out)
	}
	return sandbox
}

// TestUpRunsStackAndTearsDown covers the core of `up` against real
// instances: start order, environment, binds, named volume seeding,
// secrets, hosts, logs and Ctrl-C teardown with nothing left behind.
func TestUpRunsStackAndTearsDown(t *testing.T) {
	img := testimg.Busybox(t)
	sandbox := sandboxImage(t)
	p := newProject(t, `
services:
  db:
    image: `+img+`
    command: ["sh", "-c", "trap 'echo db got TERM; exit 0' TERM; echo db ready; while true; do sleep 0.1; done"]
    stop_grace_period: 5s
  web:
    image: `+sandbox+`
    depends_on: [db]
    environment:
      GREETING: hello world
    working_dir: /seed
    volumes:
      - ./data:/data:ro
      - cache:/seed
    secrets:
      - pw
    extra_hosts:
      - "somehost:10.1.2.3"
    command:
      - sh
      - -c
      - |
        echo "greeting=$$GREETING"
        echo "pwd=$$(pwd)"
        echo "leak=$${HOST_LEAK:-none}"
        echo "bind=$$(cat /data/in.txt)"
        echo "secret=$$(cat /run/secrets/pw)"
        echo "seed=$$(cat /seed/hello.txt)"
        if touch /data/x 2>/dev/null; then echo ro=writable; else echo ro=readonly; fi
        grep -E '(db|web|somehost)$$' /etc/hosts | tr '\t' ' '
        printf 'no newline at the end'
        exec sleep 1000
secrets:
  pw:
    file: ./pw.txt
volumes:
  cache: {}
`)
	p.write("data/in.txt", "from the host")
	if err := os.WriteFile(filepath.Join(p.dir, "pw.txt"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = append(p.env, "HOST_LEAK=leaked")
	r := p.up()
	r.waitStdout(t, "web-1 | 10.1.2.3 somehost")
	out := r.stdout.String()
	for _, want := range []string{
		"db-1  | db ready\n",
		"web-1 | greeting=hello world\n",
		"web-1 | pwd=/seed\n",
		"web-1 | leak=none\n",
		"web-1 | bind=from the host\n",
		"web-1 | secret=s3cret\n",
		"web-1 | seed=seeded from image\n",
		"web-1 | ro=readonly\n",
		"web-1 | 127.0.0.1 db\n",
		"web-1 | 127.0.0.1 web\n",
		"web-1 | 10.1.2.3 somehost\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	errs := r.stderr.String()
	if i, j := strings.Index(errs, "Instance "+p.name+".db.1  Started"), strings.Index(errs, "Instance "+p.name+".web.1  Creating"); i < 0 || j < 0 || i > j {
		t.Errorf("web was not created after db started:\n%s", errs)
	}
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
	out = r.stdout.String()
	if !strings.Contains(out, "db-1  | db got TERM\n") {
		t.Errorf("db's stop_signal handler did not run:\n%s", out)
	}
	// A last line without newline is flushed when the process ends.
	if !strings.Contains(out, "web-1 | no newline at the end\n") {
		t.Errorf("last line without newline lost:\n%s", out)
	}
	errs = r.stderr.String()
	// Reverse order: web is stopped before db is asked to stop.
	if i, j := strings.Index(errs, "Instance "+p.name+".web.1  Stopped"), strings.Index(errs, "Instance "+p.name+".db.1  Stopping"); i < 0 || j < 0 || i > j {
		t.Errorf("db was stopped before web was gone:\n%s", errs)
	}
	assertNothingLeft(t, p.name)
	// The named volume outlives the stack and keeps what was seeded.
	if m, _ := filepath.Glob(filepath.Join(p.stateDir, p.name, "volumes", "*", "hello.txt")); len(m) != 1 {
		t.Errorf("named volume not kept under the state directory: %v", m)
	}
}

func TestMissingImageStartsNothing(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  ok:
    image: `+img+`
    command: ["sleep", "100"]
  broken:
    image: redis:7
`)
	code, _, errs := p.run()
	if code == 0 {
		t.Fatalf("exit code 0 with a missing image")
	}
	for _, want := range []string{`service "broken"`, "redis_7.sif", "apptainer pull", "docker://redis:7"} {
		if !strings.Contains(errs, want) {
			t.Errorf("error lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "Creating") {
		t.Errorf("something was created:\n%s", errs)
	}
	assertNothingLeft(t, p.name)
}

func TestReadableSecretRefused(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  db:
    image: `+img+`
    command: ["sleep", "100"]
    secrets: [pw]
secrets:
  pw:
    file: ./pw.txt
`)
	if err := os.WriteFile(filepath.Join(p.dir, "pw.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := p.run()
	if code == 0 {
		t.Fatal("exit code 0 with a world-readable secret")
	}
	if !strings.Contains(errs, `service "db"`) || !strings.Contains(errs, "chmod 600") {
		t.Errorf("error does not say how to fix it:\n%s", errs)
	}
	assertNothingLeft(t, p.name)
}

// TestNameClash: instances of the project already exist (a killed sstack);
// up refuses and names `sstack down`, which then removes them.
func TestNameClash(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  app:
    image: `+img+`
    command: ["sleep", "100"]
`)
	leftover := p.name + ".app.1"
	if out, err := exec.Command("apptainer", "-s", "instance", "start", img, leftover).CombinedOutput(); err != nil {
		t.Fatalf("starting a leftover instance: %v: %s", err, out)
	}
	code, _, errs := p.run()
	if code == 0 {
		t.Fatal("exit code 0 despite a name clash")
	}
	if !strings.Contains(errs, leftover) || !strings.Contains(errs, "sstack down -n "+p.name) {
		t.Errorf("error does not name the instance and the fix:\n%s", errs)
	}
	down := p.command("down")
	if out, err := down.CombinedOutput(); err != nil {
		t.Fatalf("sstack down: %v: %s", err, out)
	}
	assertNothingLeft(t, p.name)
}

// TestSecondInterruptKills: a service that ignores its stop signal is
// killed at once by a second Ctrl-C instead of after its grace period.
func TestSecondInterruptKills(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  stubborn:
    image: `+img+`
    command: ["sh", "-c", "trap '' TERM INT; echo up; while true; do sleep 0.1; done"]
    stop_grace_period: 5m
`)
	r := p.up()
	r.waitStdout(t, "stubborn-1 | up")
	_ = r.cmd.Process.Signal(os.Interrupt)
	r.waitStderr(t, "Stopping")
	start := time.Now()
	if code := r.interrupt(t); code != 0 {
		t.Logf("exit code after forced stop: %d", code)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("second Ctrl-C did not kill at once")
	}
	assertNothingLeft(t, p.name)
}

func TestConfigNeedsNoRuntime(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: ./img.sif\n    command: echo hi\n    ports: [\"80:80\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "img.sif"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sstackBin, "config")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/nonexistent", "HOME=" + dir}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("config: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"web"`) || !strings.Contains(stdout.String(), filepath.Join(dir, "img.sif")) {
		t.Errorf("plan lacks the service or its image:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`service "web".*ports`).MatchString(stderr.String()) {
		t.Errorf("no warning for ports:\n%s", stderr.String())
	}
}

// TestReadOnlyTmpfsEnvFile: read_only keeps the root filesystem read-only,
// tmpfs gives a writable scratch directory, env_file fills the environment,
// and without read_only the root is writable but thrown away.
func TestReadOnlyTmpfsEnvFile(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  ro:
    image: `+img+`
    read_only: true
    tmpfs: [/scratch]
    env_file: [./app.env]
    command:
      - sh
      - -c
      - |
        if touch /etc/x 2>/dev/null; then echo root=writable; else echo root=readonly; fi
        if touch /scratch/x; then echo scratch=writable; fi
        echo "from_file=$$FROM_FILE"
  rw:
    image: `+img+`
    command: ["sh", "-c", "touch /etc/x && echo root=writable"]
`)
	p.write("app.env", "FROM_FILE=yes it is\n")
	code, out, errs := p.run()
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, errs)
	}
	for _, want := range []string{"ro-1 | root=readonly\n", "ro-1 | scratch=writable\n", "ro-1 | from_file=yes it is\n", "rw-1 | root=writable\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	assertNothingLeft(t, p.name)
}

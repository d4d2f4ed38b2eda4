package main

// `sstack up` starts a stack as docker compose does: services in
// dependency order, each with its environment (and none of the host's),
// working directory, binds, named volumes seeded from the image, secrets,
// hosts entries, read-only root and tmpfs; a stack that cannot start (a
// missing image, a secret readable by others) starts nothing. `sstack
// config` prints the plan without a runtime.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sstack/internal/testutil"
	"strings"
	"testing"
)

// Services start in dependency order and see what the compose file gives
// them: environment, working_dir, binds, a named volume seeded from the
// image (kept after the stack is down), secrets and hosts entries.
func TestUpStartsServicesInOrderWithEnvMountsSecretsAndHosts(t *testing.T) {
	sandbox := sandboxImage(t)
	p := newProject(t, `
services:
  db:
    image: busybox
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
	p.writeSecret("pw.txt", "s3cret")
	p.env = append(p.env, "HOST_LEAK=leaked")
	r := p.up()
	r.waitStdout(t, "web-1 | 10.1.2.3 somehost")
	out := r.stdout.String()
	// db and web have addresses of their own, which the stack's DNS
	// server answers (netreplica_test.go), not /etc/hosts.
	if strings.Contains(out, "127.0.0.1 db") {
		t.Errorf("db on 127.0.0.1 in /etc/hosts:\n%s", out)
	}
	contains(t, "stdout", out,
		"db-1  | db ready\n",
		"web-1 | greeting=hello world\n",
		"web-1 | pwd=/seed\n",
		"web-1 | leak=none\n",
		"web-1 | bind=from the host\n",
		"web-1 | secret=s3cret\n",
		"web-1 | seed=seeded from image\n",
		"web-1 | ro=readonly\n",
		"web-1 | 10.1.2.3 somehost\n",
	)
	// web is created only once db has started.
	before(t, r.stderr.String(), "Instance "+p.name+".db.1  Started", "Instance "+p.name+".web.1  Creating")
	p.ctrlCLeavesNothing(r)
	// The named volume outlives the stack and keeps what was seeded.
	if m, _ := filepath.Glob(filepath.Join(p.stateDir, p.name, "volumes", "*", "hello.txt")); len(m) != 1 {
		t.Errorf("named volume not kept under the state directory: %v", m)
	}
}

// read_only keeps the root filesystem read-only, tmpfs gives a writable
// scratch directory, env_file fills the environment, and without
// read_only the root is writable but thrown away.
func TestReadOnlyRootTmpfsAndEnvFile(t *testing.T) {
	p := newProject(t, `
services:
  ro:
    image: busybox
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
    image: busybox
    command: ["sh", "-c", "touch /etc/x && echo root=writable"]
`)
	p.write("app.env", "FROM_FILE=yes it is\n")
	code, out, errs := p.run()
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, errs)
	}
	contains(t, "stdout", out, "ro-1 | root=readonly\n", "ro-1 | scratch=writable\n", "ro-1 | from_file=yes it is\n", "rw-1 | root=writable\n")
	p.assertNothingLeft()
}

// What up refuses before anything is created: a missing image that is
// not to be pulled, naming the service, the paths tried and the command
// that fetches it (without --pull never, up pulls it: see pull_test.go);
// a secret file readable by others, with the chmod that fixes it.
func TestUpRefusesBeforeAnythingStarts(t *testing.T) {
	for _, tc := range []struct {
		name, compose string
		files         map[string]string
		args, want    []string
	}{
		{"missing image", services(service("ok", `["sleep", "100"]`), "  broken:\n    image: redis:7\n"), nil,
			[]string{"up", "--pull", "never"}, []string{`service "broken"`, "redis+7.sif", "redis_7.sif", "--pull never", "sstack pull broken"}},
		{"secret readable by others", services(service("db", `["sleep", "100"]`, `secrets: ["pw"]`)) + "secrets:\n  pw:\n    file: ./pw.txt\n",
			map[string]string{"pw.txt": "x"}, nil, []string{`service "db"`, "chmod 600"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, tc.compose)
			for name, content := range tc.files {
				p.write(name, content)
			}
			p.refusedBeforeStart(-1, tc.args, tc.want...)
		})
	}
}

// `sstack config` prints the resolved plan, and warns about what it does
// not support, with neither Apptainer nor anything else on the PATH.
func TestConfigNeedsNoRuntime(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	testutil.WriteFile(t, filepath.Join(dir, "compose.yaml"), "services:\n  web:\n    image: ./img.sif\n    command: echo hi\n    network_mode: host\n    ports: [\"8080:80\"]\n", 0o644)
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

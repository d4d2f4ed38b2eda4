package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sstack/internal/testimg"
)

// sstack cp, both ways, as root and as an unprivileged user: into the
// instance's writable layer and into a bind, out of the image's content
// through an absolute link that resolves inside the instance.
func TestCp(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, oneService("app", `["sleep", "1000"]`, `volumes: ["./data:/data"]`))
		p.upDetached()
		in := p.write("in.txt", "from the host\n")
		p.must("cp", in, "app:/tmp/")
		if out := p.must("exec", "-T", "app", "cat", "/tmp/in.txt"); out != "from the host\n" {
			t.Errorf("copied into the writable layer: %q", out)
		}
		p.must("cp", in, "app:/data/copy.txt")
		if b, err := os.ReadFile(filepath.Join(p.dir, "data", "copy.txt")); err != nil || string(b) != "from the host\n" {
			t.Errorf("copied into a bind: %q, %v", b, err)
		}
		out := filepath.Join(p.dir, "out")
		p.must("cp", "app:"+testimg.SeedAbsLink+"/.", out)
		if b, err := os.ReadFile(filepath.Join(out, testimg.SeedFile)); err != nil || string(b) != testimg.SeedContent {
			t.Errorf("copied out through %s: %q, %v", testimg.SeedAbsLink, b, err)
		}
		if code, _, errs := p.sstack("cp", "app:/no/such/file", out); code != 1 || !strings.Contains(errs, "/no/such/file") {
			t.Errorf("missing source: exit code %d, %q", code, errs)
		}
		if code, _, _ := p.sstack("cp", in, out); code != 2 {
			t.Errorf("no service named: exit code %d, want 2", code)
		}
		p.downLeavesNothing()
	})
}

// sstack images: the SIF each service uses, with its source, size and ID.
func TestImages(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("app", `["true"]`))
	out := p.must("images")
	contains(t, "images", out, "SERVICE", "IMAGE ID", "app", "file", p.busybox)
	var rows []struct{ Service, Path, Source, ID string }
	if err := json.Unmarshal([]byte(p.must("images", "--format", "json")), &rows); err != nil || len(rows) != 1 || !strings.HasPrefix(rows[0].ID, "sha256:") || rows[0].Path != p.busybox {
		t.Errorf("images --format json: %+v, %v", rows, err)
	}
	if code, _, errs := p.sstack("images", "nosuch"); code != 1 || !strings.Contains(errs, "no such service: nosuch") {
		t.Errorf("images nosuch: exit code %d, %q", code, errs)
	}
}

// sstack run: a one-off replica of a service; its dependency started
// first (detached, and left running, as docker compose does), its
// command's output and exit code sstack's; it reaches the dependency by
// name on the stack's network; nothing of it is left.
func TestRun(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, services(
			service("db", `["sh", "-c", "mkdir -p /tmp/w && echo db-data > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"]`),
			service("job", `["echo", "the default command"]`, `environment: {FROM_FILE: "yes"}`, `depends_on: ["db"]`),
		))
		code, out, errs := p.sstack("run", "--rm", "-T", "job", "sh", "-c", `sleep 1; printf 'GET / HTTP/1.0\r\n\r\n' | nc db 80; echo "file=$FROM_FILE"; exit 7`)
		if code != 7 {
			t.Errorf("exit code %d, want the command's 7; stderr:\n%s", code, errs)
		}
		contains(t, "run's output", out, "db-data", "file=yes")
		if st := statuses(p.ps()); st["db-1"] != "running" {
			t.Errorf("the dependency after run: %v", st)
		}
		code, out, errs = p.sstack("run", "--no-deps", "-T", "-e", "EXTRA=1", "-w", "/tmp", "job", "sh", "-c", "echo extra=$EXTRA; pwd")
		if code != 0 {
			t.Errorf("second run: exit code %d:\n%s", code, errs)
		}
		contains(t, "second run", out, "extra=1", "/tmp")
		if names := instances(t, p.name); len(names) != 1 {
			t.Errorf("instances after the runs: %v, want db's only", names)
		}
		p.downLeavesNothing()
	})
}

// A run with no stack running gets a network of its own, with the ports
// it publishes, gone with it.
func TestRunOwnNetworkPublishes(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("web", `["true"]`))
	port := freePort(t)
	r := p.launch("", nil, "run", "-T", "--publish", "127.0.0.1:"+port+":80", "web", "sh", "-c", "mkdir -p /tmp/w && echo one-off > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w")
	if got := get(t, "http://127.0.0.1:"+port+"/"); !strings.Contains(got, "one-off") {
		t.Errorf("the run's published port: %q", got)
	}
	r.interrupt(t)
	p.assertNothingLeft()
	if !unreachable("127.0.0.1:" + port) {
		t.Error("the run's port still answers after it ended")
	}
}

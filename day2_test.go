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
		p.down()
		assertNothingLeft(t, p.name)
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

package instancefs

import (
	"os"
	"path/filepath"
	"testing"

	"sstack/internal/testutil"
)

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// A fake instance root: /etc/app.conf, /srv/data/{a,sub/b}, and an
// absolute link /srv/link -> /srv/data that must resolve inside the root.
func instanceRoot(t *testing.T) string {
	root := t.TempDir()
	write(t, filepath.Join(root, "etc/app.conf"), "conf", 0o640)
	write(t, filepath.Join(root, "srv/data/a"), "A", 0o600)
	write(t, filepath.Join(root, "srv/data/sub/b"), "B", 0o755)
	if err := os.Symlink("/srv/data", filepath.Join(root, "srv/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(root, "srv/data/rel")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestCopyOut(t *testing.T) {
	root, host := instanceRoot(t), t.TempDir()
	// A file to a new name, keeping its mode.
	if err := Copy(root, "/etc/app.conf", "/", filepath.Join(host, "conf")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(host, "conf")); err != nil || fi.Mode().Perm() != 0o640 || testutil.ReadFile(t, filepath.Join(host, "conf")) != "conf" {
		t.Errorf("file: %v %v", fi, err)
	}
	// A directory into an existing directory: below it, under its name;
	// through an absolute link that resolves inside the root.
	if err := Copy(root, "/srv/link/sub", "/", host); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ReadFile(t, filepath.Join(host, "sub/b")); got != "B" {
		t.Errorf("dir: %q", got)
	}
	// Only the contents, with "/.": links copied as links.
	dst := filepath.Join(host, "contents")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Copy(root, "/srv/link/.", "/", dst); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ReadFile(t, filepath.Join(dst, "a")); got != "A" {
		t.Errorf("contents: %q", got)
	}
	if l, err := os.Readlink(filepath.Join(dst, "rel")); err != nil || l != "a" {
		t.Errorf("link: %q %v", l, err)
	}
	// A directory to a new name.
	if err := Copy(root, "/srv/data", "/", filepath.Join(host, "copy")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ReadFile(t, filepath.Join(host, "copy/sub/b")); got != "B" {
		t.Errorf("new dir: %q", got)
	}
	// ".." cannot leave the root.
	if err := Copy(root, "/../../../../etc/app.conf", "/", filepath.Join(host, "dotdot")); err != nil || testutil.ReadFile(t, filepath.Join(host, "dotdot")) != "conf" {
		t.Errorf("..: %v", err)
	}
}

func TestCopyInAndErrors(t *testing.T) {
	root, host := instanceRoot(t), t.TempDir()
	write(t, filepath.Join(host, "in/x"), "X", 0o644)
	if err := Copy("/", filepath.Join(host, "in"), root, "/srv/link"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ReadFile(t, filepath.Join(root, "srv/data/in/x")); got != "X" {
		t.Errorf("in through a link: %q", got)
	}
	if err := Copy("/", filepath.Join(host, "in/x"), root, "/etc/app.conf"); err != nil || testutil.ReadFile(t, filepath.Join(root, "etc/app.conf")) != "X" {
		t.Errorf("onto a file: %v", err)
	}
	for _, tt := range []struct{ src, dst string }{
		{"/nonexistent", host},
		{"/srv/data", filepath.Join(host, "in/x")},
		{"/etc/app.conf", filepath.Join(host, "no/such/dir/f")},
	} {
		if err := Copy(root, tt.src, "/", tt.dst); err == nil {
			t.Errorf("%s -> %s: no error", tt.src, tt.dst)
		}
	}
}

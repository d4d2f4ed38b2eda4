// Package testimg gives tests of every package a working runtime and small
// busybox images built offline from the host's static busybox, cached
// across test processes.
package testimg

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sstack/singularity"
)

// version names the cached images; change it when the rootfs layout
// changes so that stale caches are not reused.
const version = "v2"

// Content of the busybox image for seeding tests.
const (
	SeedDir     = "/srv/seed" // a directory with content
	SeedFile    = "hello.txt" // in SeedDir, mode 0640
	SeedContent = "hello from the image\n"
	SeedNested  = "sub/nested.txt" // in SeedDir
	SeedAbsLink = "/srv/seedlink"  // symlink to /srv/seed
	SeedRelLink = "/srv/rellink"   // symlink to "seed"
	SeedUID     = 1234             // owner of SeedDir and SeedFile when built as root
)

// Unavailable fails the test when CI=true and skips it otherwise: a
// developer machine without Apptainer can still run the unit tests.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

var (
	detectOnce sync.Once
	detected   *singularity.Apptainer
	detectErr  error
)

// RequireRuntime returns a working runtime (SSTACK_RUNTIME names one, else
// apptainer or singularity), or skips the test (fails it when CI=true).
func RequireRuntime(t testing.TB) *singularity.Apptainer {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Apptainer: not with -short")
	}
	detectOnce.Do(func() { detected, detectErr = singularity.Detect(os.Getenv("SSTACK_RUNTIME")) })
	if detectErr != nil {
		Unavailable(t, "integration test needs Apptainer: %v", detectErr)
	}
	return detected
}

func cacheDir(t testing.TB) string {
	t.Helper()
	// Per user: another user's cache is not writable, and images built
	// as root hold files an unprivileged user cannot read.
	dir := filepath.Join(os.TempDir(), "sstack-testimg-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("test image cache: %v", err)
	}
	return dir
}

// staticBusybox finds the host's busybox and checks that it is statically
// linked (package busybox-static): a dynamic one would not run in an image
// without its libraries.
func staticBusybox(t testing.TB) (string, os.FileInfo) {
	t.Helper()
	path, err := exec.LookPath("busybox")
	if err != nil {
		Unavailable(t, "test images need a static busybox: install busybox-static (scripts/install-apptainer.sh does)")
	}
	f, err := elf.Open(path)
	if err != nil {
		Unavailable(t, "busybox %s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			Unavailable(t, "busybox %s is dynamically linked; install busybox-static", path)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, fi
}

// cached returns dir/name, building it with build(tmp) if missing. build
// writes tmp (a path that does not exist yet); tmp is then renamed into
// place, so parallel test processes never see a half-built image. The
// loser of a race throws its copy away.
func cached(t testing.TB, name string, build func(tmp string) error) string {
	t.Helper()
	dir := cacheDir(t)
	final := filepath.Join(dir, name)
	if _, err := os.Lstat(final); err == nil {
		return final
	}
	work, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	tmp := filepath.Join(work, name)
	if err := build(tmp); err != nil {
		t.Fatalf("building test image %s: %v", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Lstat(final); serr != nil {
			t.Fatalf("test image %s: %v", name, err)
		}
	}
	return final
}

func baseKey(t testing.TB) string {
	_, fi := staticBusybox(t)
	sum := sha256.Sum256(fmt.Appendf(nil, "%s %d %d", version, fi.Size(), fi.ModTime().UnixNano()))
	return "busybox-" + version + "-" + hex.EncodeToString(sum[:4])
}

// BusyboxRootfs returns a sandbox-directory image: busybox with all its
// applets, /etc/passwd and /etc/group, the usual empty directories and the
// Seed* content.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	bb, _ := staticBusybox(t)
	return cached(t, baseKey(t)+".rootfs", func(tmp string) error { return writeRootfs(bb, tmp) })
}

func writeRootfs(busybox, root string) error {
	dirs := map[string]os.FileMode{
		"bin": 0o755, "sbin": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "etc": 0o755,
		"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700, "home": 0o755, "proc": 0o755,
		"sys": 0o755, "dev": 0o755, "run": 0o755, "mnt": 0o755, "srv/seed/sub": 0o755,
	}
	for d, mode := range dirs {
		p := filepath.Join(root, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		p := filepath.Join(root, applet)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":              "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":               "root:x:0:\nnogroup:x:65534:\n",
		"srv/seed/sub/nested.txt": "nested\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	seedFile := filepath.Join(root, SeedDir, SeedFile)
	if err := os.WriteFile(seedFile, []byte(SeedContent), 0o664); err != nil {
		return err
	}
	if err := os.Chmod(seedFile, 0o664); err != nil { // umask
		return err
	}
	if err := os.Chmod(filepath.Join(root, SeedDir), 0o775); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{filepath.Join(root, SeedDir), seedFile} {
			if err := os.Lchown(p, SeedUID, SeedUID); err != nil {
				return err
			}
		}
	}
	if err := os.Symlink(SeedDir, filepath.Join(root, SeedAbsLink)); err != nil {
		return err
	}
	return os.Symlink(filepath.Base(SeedDir), filepath.Join(root, SeedRelLink))
}

// Busybox returns a SIF built from BusyboxRootfs. It has no runscript.
func Busybox(t testing.TB) string {
	t.Helper()
	rt := RequireRuntime(t)
	rootfs := BusyboxRootfs(t)
	return cached(t, baseKey(t)+".sif", func(tmp string) error {
		return build(rt, tmp, rootfs)
	})
}

// BusyboxWithRunscript returns a busybox SIF (see BusyboxDef) whose %runscript is
// runscript (shell, run with the arguments of `apptainer run`).
func BusyboxWithRunscript(t testing.TB, runscript string) string {
	t.Helper()
	return BusyboxDef(t, "%runscript\n"+runscript+"\n")
}

// BusyboxDef returns a SIF built from a definition file on top of the busybox rootfs
// with the given sections (%runscript, %startscript, %environment, %labels;
// as root %post fails on machines without CAP_SYS_RESOURCE).
func BusyboxDef(t testing.TB, sections string) string {
	t.Helper()
	rt := RequireRuntime(t)
	// From the rootfs directory, not the SIF: as root on machines that
	// withhold capabilities, a SIF base is unpacked in a container that
	// cannot chown, and fails on the Seed* files (measured).
	base := BusyboxRootfs(t)
	def := "Bootstrap: localimage\nFrom: " + base + "\n\n" + sections
	sum := sha256.Sum256([]byte(def))
	return cached(t, baseKey(t)+"-def-"+hex.EncodeToString(sum[:6])+".sif", func(tmp string) error {
		defFile := tmp + ".def"
		if err := os.WriteFile(defFile, []byte(def), 0o644); err != nil {
			return err
		}
		return build(rt, tmp, defFile)
	})
}

func build(rt *singularity.Apptainer, dest, source string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return rt.Build(ctx, dest, source)
}

// InstanceName returns a unique instance name "sstacktest-RANDOM.base", so
// that parallel tests and leftovers of killed runs never collide.
func InstanceName(t testing.TB, base string) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, base)
	if len(clean) > 200 {
		clean = clean[:200]
	}
	return "sstacktest-" + hex.EncodeToString(b) + "." + clean
}

// StartInstance starts spec (a unique name is filled in when spec.Name is
// empty) and stops the instance at the end of the test. It returns the
// instance name.
func StartInstance(t testing.TB, rt *singularity.Apptainer, spec singularity.InstanceSpec) string {
	t.Helper()
	if spec.Name == "" {
		spec.Name = InstanceName(t, strings.ReplaceAll(t.Name(), "/", "."))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rt.StartInstance(ctx, spec); err != nil {
		t.Fatalf("start instance: %v", err)
	}
	t.Cleanup(func() { StopInstance(t, rt, spec.Name) })
	return spec.Name
}

// StopInstance stops an instance at once (SIGKILL, no grace time); an
// instance that is already gone is fine.
func StopInstance(t testing.TB, rt *singularity.Apptainer, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rt.StopInstance(ctx, name, "SIGKILL", 0); err != nil && !errors.Is(err, singularity.ErrNoInstance) {
		t.Errorf("stop instance %s: %v", name, err)
	}
}

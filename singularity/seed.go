package singularity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// SeedVolume copies the image's content at spec.Path into spec.HostDir
// (created if missing), as Docker fills a new named volume from the image.
// A path the image lacks is not an error: there is nothing to seed.
// Ownership, modes, symlinks and times are kept (ownership only as root).
//
// It needs no tools inside the image: a sandbox directory is read directly;
// from a SIF or squashfs file only the needed paths are extracted with
// unsquashfs (squashfs-tools). Symlinks on the way, such as /var/run ->
// /run, are resolved inside the image, never on the host. The content is
// then copied with the host's `cp -a`.
func (a *Apptainer) SeedVolume(ctx context.Context, spec SeedSpec) error {
	image, pathInImage, hostDir := spec.Image, spec.Path, spec.HostDir
	if !path.IsAbs(pathInImage) {
		return fmt.Errorf("seeding from %s: path %q in the image is not absolute", image, pathInImage)
	}
	img, err := filepath.Abs(image)
	if err != nil {
		return err
	}
	fi, err := os.Stat(img)
	if err != nil {
		return fmt.Errorf("seeding from image: %w", err)
	}
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return fmt.Errorf("seeding %s: %w", hostDir, err)
	}
	root, fetch := img, func(string) error { return nil }
	if !fi.IsDir() {
		offset, err := a.squashfsOffset(ctx, img)
		if err != nil {
			return err
		}
		unsquashfs, err := exec.LookPath("unsquashfs")
		if err != nil {
			return fmt.Errorf("seeding from %s: unsquashfs not found; install squashfs-tools (scripts/install-apptainer.sh does)", image)
		}
		// Next to hostDir, on the same filesystem as the volume, rather
		// than in a possibly small /tmp.
		tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(hostDir)), ".sstack-seed-")
		if err != nil {
			return fmt.Errorf("seeding %s: %w", hostDir, err)
		}
		defer os.RemoveAll(tmp)
		root = filepath.Join(tmp, "root")
		fetch = func(rel string) error {
			return extract(ctx, unsquashfs, img, offset, root, rel)
		}
	}
	rel, found, err := resolveInRoot(root, pathInImage, fetch)
	if err != nil {
		return fmt.Errorf("seeding from %s at %s: %w", image, pathInImage, err)
	}
	if !found {
		return nil
	}
	src := filepath.Join(root, rel)
	sfi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("seeding from %s at %s: %w", image, pathInImage, err)
	}
	if !sfi.IsDir() {
		return fmt.Errorf("seeding from %s: %s is a file in the image, a volume can only be mounted on a directory", image, pathInImage)
	}
	// "src/." copies the content and the directory's own owner and mode
	// onto hostDir, as Docker gives the volume the image directory's.
	var out bytes.Buffer
	cp := exec.CommandContext(ctx, "cp", "-a", "--", src+"/.", hostDir+"/")
	cp.Stdout, cp.Stderr = &out, &out
	if err := cp.Run(); err != nil {
		return fmt.Errorf("seeding %s from %s at %s: cp: %v: %s", hostDir, image, pathInImage, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// squashfsOffset finds where the root filesystem starts in a SIF (from
// `sif list`) or returns 0 for a bare squashfs file.
func (a *Apptainer) squashfsOffset(ctx context.Context, img string) (int64, error) {
	f, err := os.Open(img)
	if err != nil {
		return 0, fmt.Errorf("seeding from image: %w", err)
	}
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err == nil && string(magic) == "hsqs" {
		return 0, nil
	}
	stdout, stderr, err := a.output(ctx, "-s", "sif", "list", img)
	if err != nil {
		return 0, fmt.Errorf("seeding from %s: not a SIF or squashfs image: %s (%v)", img, summarize(append(stderr, stdout...)), err)
	}
	off, err := parseSIFList(stdout)
	if err != nil {
		return 0, fmt.Errorf("seeding from %s: %w", img, err)
	}
	return off, nil
}

// parseSIFList finds the primary squashfs partition in `sif list` output:
//
//	3    |1       |NONE    |36864-1081344             |FS (Squashfs/*System/amd64)
func parseSIFList(out []byte) (int64, error) {
	for _, line := range strings.Split(string(out), "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 5 {
			continue
		}
		typ := strings.TrimSpace(cols[4])
		if !strings.HasPrefix(typ, "FS (Squashfs/") || !strings.Contains(typ, "System") {
			continue
		}
		start, _, ok := strings.Cut(strings.TrimSpace(cols[3]), "-")
		off, err := strconv.ParseInt(start, 10, 64)
		if !ok || err != nil {
			return 0, fmt.Errorf("unexpected `sif list` line %q", line)
		}
		return off, nil
	}
	return 0, errors.New("the image has no plain squashfs root filesystem (encrypted, ext3 and OCI-SIF images cannot be seeded); seed the volume by hand")
}

// extract unpacks rel (and everything under it) from the squashfs at
// offset into dest. A path the image lacks is not an error.
func extract(ctx context.Context, unsquashfs, img string, offset int64, dest, rel string) error {
	args := []string{"-n", "-q", "-f", "-no-wildcards", "-o", strconv.FormatInt(offset, 10), "-d", dest}
	if os.Geteuid() != 0 {
		// Unprivileged users cannot set security.* xattrs.
		args = append(args, "-no-xattrs")
	}
	args = append(args, img)
	if rel != "" {
		args = append(args, rel)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, unsquashfs, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("unsquashfs %s: %v: %s", rel, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// maxSymlinks bounds symlink resolution, like the kernel's ELOOP limit.
const maxSymlinks = 40

// resolveInRoot resolves p as if root were "/": symlinks are followed with
// absolute targets taken relative to root and ".." never leaving it. It
// returns the resolved path relative to root, or found=false when a
// component is missing. fetch(rel) is called before rel is looked at, to
// make it present (extract it) when root is filled lazily.
func resolveInRoot(root, p string, fetch func(rel string) error) (rel string, found bool, err error) {
	rel = cleanRel(p)
	links := 0
	if err := fetch(rel); err != nil {
		return "", false, err
	}
walk:
	for {
		comps := []string{}
		if rel != "" {
			comps = strings.Split(rel, "/")
		}
		cur := ""
		for i, c := range comps {
			next := path.Join(cur, c)
			fi, err := os.Lstat(filepath.Join(root, next))
			if errors.Is(err, os.ErrNotExist) {
				// Extracting a path below a symlink extracts nothing past
				// it: fetch the component itself to see what it is.
				if err := fetch(next); err != nil {
					return "", false, err
				}
				fi, err = os.Lstat(filepath.Join(root, next))
			}
			if errors.Is(err, os.ErrNotExist) {
				return "", false, nil
			}
			if err != nil {
				return "", false, err
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				links++
				if links > maxSymlinks {
					return "", false, fmt.Errorf("too many levels of symbolic links at %s", "/"+next)
				}
				target, err := os.Readlink(filepath.Join(root, next))
				if err != nil {
					return "", false, err
				}
				base := cur
				if path.IsAbs(target) {
					base = ""
				}
				rel = cleanRel(path.Join(append([]string{base, target}, comps[i+1:]...)...))
				if err := fetch(rel); err != nil {
					return "", false, err
				}
				continue walk
			}
			if !fi.IsDir() && i < len(comps)-1 {
				return "", false, nil // a file where a directory should be
			}
			cur = next
		}
		return rel, true, nil
	}
}

// cleanRel cleans p as an absolute path and makes it relative to "/".
func cleanRel(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// Package instancefs copies files into and out of a running instance's
// file system, as `docker compose cp` does, through the root of a process
// in it (/proc/PID/root). Paths inside are resolved as the instance sees
// them (openat2 RESOLVE_IN_ROOT: its absolute symlinks stay inside), and
// no tool of the image is needed. Used by `sstack cp`.
package instancefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Copy copies src, a path in the tree rooted at srcRoot, to dst in the
// tree rooted at dstRoot ("/" for the host), with docker cp's rules:
// into dst when dst is a directory (only the contents when src ends in
// "/."), else to dst itself, whose parent must exist. Directories are
// copied whole, symbolic links as links, modes kept; files are owned by
// the user who copies.
func Copy(srcRoot, src, dstRoot, dst string) error {
	sr, err := openRoot(srcRoot)
	if err != nil {
		return err
	}
	defer unix.Close(sr)
	dr, err := openRoot(dstRoot)
	if err != nil {
		return err
	}
	defer unix.Close(dr)

	contentsOnly := strings.HasSuffix(src, "/.")
	// A link is copied as a link, unless the path says it means the
	// directory (a trailing / or /.).
	var nofollow uint64 = unix.O_NOFOLLOW
	if contentsOnly || strings.HasSuffix(src, "/") {
		nofollow = 0
	}
	s, err := resolve(sr, src, nofollow)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	defer unix.Close(s)
	var st unix.Stat_t
	if err := unix.Fstat(s, &st); err != nil {
		return err
	}
	name := path.Base(path.Clean("/" + src))
	d, err := resolve(dr, dst, 0)
	switch {
	case err == nil:
		defer unix.Close(d)
		var dt unix.Stat_t
		if err := unix.Fstat(d, &dt); err != nil {
			return err
		}
		if isDir(dt) {
			if isDir(st) && contentsOnly {
				return copyContents(s, d)
			}
			return copyEntry(s, st, d, name)
		}
		if isDir(st) {
			return fmt.Errorf("%s is a directory and %s is not: cannot copy a directory onto a file", src, dst)
		}
		parent, err := resolve(dr, path.Dir(path.Clean("/"+dst)), 0)
		if err != nil {
			return err
		}
		defer unix.Close(parent)
		return copyEntry(s, st, parent, path.Base(path.Clean("/"+dst)))
	case errors.Is(err, unix.ENOENT):
		if strings.HasSuffix(dst, "/") {
			return fmt.Errorf("%s: no such directory", dst)
		}
		parent, err := resolve(dr, path.Dir(path.Clean("/"+dst)), 0)
		if err != nil {
			return fmt.Errorf("%s: %w", path.Dir(path.Clean("/"+dst)), err)
		}
		defer unix.Close(parent)
		return copyEntry(s, st, parent, path.Base(path.Clean("/"+dst)))
	default:
		return fmt.Errorf("%s: %w", dst, err)
	}
}

func openRoot(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: root, Err: err}
	}
	return fd, nil
}

// resolve opens p (O_PATH) as seen from root: ".." and absolute symbolic
// links never leave it.
func resolve(root int, p string, flags uint64) (int, error) {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	return unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | flags,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

func isDir(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// reopen opens an O_PATH descriptor for reading.
func reopen(fd int, flags int) (*os.File, error) {
	return os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), flags, 0)
}

// copyEntry copies the entry s (O_PATH, stat st) to name in the directory dir.
func copyEntry(s int, st unix.Stat_t, dir int, name string) error {
	mode := uint32(st.Mode & 0o7777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		in, err := reopen(s, os.O_RDONLY)
		if err != nil {
			return err
		}
		defer in.Close()
		fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out := os.NewFile(uintptr(fd), name)
		defer out.Close()
		if _, err := io.Copy(out, in); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return unix.Fchmod(fd, mode)
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dir, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: %w", name, err)
		}
		d, err := unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer unix.Close(d)
		if err := copyContents(s, d); err != nil {
			return err
		}
		return unix.Fchmodat(dir, name, mode, 0)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(s, "", buf)
		if err != nil {
			return err
		}
		_ = unix.Unlinkat(dir, name, 0)
		return unix.Symlinkat(string(buf[:n]), dir, name)
	}
	return fmt.Errorf("%s: not a file, directory or symbolic link: not copied", name)
}

// copyContents copies every entry of the directory s into the directory d.
func copyContents(s, d int) error {
	dir, err := reopen(s, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		c, err := unix.Openat(s, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(c, &st); err == nil {
			err = copyEntry(c, st, d, n)
			if err != nil {
				errs = append(errs, err)
			}
		}
		unix.Close(c)
	}
	return errors.Join(errs...)
}

// HostPath is p made absolute against the current directory, for Copy's
// host side (rooted at "/").
func HostPath(p string) (string, error) {
	if p == "-" {
		return "", errors.New("- (a tar stream on stdin or stdout) is not supported; give a path")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(p, "/.") {
		abs += "/."
	} else if strings.HasSuffix(p, "/") {
		abs += "/"
	}
	return abs, nil
}

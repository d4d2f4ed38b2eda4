package images

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sstack/compose"
)

// bigFile: files larger than this count by size and modification time,
// not content, so that a context holding a data set is not read whole at
// every build.
const bigFile = 16 << 20

// buildHash digests what an image is built from: the definition file and
// every file of the build context (path, type, mode, and content, or size
// and time for big files). Left out: .git, the state directory, and the
// image directory when it lies inside the context (the SIF and its own
// files would change the hash at every build).
func buildHash(b *compose.ImageBuild, target, stateDir string) (string, error) {
	h := sha256.New()
	if err := hashFile(h, b.Definition, 0); err != nil {
		return "", fmt.Errorf("definition file: %w", err)
	}
	imageDir := filepath.Dir(target)
	base := filepath.Base(target)
	err := filepath.WalkDir(b.Context, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Unreadable: count it by name only.
			fmt.Fprintf(h, "%s\x00unreadable\x00", p)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(b.Context, p)
		if d.IsDir() {
			if p != b.Context && (d.Name() == ".git" || p == stateDir || p == imageDir) {
				return fs.SkipDir
			}
		} else if filepath.Dir(p) == imageDir && (d.Name() == base || strings.HasPrefix(d.Name(), "."+base+".")) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		fmt.Fprintf(h, "%s\x00%v\x00", rel, fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			link, _ := os.Readlink(p)
			fmt.Fprintf(h, "%s\x00", link)
		case fi.Mode().IsRegular() && fi.Size() > bigFile:
			fmt.Fprintf(h, "%d\x00%d\x00", fi.Size(), fi.ModTime().UnixNano())
		case fi.Mode().IsRegular():
			if err := hashFile(h, p, fi.Size()); err != nil {
				fmt.Fprintf(h, "unreadable\x00%d\x00%d\x00", fi.Size(), fi.ModTime().UnixNano())
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(h, "%d\x00", size)
	_, err = io.Copy(h, f)
	return err
}

// hashFileOf is where the hash of the last build of target is kept:
// beside it, hidden.
func hashFileOf(target string) string {
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".build")
}

func storedHash(target string) string {
	b, err := os.ReadFile(hashFileOf(target))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func storeHash(target, hash string) error {
	tmp := hashFileOf(target) + ".new"
	if err := os.WriteFile(tmp, []byte(hash+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, hashFileOf(target))
}

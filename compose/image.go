package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// imageLookup is the outcome of resolving a service's `image:`.
type imageLookup struct {
	Path  string   // the SIF, .simg or sandbox directory found; "" if none
	Tried []string // every path looked at, for the error message
	// Source is what `apptainer pull` fetches the image from (e.g.
	// docker://redis:7); "" when the reference is a local path.
	Source string
}

// isImagePath reports whether an `image:` value names a local file or
// directory rather than a registry reference. Only unambiguous spellings
// count: a bare "nginx" stays a reference even when a directory of that
// name (often a build context) exists in the project.
func isImagePath(ref string) bool {
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") {
		return true
	}
	return strings.HasSuffix(ref, ".sif") || strings.HasSuffix(ref, ".simg")
}

// lookupImage resolves ref: a local path (relative to projectDir), or a
// registry reference whose SIF is expected in imageDir under the name
// `apptainer pull` would give it.
func lookupImage(ref, projectDir, imageDir string) imageLookup {
	if isImagePath(ref) {
		p := ref
		if !filepath.IsAbs(p) {
			p = filepath.Join(projectDir, p)
		}
		l := imageLookup{Tried: []string{p}}
		if _, err := os.Stat(p); err == nil {
			l.Path = p
		}
		return l
	}
	uri := ref
	if !strings.Contains(ref, "://") {
		uri = "docker://" + ref
	}
	p := filepath.Join(imageDir, pullName(uri))
	l := imageLookup{Tried: []string{p}, Source: uri}
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		l.Path = p
	}
	return l
}

// pullName is the file name `apptainer pull URI` gives an image when no
// destination is named: the last path component of the reference, "_",
// the tag ("latest" if none), ".sif"; for http(s) URLs, the last path
// component as it is. It mirrors GetName in Apptainer's
// internal/pkg/util/uri, quirks included: for a digest reference
// (redis@sha256:abc) the split happens at the last component's first
// colon, giving "redis@sha256_abc.sif".
func pullName(uri string) string {
	transport, ref, ok := strings.Cut(uri, "://")
	if !ok {
		ref = uri
	}
	ref = strings.TrimLeft(ref, "/")
	parts := strings.Split(ref, "/")
	name := parts[len(parts)-1]
	if transport == "http" || transport == "https" {
		return name
	}
	tag := "latest"
	if strings.Contains(name, ":") {
		fields := strings.Split(name, ":")
		name, tag = fields[0], fields[1]
		if i := strings.Index(tag, ","); i >= 0 {
			tag = tag[:i]
		}
	}
	return fmt.Sprintf("%s_%s.sif", name, tag)
}

// shellQuote quotes s for a POSIX shell when it needs it, so that commands
// in error messages can be pasted as they are.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:@=+,%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

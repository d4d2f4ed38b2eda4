package singularity

import (
	"context"
	"errors"
	"path/filepath"
)

// BuildSpec says what `apptainer build` builds and where.
type BuildSpec struct {
	Definition string // the definition file (absolute or relative to Dir)
	Dest       string // the SIF to write; replaced atomically
	// Dir is the build's working directory (compose's build context):
	// relative paths of %files are relative to it.
	Dir string
	// Fakeroot builds with --fakeroot, which an unprivileged user needs.
	Fakeroot bool
	Phase    func(string)
}

// BuildImage runs `apptainer build [--fakeroot] TMP DEFINITION` in
// spec.Dir, then renames TMP to spec.Dest, as Pull does.
func (a *Apptainer) BuildImage(ctx context.Context, spec BuildSpec) error {
	if spec.Definition == "" || spec.Dest == "" {
		return errors.New("build: no definition file or destination given")
	}
	def := spec.Definition
	if !filepath.IsAbs(def) {
		def = filepath.Join(spec.Dir, def)
	}
	return a.intoPlace(ctx, spec.Dest, spec.Dir, spec.Phase, func(tmp string) []string {
		return buildArgs(tmp, def, spec.Fakeroot)
	}, "building "+spec.Dest+" from "+spec.Definition)
}

func buildArgs(tmp, definition string, fakeroot bool) []string {
	args := []string{"build"}
	if fakeroot {
		args = append(args, "--fakeroot")
	}
	return append(args, tmp, definition)
}

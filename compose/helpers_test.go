package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a project directory in a temporary directory, with an image
// directory and a state base beside it.
type fixture struct {
	dir      string // project directory (its base name is "app")
	imageDir string
	state    string
}

// newFixture writes files (path relative to the project directory ->
// content) and creates empty SIFs in the image directory. Files whose
// name contains "secret" or ends in ".pw" get mode 0600.
func newFixture(t *testing.T, files map[string]string, images ...string) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{
		dir:      filepath.Join(root, "app"),
		imageDir: filepath.Join(root, "images"),
		state:    filepath.Join(root, "state"),
	}
	for _, d := range []string{f.dir, f.imageDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		p := filepath.Join(f.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.Contains(name, "secret") || strings.HasSuffix(name, ".pw") {
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, img := range images {
		if err := os.WriteFile(filepath.Join(f.imageDir, img), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// opts are hermetic options for the fixture: no process environment.
func (f *fixture) opts(env ...string) Options {
	return Options{
		WorkingDir: f.dir,
		ImageDir:   f.imageDir,
		StateBase:  f.state,
		Environ:    append([]string{"HOME=" + filepath.Dir(f.dir)}, env...),
	}
}

func (f *fixture) load(t *testing.T, o Options) (*Plan, error) {
	t.Helper()
	return Load(context.Background(), o)
}

func (f *fixture) mustLoad(t *testing.T, o Options) *Plan {
	t.Helper()
	p, err := Load(context.Background(), o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

// problems splits a joined error into its messages.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func warningsOf(p *Plan, service string) []Warning {
	var out []Warning
	for _, w := range p.Warnings {
		if w.Service == service {
			out = append(out, w)
		}
	}
	return out
}

func hasWarning(p *Plan, service, key string) bool {
	for _, w := range p.Warnings {
		if w.Service == service && w.Key == key {
			return true
		}
	}
	return false
}

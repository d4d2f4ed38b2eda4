package compose

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"
)

// corpusDir finds the shared corpus of real compose files: CI has
// ../shared beside the repository clone.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "shared", "corpus", "awesome-compose"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus missing in CI: %v", err)
		}
		t.Skipf("corpus not found: %v", err)
	}
	return dir
}

type corpusProject struct {
	name  string
	dir   string // original, read-only
	model *types.Project
}

func corpusProjects(t *testing.T) []corpusProject {
	t.Helper()
	root := corpusDir(t)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusProject
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		files := existing(dir, cli.DefaultFileNames)
		if len(files) == 0 {
			t.Errorf("%s: no compose file", dir)
			continue
		}
		po, err := cli.NewProjectOptions(files, cli.WithWorkingDirectory(dir), cli.WithEnv([]string{}),
			cli.WithEnvFiles(), cli.WithDotEnv, cli.WithConsistency(false))
		if err != nil {
			t.Fatal(err)
		}
		model, err := po.LoadProject(context.Background())
		if err != nil {
			t.Fatalf("%s: compose-go cannot load it: %v", dir, err)
		}
		out = append(out, corpusProject{name: e.Name(), dir: dir, model: model})
	}
	if len(out) < 20 {
		t.Errorf("found %d corpus projects, want 20", len(out))
	}
	return out
}

// copyTree copies a project into dst, making secret files private as the
// README of a stack would tell its users to.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.Contains(rel, "password") {
			mode = 0o600
		}
		return os.WriteFile(target, b, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// corpusFixture copies project c and puts a dummy SIF in the image
// directory for every registry image it references.
func corpusFixture(t *testing.T, c corpusProject) (dir string, o Options) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, c.name)
	copyTree(t, c.dir, dir)
	o = Options{
		WorkingDir: dir,
		ImageDir:   filepath.Join(root, "images"),
		StateBase:  filepath.Join(root, "state"),
		Environ:    []string{"HOME=" + root},
	}
	if err := os.MkdirAll(o.ImageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.model.Services {
		if s.Image != "" {
			touch(t, filepath.Join(o.ImageDir, pullName("docker://"+s.Image)))
		}
	}
	return dir, o
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

type problemID struct{ service, key string }

// shellName is what Apptainer accepts as an environment variable name,
// spelled here independently of the code under test.
var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// badEnvNames are the environment variables of s that Apptainer refuses
// (elasticsearch's discovery.type, for one).
func badEnvNames(s types.ServiceConfig) []string {
	var out []string
	for k := range s.Environment {
		if !shellName.MatchString(k) {
			out = append(out, k)
		}
	}
	return out
}

// TestCorpusErrors: with the registry images present, the only problems
// are the ones sstack cannot work around, each reported precisely: a
// bind with create_host_path: false of a file the corpus did not copy,
// and environment variables Apptainer cannot pass. A build-only service's
// missing image (a Dockerfile) is no error, but config's warning says
// what to do.
func TestCorpusErrors(t *testing.T) {
	for _, c := range corpusProjects(t) {
		t.Run(c.name, func(t *testing.T) {
			dir, o := corpusFixture(t, c)
			want := map[problemID]bool{}
			builds := map[string]bool{}
			for name, s := range c.model.Services {
				if s.Image == "" && s.Build != nil {
					builds[name] = true
					// The corpus keeps compose files only; the real
					// projects have their Dockerfiles.
					rel, _ := filepath.Rel(c.dir, filepath.Join(s.Build.Context, s.Build.Dockerfile))
					if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, rel), []byte("FROM scratch\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if len(badEnvNames(s)) > 0 {
					want[problemID{name, "environment"}] = true
				}
				for _, v := range s.Volumes {
					if v.Type == types.VolumeTypeBind && v.Bind != nil && !v.Bind.CreateHostPath {
						rel, _ := filepath.Rel(c.dir, v.Source)
						if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
							want[problemID{name, "volumes"}] = true
						}
					}
				}
			}
			plan, err := Load(context.Background(), o)
			got := map[problemID]bool{}
			var joined interface{ Unwrap() []error }
			if err != nil && !errors.As(err, &joined) {
				t.Fatalf("Load: a single error that is not a list of problems: %v", err)
			}
			if err != nil {
				for _, e := range joined.Unwrap() {
					var pe *Error
					if !errors.As(e, &pe) {
						t.Fatalf("not an *Error: %v", e)
					}
					got[problemID{pe.Service, pe.Key}] = true
					switch pe.Key {
					case "volumes":
						if !strings.Contains(pe.Message, "does not exist and create_host_path is false; create it") || !strings.Contains(pe.Message, "./") {
							t.Errorf("%v: want the missing path and what to do", pe)
						}
					case "environment":
						if !strings.Contains(pe.Message, "Apptainer allows only letters, digits and '_'") {
							t.Errorf("%v: want the rule", pe)
						}
					}
				}
			}
			if len(want) == 0 && plan == nil {
				t.Fatalf("Load: %v", err)
			}
			if plan != nil {
				missing := map[string]string{}
				for _, w := range plan.MissingImages() {
					missing[w.Service] = w.String()
				}
				for name := range builds {
					for _, s := range []string{`service "` + name + `": build: `, c.name + "-" + name + "+latest.sif", "is a Dockerfile", "docker save", "docker-archive://", "Bootstrap:", "x-sstack.definition"} {
						if !strings.Contains(missing[name], s) {
							t.Errorf("missing image warning %q: want %q in it", missing[name], s)
						}
					}
				}
			}
			for id := range want {
				if !got[id] {
					t.Errorf("no %q problem for service %q; got %q", id.key, id.service, problems(err))
				}
			}
			for id := range got {
				if !want[id] {
					t.Errorf("unexpected problem: %q", problems(err))
				}
			}
		})
	}
}

// TestCorpusSecretsReadableByOthers: a corpus password file that group or
// others can read is refused with its mode and the chmod to run; one they
// cannot read is accepted. The expectation comes from each file's mode as
// found, which depends on how the corpus was copied.
func TestCorpusSecretsReadableByOthers(t *testing.T) {
	for _, c := range corpusProjects(t) {
		if len(c.model.Secrets) == 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			s, ok := c.model.Secrets["db-password"]
			if !ok || s.File == "" {
				t.Fatalf("no file secret db-password: %v", c.model.Secrets)
			}
			fi, err := os.Stat(s.File)
			if err != nil {
				t.Fatal(err)
			}
			mode := fi.Mode().Perm()
			_, o := corpusFixture(t, c)
			o.WorkingDir = c.dir
			_, err = Load(context.Background(), o)
			found := false
			for _, msg := range problems(err) {
				if strings.Contains(msg, `secret "db-password"`) {
					found = true
					who := "others"
					if mode&0o004 == 0 {
						who = "its group"
					}
					want := fmt.Sprintf("readable by %s (mode %04o); run chmod 600 ", who, mode)
					if !strings.Contains(msg, want) || !strings.Contains(msg, "password.txt") {
						t.Errorf("want %q and the file: %s", want, msg)
					}
				}
			}
			if refused := mode&0o044 != 0; found != refused {
				t.Errorf("secret file of mode %04o: refused %v, want %v: %q", mode, found, refused, problems(err))
			}
		})
	}
}

// TestCorpusEveryKeyHandled loads every corpus file with the images the
// stacks need (including a SIF of what `docker compose build` would make)
// and the files they bind: each must give a plan, and every key set in the
// file must be translated or named in a warning. The keys set are found
// by compose-go's own walk of the file, independent of Translate.
func TestCorpusEveryKeyHandled(t *testing.T) {
	for _, c := range corpusProjects(t) {
		t.Run(c.name, func(t *testing.T) {
			dir, o := corpusFixture(t, c)
			var renames []string
			for name, s := range c.model.Services {
				for _, k := range badEnvNames(s) {
					renames = append(renames, k, strings.Map(func(r rune) rune {
						if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
							return r
						}
						return '_'
					}, k))
				}
				if s.Image == "" {
					touch(t, filepath.Join(o.ImageDir, pullName("docker://"+builtName(c.name, name))))
				}
				for _, v := range s.Volumes {
					if v.Type == types.VolumeTypeBind && v.Bind != nil && !v.Bind.CreateHostPath {
						rel, _ := filepath.Rel(c.dir, v.Source)
						p := filepath.Join(dir, rel)
						if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
							t.Fatal(err)
						}
						touch(t, p)
					}
				}
			}
			if len(renames) > 0 {
				// Names Apptainer refuses (TestCorpusErrors): renamed, to
				// check the rest of the file.
				for _, f := range existing(dir, cli.DefaultFileNames) {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(f, []byte(strings.NewReplacer(renames...).Replace(string(b))), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			plan, err := Load(context.Background(), o)
			if err != nil {
				t.Fatalf("Load: %q", problems(err))
			}
			for _, f := range unhandledKeys(t, dir) {
				if !strings.HasPrefix(string(f), "services.") {
					if !hasWarning(plan, "", f.Parts()[0]) && !hasWarning(plan, "", string(f)) {
						t.Errorf("%s set but not warned about; warnings: %v", f, plan.Warnings)
					}
					continue
				}
				parts := f.Parts()
				service, key := parts[1], parts[2]
				if key == "deploy" && len(parts) > 3 {
					key += "." + parts[3]
				}
				if !hasWarning(plan, service, key) {
					t.Errorf("%s set but not warned about; warnings: %v", f, warningsOf(plan, service))
				}
			}
		})
	}
}

// unhandledKeys lists the attributes set in the project in dir that
// sstack must warn about, found by compose-go's walk of the file with an
// allow-list: every top-level section but the ignored ones, and the
// service keys Translate reads (less those it warns about for the values
// the corpus uses). Built from translatedServiceKeys, so a key missing
// from both key tables is reported, and then fails for want of a warning.
func unhandledKeys(t *testing.T, dir string) []tree.Path {
	t.Helper()
	warnedTopLevel := []string{"jobs", "models"}
	// ports are published on the project network (the corpus runs on
	// it) and warned about on the host's.
	conditional := []string{"build", "deploy", "network_mode", "init"}
	translated := slices.DeleteFunc(slices.Clone(translatedServiceKeys), func(k string) bool { return slices.Contains(conditional, k) })
	var supported []tree.Path
	for _, p := range schema.AttributePaths() {
		parts := p.Parts()
		switch {
		case parts[0] != "services":
			if !slices.Contains(warnedTopLevel, parts[0]) {
				supported = append(supported, p)
			}
		case len(parts) < 3:
			supported = append(supported, p)
		case slices.Contains(translated, parts[2]):
			supported = append(supported, p)
		case parts[2] == "deploy" && (len(parts) == 3 || slices.Contains([]string{"replicas", "restart_policy", "mode"}, parts[3])):
			supported = append(supported, p)
		}
	}
	var findings []loader.UnsupportedAttribute
	po, err := cli.NewProjectOptions(existing(dir, cli.DefaultFileNames), cli.WithWorkingDirectory(dir),
		cli.WithEnv([]string{}), cli.WithEnvFiles(), cli.WithDotEnv, cli.WithConsistency(false),
		cli.WithLoadOptions(loader.WithSupportedAttributes(supported, func(f []loader.UnsupportedAttribute) { findings = f })))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := po.LoadProject(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := make([]tree.Path, len(findings))
	for i, f := range findings {
		out[i] = f.Path
	}
	return out
}

package compose

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/schema"
	"go.yaml.in/yaml/v4"
)

// FuzzLoad loads fuzzed compose files. Properties: Load does not panic
// (compose-go's panics included), and a plan it accepts passes the
// pre-start checks up runs (Plan.Check), for every replica, and prints as
// YAML. Seeds: every file of the shared corpus and the compose snippets
// of this package's tests.
//
//	go test -run '^$' -fuzz FuzzLoad -fuzztime 60s ./compose/
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	images := f.TempDir()
	// Registry images the seeds name, so that they get past image lookup.
	for _, s := range fuzzSeeds(f) {
		var m map[string]any
		if yaml.Unmarshal(s, &m) != nil {
			continue
		}
		services, _ := m["services"].(map[string]any)
		for _, sc := range services {
			if img, ok := sc.(map[string]any)["image"].(string); ok && !isImagePath(img) && !strings.Contains(img, "$") {
				_ = os.WriteFile(filepath.Join(images, pullName("docker://"+img)), nil, 0o644)
			}
		}
	}
	for _, img := range fixtureImages {
		_ = os.WriteFile(filepath.Join(images, img), nil, 0o644)
	}
	// One project directory for every input: Load only reads it.
	dir := f.TempDir()
	project := filepath.Join(dir, "app")
	// Files the seeds refer to.
	for name, mode := range map[string]os.FileMode{
		"x.sif": 0o644, "data/.keep": 0o644, "db/password.txt": 0o600, "secret.txt": 0o600, "pw.txt": 0o600,
	} {
		p := filepath.Join(project, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(filepath.Join(project, "compose.yaml"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		// A load that hangs is a failure too: the fuzzer has no time
		// limit of its own, so crash the worker, which saves the input.
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("Load has not returned after 10s on:\n%s", content))
		})
		defer watchdog.Stop()
		plan, err := Load(context.Background(), Options{
			WorkingDir: project,
			ImageDir:   images,
			StateBase:  filepath.Join(dir, "state"),
			Environ:    []string{"HOME=" + dir},
		})
		if err != nil {
			if plan != nil {
				t.Fatalf("a plan and an error: %v", err)
			}
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		if err := plan.Check(); err != nil {
			t.Fatalf("Load accepted a plan that up refuses:\n%v\n--- compose file:\n%s", err, content)
		}
		// And, spelled independently of Check, what Apptainer needs.
		for i := range plan.Services {
			s := &plan.Services[i]
			if len(InstanceName(plan.Project, s.Name, s.Replicas)) > 250 {
				t.Fatalf("service %q: instance name too long", s.Name)
			}
			for n := 1; n <= min(max(s.Replicas, 1), 3); n++ {
				r := s.ForReplica(n)
				for _, kv := range r.Environment {
					if k, _, _ := strings.Cut(kv, "="); !shellName.MatchString(k) {
						t.Fatalf("service %q: environment variable %q accepted", s.Name, k)
					}
				}
				for _, m := range r.Mounts {
					if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) == "/" || !filepath.IsAbs(m.Source) && m.Kind != MountTmpfs {
						t.Fatalf("service %q: mount %+v accepted", s.Name, m)
					}
				}
				if r.WorkingDir != "" && !filepath.IsAbs(r.WorkingDir) {
					t.Fatalf("service %q: working_dir %q accepted", s.Name, r.WorkingDir)
				}
			}
		}
		var b bytes.Buffer
		if err := plan.Print(&b); err != nil {
			t.Fatal(err)
		}
		var printed map[string]any
		if err := yaml.Unmarshal(b.Bytes(), &printed); err != nil {
			t.Fatalf("config output is not YAML: %v\n%s", err, b.String())
		}
	})
}

// fuzzSeeds are the files of the shared corpus and the compose snippets
// of this package's tests: string literals holding a whole compose file,
// and those that are service keys (`command: true`), put in a service.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	if root, err := filepath.Abs(filepath.Join("..", "..", "shared", "corpus")); err == nil {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if b, err := os.ReadFile(p); err == nil {
					seeds = append(seeds, b)
				}
			}
			return nil
		})
	}
	if len(seeds) == 0 && os.Getenv("CI") == "true" {
		tb.Fatal("no shared corpus in CI")
	}
	serviceKeys := map[string]bool{}
	for _, p := range schema.AttributePaths() {
		if parts := p.Parts(); len(parts) >= 3 && parts[0] == "services" {
			serviceKeys[parts[2]] = true
		}
	}
	files, _ := filepath.Glob("*_test.go")
	fset := token.NewFileSet()
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			tb.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			key, _, _ := strings.Cut(strings.TrimSpace(s), ":")
			switch {
			case strings.Contains(s, "services:"):
				seeds = append(seeds, []byte(s))
			case serviceKeys[key] && strings.Contains(s, ":"):
				lines := strings.Split(strings.TrimLeft(s, "\n"), "\n")
				indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
				for i, l := range lines {
					lines[i] = "    " + strings.TrimPrefix(l, strings.Repeat(" ", indent))
				}
				seeds = append(seeds, []byte("services:\n  a:\n    image: busybox\n"+strings.Join(lines, "\n")+"\n"))
			}
			return true
		})
	}
	return seeds
}

package compose

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestProjectNamePrecedence(t *testing.T) {
	const named = "name: fromfile\nservices:\n  a:\n    image: redis:7\n"
	const unnamed = "services:\n  a:\n    image: redis:7\n"
	tests := []struct {
		name    string
		compose string
		dotenv  string
		flag    string
		env     []string
		want    string
	}{
		{name: "directory", compose: unnamed, want: "app"},
		{name: "name key over directory", compose: named, want: "fromfile"},
		{name: "COMPOSE_PROJECT_NAME over name key", compose: named, env: []string{"COMPOSE_PROJECT_NAME=fromenv"}, want: "fromenv"},
		{name: "COMPOSE_PROJECT_NAME from .env", compose: named, dotenv: "COMPOSE_PROJECT_NAME=fromdotenv\n", want: "fromdotenv"},
		{name: "flag over everything", compose: named, flag: "flag", env: []string{"COMPOSE_PROJECT_NAME=fromenv"}, want: "flag"},
		{name: "interpolated name key", compose: "name: ${STACK}-x\nservices:\n  a:\n    image: redis:7\n", env: []string{"STACK=blue"}, want: "blue-x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"compose.yaml": tt.compose}
			if tt.dotenv != "" {
				files[".env"] = tt.dotenv
			}
			f := newFixture(t, files, fixtureImages...)
			o := f.opts(tt.env...)
			o.ProjectName = tt.flag
			p := f.mustLoad(t, o)
			eq(t, p.Project, tt.want)
			eq(t, p.StateDir, filepath.Join(f.state, tt.want))
			eq(t, p.WorkingDir, f.dir)
		})
	}
}

func TestProjectNameFromDirectoryIsNormalised(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "My App.v2")
	writeFile(t, filepath.Join(dir, "compose.yml"), "services:\n  a:\n    image: /bin\n")
	p, err := Load(t.Context(), Options{WorkingDir: dir, StateBase: root, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, p.Project, "myappv2")
}

func TestInvalidProjectNameFlag(t *testing.T) {
	f := newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: redis:7\n"}, fixtureImages...)
	o := f.opts()
	o.ProjectName = "My App"
	_, err := f.load(t, o)
	if err == nil || !strings.Contains(err.Error(), `-p "My App": invalid project name "My App"`) {
		t.Fatalf("got %v", err)
	}
	o.ProjectFlag = "-n"
	_, err = f.load(t, o)
	if err == nil || !strings.Contains(err.Error(), `-n "My App": invalid project name "My App"`) {
		t.Fatalf("the flag the user gave: got %v", err)
	}
}

func TestInterpolation(t *testing.T) {
	const compose = "services:\n  a:\n    image: redis:${TAG:-latest}\n    environment:\n      MODE: ${MODE}\n"
	tests := []struct {
		name     string
		dotenv   string
		other    string // other.env
		envFiles []string
		env      []string
		image    string
		mode     string
	}{
		{name: "defaults", image: "redis:latest", mode: ""},
		{name: ".env", dotenv: "TAG=7\nMODE=dotenv\n", image: "redis:7", mode: "dotenv"},
		{name: "process environment wins over .env", dotenv: "TAG=7\nMODE=dotenv\n", env: []string{"MODE=process"}, image: "redis:7", mode: "process"},
		{name: "--env-file replaces .env", dotenv: "TAG=7\nMODE=dotenv\n", other: "MODE=other\n", envFiles: []string{"other.env"}, image: "redis:latest", mode: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"compose.yaml": compose}
			if tt.dotenv != "" {
				files[".env"] = tt.dotenv
			}
			if tt.other != "" {
				files["other.env"] = tt.other
			}
			f := newFixture(t, files, fixtureImages...)
			o := f.opts(tt.env...)
			o.EnvFiles = tt.envFiles
			s := f.mustLoad(t, o).Service("a")
			eq(t, s.ImageRef, tt.image)
			eq(t, s.Environment, []string{"MODE=" + tt.mode})
		})
	}
}

func TestMissingEnvFile(t *testing.T) {
	f := newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: redis:7\n"}, fixtureImages...)
	o := f.opts()
	o.EnvFiles = []string{"nope.env"}
	_, err := f.load(t, o)
	if err == nil || !strings.Contains(err.Error(), "nope.env") {
		t.Fatalf("got %v", err)
	}
	// Where no compose file is found without it, the missing env file is
	// still what is reported.
	f = newFixture(t, map[string]string{"deploy/compose.yaml": "services:\n  a:\n    image: redis:7\n"}, fixtureImages...)
	o = f.opts()
	o.EnvFiles = []string{"prod.env"}
	_, err = f.load(t, o)
	if err == nil || err.Error() != "env file prod.env (--env-file): no such file or directory; check the path" {
		t.Fatalf("got %v", err)
	}
}

// TestComposeFileFromEnvFiles: COMPOSE_FILE and COMPOSE_PATH_SEPARATOR are
// read from .env of the current directory and from --env-file, as docker
// compose does; the process environment wins.
func TestComposeFileFromEnvFiles(t *testing.T) {
	files := map[string]string{
		"deploy/one.yaml": "services:\n  a:\n    image: redis:${TAG:-latest}\n",
		"deploy/two.yaml": "services:\n  b:\n    image: redis:7\n",
		"other/c.yaml":    "services:\n  c:\n    image: redis:7\n",
	}
	names := func(p *Plan) string {
		var out []string
		for _, s := range p.Services {
			out = append(out, s.Name)
		}
		return strings.Join(out, ",")
	}
	t.Run(".env", func(t *testing.T) {
		f := newFixture(t, with(files, ".env", "COMPOSE_FILE=deploy/one.yaml;deploy/two.yaml\nCOMPOSE_PATH_SEPARATOR=;\nTAG=7\n"), fixtureImages...)
		p := f.mustLoad(t, f.opts())
		eq(t, names(p), "a,b")
		eq(t, p.WorkingDir, filepath.Join(f.dir, "deploy"))
		// Interpolated with the .env the files were named in.
		eq(t, p.Service("a").ImageRef, "redis:7")
	})
	t.Run("--env-file", func(t *testing.T) {
		f := newFixture(t, with(files, "prod.env", "COMPOSE_FILE=deploy/two.yaml\n"), fixtureImages...)
		o := f.opts()
		o.EnvFiles = []string{"prod.env"}
		eq(t, names(f.mustLoad(t, o)), "b")
	})
	t.Run("process environment wins", func(t *testing.T) {
		f := newFixture(t, with(files, ".env", "COMPOSE_FILE=deploy/one.yaml\n"), fixtureImages...)
		eq(t, names(f.mustLoad(t, f.opts("COMPOSE_FILE=other/c.yaml"))), "c")
	})
	t.Run("-f wins", func(t *testing.T) {
		f := newFixture(t, with(files, ".env", "COMPOSE_FILE=deploy/one.yaml\n"), fixtureImages...)
		o := f.opts()
		o.Files = []string{"other/c.yaml"}
		eq(t, names(f.mustLoad(t, o)), "c")
	})
}

// with returns files plus one more.
func with(files map[string]string, name, content string) map[string]string {
	out := map[string]string{name: content}
	for k, v := range files {
		out[k] = v
	}
	return out
}

func TestProfiles(t *testing.T) {
	const compose = "services:\n  a:\n    image: redis:7\n  debug:\n    image: redis:7\n    profiles: [dev]\n"
	f := newFixture(t, map[string]string{"compose.yaml": compose}, fixtureImages...)
	names := func(p *Plan) []string {
		var out []string
		for _, s := range p.Services {
			out = append(out, s.Name)
		}
		return out
	}
	eq(t, names(f.mustLoad(t, f.opts())), []string{"a"})
	o := f.opts()
	o.Profiles = []string{"dev"}
	eq(t, names(f.mustLoad(t, o)), []string{"a", "debug"})
	eq(t, names(f.mustLoad(t, f.opts("COMPOSE_PROFILES=dev"))), []string{"a", "debug"})
	// Naming a service enables its profiles, as docker compose does.
	o = f.opts()
	o.Services = []string{"debug"}
	eq(t, names(f.mustLoad(t, o)), []string{"a", "debug"})

	f = newFixture(t, map[string]string{"compose.yaml": "services:\n  debug:\n    image: redis:7\n    profiles: [dev, test]\n"})
	_, err := f.load(t, f.opts())
	wantErrors(t, err, "services: the project has no service to run; its services are in profiles dev, test: enable one with --profile")
	o = f.opts()
	o.Services = []string{"debug"}
	eq(t, names(f.mustLoad(t, o)), []string{"debug"})
}

func TestSeveralFilesMerge(t *testing.T) {
	f := newFixture(t, map[string]string{
		"base.yaml":     "services:\n  a:\n    image: redis:7\n    command: [one]\n    environment: {A: base, B: base}\n",
		"override.yaml": "services:\n  a:\n    command: [two]\n    environment: {B: override}\n  b:\n    image: redis:7\n",
	}, fixtureImages...)
	o := f.opts()
	o.Files = []string{"base.yaml", "override.yaml"}
	p := f.mustLoad(t, o)
	eq(t, p.Service("a").Command, []string{"two"})
	eq(t, p.Service("a").Environment, []string{"A=base", "B=override"})
	if p.Service("b") == nil {
		t.Error("service of the second file missing")
	}
}

func TestDefaultFiles(t *testing.T) {
	t.Run("override file and search from a subdirectory", func(t *testing.T) {
		f := newFixture(t, map[string]string{
			"compose.yaml":          "services:\n  a:\n    image: redis:7\n",
			"compose.override.yaml": "services:\n  a:\n    command: [overridden]\n",
			"sub/dir/.keep":         "",
		}, fixtureImages...)
		o := f.opts()
		o.WorkingDir = filepath.Join(f.dir, "sub", "dir")
		p := f.mustLoad(t, o)
		eq(t, p.WorkingDir, f.dir)
		eq(t, p.Project, "app")
		eq(t, p.Service("a").Command, []string{"overridden"})
	})
	t.Run("COMPOSE_FILE", func(t *testing.T) {
		f := newFixture(t, map[string]string{
			"one.yaml": "services:\n  a:\n    image: redis:7\n",
			"two.yaml": "services:\n  b:\n    image: redis:7\n",
		}, fixtureImages...)
		p := f.mustLoad(t, f.opts("COMPOSE_FILE=one.yaml:two.yaml"))
		if p.Service("a") == nil || p.Service("b") == nil {
			t.Errorf("services: %v", p.Services)
		}
	})
	t.Run("several default names", func(t *testing.T) {
		f := newFixture(t, map[string]string{
			"compose.yaml":       "services:\n  a:\n    image: redis:7\n",
			"docker-compose.yml": "services:\n  b:\n    image: redis:7\n",
		}, fixtureImages...)
		p := f.mustLoad(t, f.opts())
		if p.Service("b") != nil {
			t.Error("docker-compose.yml loaded beside compose.yaml")
		}
		mustWarn(t, p, "", "compose file")
	})
	t.Run("none", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Load(t.Context(), Options{WorkingDir: dir, Environ: []string{}})
		if err == nil || !strings.Contains(err.Error(), "no compose file in "+dir) || !strings.Contains(err.Error(), "-f") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("-f names a missing file", func(t *testing.T) {
		f := newFixture(t, nil)
		o := f.opts()
		o.Files = []string{"nope.yaml"}
		_, err := f.load(t, o)
		if err == nil || !strings.Contains(err.Error(), "compose file nope.yaml") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestBrokenYAML(t *testing.T) {
	f := newFixture(t, map[string]string{
		"good.yaml": "services:\n  a:\n    image: redis:7\n",
		"bad.yaml":  "services:\n  a:\n    image: x\n   oops: [\n",
	})
	o := f.opts()
	o.Files = []string{"good.yaml", "bad.yaml"}
	_, err := f.load(t, o)
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(f.dir, "bad.yaml")+": invalid YAML: ") || !strings.Contains(err.Error(), "line 3, column 4: did not find expected key") {
		t.Fatalf("got %v", err)
	}
}

func TestUnknownKey(t *testing.T) {
	f := newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: redis:7\n    comand: [x]\n"})
	_, err := f.load(t, f.opts())
	want := filepath.Join(f.dir, "compose.yaml") + `: service "a": unknown key "comand": it is not part of the compose specification`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestStateAndImageDirs(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"option", Options{StateBase: "/s", Environ: []string{"SSTACK_STATE_DIR=/e"}}, "/s/p"},
		{"relative option", Options{StateBase: "s", WorkingDir: "/w", Environ: []string{}}, "/w/s/p"},
		{"SSTACK_STATE_DIR", Options{Environ: []string{"SSTACK_STATE_DIR=/e", "HOME=/h"}}, "/e/p"},
		{"XDG_STATE_HOME", Options{Environ: []string{"XDG_STATE_HOME=/x", "HOME=/h"}}, "/x/sstack/p"},
		{"HOME", Options{Environ: []string{"HOME=/h"}}, "/h/.local/state/sstack/p"},
		{"nothing", Options{Environ: []string{}}, filepath.Join(os.TempDir(), "sstack-"+strconv.Itoa(os.Getuid()), "p")},
	}
	for _, tt := range tests {
		if got := StateDirFor("p", tt.opts); got != tt.want {
			t.Errorf("%s: StateDirFor = %s, want %s", tt.name, got, tt.want)
		}
	}
	eq(t, Options{Environ: []string{}}.imageDir("/proj"), "/proj/images")
	eq(t, Options{Environ: []string{"SSTACK_IMAGE_DIR=/imgs"}}.imageDir("/proj"), "/imgs")
	eq(t, Options{ImageDir: "i", WorkingDir: "/w", Environ: []string{"SSTACK_IMAGE_DIR=/imgs"}}.imageDir("/proj"), "/w/i")
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultImageDirIsInTheProject(t *testing.T) {
	f := newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: redis:7\n"})
	o := f.opts()
	o.ImageDir = ""
	p := f.mustLoad(t, o)
	eq(t, p.Service("a").Image, filepath.Join(f.dir, "images", "redis+7.sif"))
	missing := p.MissingImages()
	if len(missing) != 1 || !strings.Contains(missing[0].String(), `service "a": image: no SIF for "redis:7" (looked for ./images/redis+7.sif, ./images/redis_7.sif)`) {
		t.Errorf("missing images: %v", missing)
	}

	writeFile(t, filepath.Join(f.dir, "images", "redis_7.sif"), "")
	eq(t, f.mustLoad(t, o).Service("a").Image, filepath.Join(f.dir, "images", "redis_7.sif"))
}

// Services named on the command line: the problems of services outside
// them and their dependencies are set aside with those services instead
// of failing the plan; config (no names) still reports them.
func TestSelectedServicesSetProblemsAside(t *testing.T) {
	const compose = `services:
  a:
    image: redis:7
    depends_on: [db]
  db:
    image: redis:7
  broken:
    image: redis:7
    environment: {MY-VAR: x}
`
	f := newFixture(t, map[string]string{"compose.yaml": compose}, fixtureImages...)
	_, err := f.load(t, f.opts())
	wantErrors(t, err, `service "broken": environment: variable name "MY-VAR"`)
	o := f.opts()
	o.Services = []string{"a"}
	p := f.mustLoad(t, o)
	eq(t, p.WithDependencies([]string{"a"}), []string{"db", "a"})
	if b := p.Service("broken"); b == nil || len(b.Problems) != 1 || !strings.Contains(b.Problems[0].Error(), "MY-VAR") {
		t.Errorf("broken's problems: %+v", b)
	}
	if err := p.CheckSelected([]string{"a"}); err != nil {
		t.Errorf("CheckSelected(a): %v", err)
	}
	if err := p.CheckSelected(nil); err == nil {
		t.Error("CheckSelected(all) passes broken")
	}
	o.Services = []string{"broken"}
	_, err = f.load(t, o)
	wantErrors(t, err, `service "broken": environment: variable name "MY-VAR"`)
}

package compose

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSIFName(t *testing.T) {
	for ref, want := range map[string]string{
		"redis":                           "redis+latest.sif",
		"redis:7":                         "redis+7.sif",
		"library/redis:7":                 "redis+7.sif",
		"docker.io/library/redis:7":       "redis+7.sif",
		"docker://redis:7":                "redis+7.sif",
		"bitnami/redis:7":                 "bitnami%redis+7.sif",
		"docker.io/bitnami/redis:7":       "bitnami%redis+7.sif",
		"ghcr.io/x/app:1":                 "ghcr.io%x%app+1.sif",
		"docker.io/x/app:1":               "x%app+1.sif",
		"localhost:5000/app":              "localhost+5000%app+latest.sif",
		"127.0.0.1:5055/tools/bb:1.0":     "127.0.0.1+5055%tools%bb+1.0.sif",
		"redis@sha256:" + hex64:           "redis@sha256+" + hex64 + ".sif",
		"redis:7@sha256:" + hex64:         "redis@sha256+" + hex64 + ".sif",
		"quay.io/a/b/c:v1_2-3":            "quay.io%a%b%c+v1_2-3.sif",
		"library://alpine:3.19":           "library=alpine+3.19.sif",
		"oras://ghcr.io/x/tool:3":         "oras=ghcr.io%x%tool+3.sif",
		"https://example.org/a/tool.sif":  "https=example.org%a%tool.sif",
		"mcr.microsoft.com/mssql/server":  "mcr.microsoft.com%mssql%server+latest.sif",
		"registry.example:443/team/app:2": "registry.example+443%team%app+2.sif",
	} {
		got, err := SIFName(ref)
		if err != nil || got != want {
			t.Errorf("SIFName(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, bad := range []string{"Redis:7", "redis:", "a b", "redis@sha256:short"} {
		if got, err := SIFName(bad); err == nil {
			t.Errorf("SIFName(%q) = %q, want an error", bad, got)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestSIFNamesNeverCollide: references that name different images get
// different files, where apptainer pull's names collide.
func TestSIFNamesNeverCollide(t *testing.T) {
	refs := []string{
		"redis:7", "bitnami/redis:7", "ghcr.io/library/redis:7", "ghcr.io/x/app:1", "docker.io/x/app:1",
		"x/app_1:latest", "x_app:1", "x/app/1:latest", "localhost:5000/app:1", "localhost/5000/app:1",
		"localhost:5000/app/1:latest", "app:5000", "redis@sha256:" + hex64, "redis:latest", "redis:sha256",
		"library://redis:7", "oras://redis:7",
	}
	seen := map[string]string{}
	for _, r := range refs {
		n, err := SIFName(r)
		if err != nil {
			t.Fatalf("SIFName(%q): %v", r, err)
		}
		if other, ok := seen[n]; ok {
			t.Errorf("%q and %q share %s", r, other, n)
		}
		seen[n] = r
	}
	if pullName("docker://redis:7") != pullName("docker://bitnami/redis:7") {
		t.Error("apptainer's names were meant to collide here")
	}
}

func TestPullName(t *testing.T) {
	for ref, want := range map[string]string{
		"redis":                              "redis_latest.sif",
		"redis:7":                            "redis_7.sif",
		"docker.io/library/redis:7":          "redis_7.sif",
		"bitnami/redis:7.2":                  "redis_7.2.sif",
		"ghcr.io/a/b:1.0":                    "b_1.0.sif",
		"localhost:5000/team/app":            "app_latest.sif",
		"localhost:5000/app:v2":              "app_v2.sif",
		"redis@sha256:0123abcd":              "redis@sha256_0123abcd.sif",
		"mcr.microsoft.com/azure-sql-edge:1": "azure-sql-edge_1.sif",
	} {
		if got := pullName("docker://" + ref); got != want {
			t.Errorf("pullName(docker://%s) = %s, want %s", ref, got, want)
		}
	}
	if got := pullName("oras://reg.example/x/tool:3"); got != "tool_3.sif" {
		t.Errorf("oras: %s", got)
	}
	if got := pullName("https://example.org/images/tool.sif"); got != "tool.sif" {
		t.Errorf("https: %s", got)
	}
}

func TestImageLookup(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		images  []string // in the image directory
		files   map[string]string
		check   func(t *testing.T, p *Plan, f *fixture)
	}{
		{
			name:    "sstack's name first",
			compose: "services:\n  a:\n    image: redis:7\n",
			images:  []string{"redis+7.sif", "redis_7.sif"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				s := p.Service("a")
				eq(t, s.Image, filepath.Join(f.imageDir, "redis+7.sif"))
				eq(t, s.ImageSource.Present, true)
				eq(t, s.ImageSource.Pull, "docker://redis:7")
				eq(t, s.ImageSource.Tried, []string{filepath.Join(f.imageDir, "redis+7.sif"), filepath.Join(f.imageDir, "redis_7.sif")})
			},
		},
		{
			name:    "apptainer pull's name is still found",
			compose: "services:\n  a:\n    image: docker.io/library/redis:7\n",
			images:  []string{"redis_7.sif"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				s := p.Service("a")
				eq(t, s.Image, filepath.Join(f.imageDir, "redis_7.sif"))
				eq(t, s.ImageSource.Target, filepath.Join(f.imageDir, "redis+7.sif"))
				eq(t, s.ImageSource.Present, true)
				eq(t, len(p.MissingImages()), 0)
			},
		},
		{
			name:    "apptainer pull's name shared by two images is used by neither",
			compose: "services:\n  a:\n    image: redis:7\n  b:\n    image: bitnami/redis:7\n",
			images:  []string{"redis_7.sif"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				for _, n := range []string{"a", "b"} {
					s := p.Service(n)
					eq(t, s.ImageSource.Present, false)
				}
				eq(t, p.Service("a").Image, filepath.Join(f.imageDir, "redis+7.sif"))
				eq(t, p.Service("b").Image, filepath.Join(f.imageDir, "bitnami%redis+7.sif"))
				m := p.MissingImages()
				if len(m) != 2 || !strings.Contains(m[0].Reason, "redis_7.sif is not used: apptainer pull gives redis:7 and bitnami/redis:7 that one name") {
					t.Errorf("missing: %v", m)
				}
			},
		},
		{
			name:    "each image its own file",
			compose: "services:\n  a:\n    image: redis:7\n  b:\n    image: bitnami/redis:7\n",
			images:  []string{"redis+7.sif", "bitnami%redis+7.sif", "redis_7.sif"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").Image, filepath.Join(f.imageDir, "redis+7.sif"))
				eq(t, p.Service("b").Image, filepath.Join(f.imageDir, "bitnami%redis+7.sif"))
			},
		},
		{
			name:    "digest reference",
			compose: "services:\n  a:\n    image: redis:7@sha256:" + hex64 + "\n",
			check: func(t *testing.T, p *Plan, f *fixture) {
				src := p.Service("a").ImageSource
				eq(t, src.Pull, "docker://redis@sha256:"+hex64)
				eq(t, src.Target, filepath.Join(f.imageDir, "redis@sha256+"+hex64+".sif"))
				eq(t, src.Tried[1], filepath.Join(f.imageDir, "redis@sha256_"+hex64+".sif"))
			},
		},
		{
			name:    "a local path is used as it is",
			compose: "services:\n  a:\n    image: ./x.sif\n  b:\n    image: ./nope.sif\n",
			files:   map[string]string{"x.sif": ""},
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").Image, filepath.Join(f.dir, "x.sif"))
				eq(t, p.Service("a").ImageSource.Present, true)
				eq(t, p.Service("a").ImageSource.Pull, "")
				m := p.MissingImages()
				if len(m) != 1 || m[0].String() != `service "b": image: ./nope.sif does not exist; give the path of a SIF file or sandbox directory (relative paths are relative to the project directory `+f.dir+`)` {
					t.Errorf("missing: %v", m)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"compose.yaml": tt.compose}
			for k, v := range tt.files {
				files[k] = v
			}
			f := newFixture(t, files, tt.images...)
			tt.check(t, f.mustLoad(t, f.opts()), f)
		})
	}
}

func TestPullPolicy(t *testing.T) {
	for policy, want := range map[string]struct {
		policy string
		after  time.Duration
	}{
		"":                            {"", 0},
		"pull_policy: missing":        {PullMissing, 0},
		"pull_policy: if_not_present": {PullMissing, 0},
		"pull_policy: always":         {PullAlways, 0},
		"pull_policy: never":          {PullNever, 0},
		"pull_policy: daily":          {PullRefresh, 24 * time.Hour},
		"pull_policy: weekly":         {PullRefresh, 7 * 24 * time.Hour},
		"pull_policy: every_12h":      {PullRefresh, 12 * time.Hour},
		"pull_policy: every_1w2d":     {PullRefresh, 9 * 24 * time.Hour},
		"pull_policy: refresh":        {PullRefresh, 0},
		"pull_policy: refresh\n    pull_refresh_after: 3h": {PullRefresh, 3 * time.Hour},
	} {
		p, _ := planOf(t, "services:\n  a:\n    image: redis:7\n    "+policy+"\n", nil)
		src := p.Service("a").ImageSource
		if src.PullPolicy != want.policy || src.RefreshAfter != want.after {
			t.Errorf("%q: got %q %v, want %q %v", policy, src.PullPolicy, src.RefreshAfter, want.policy, want.after)
		}
	}
	p, _ := planOf(t, "services:\n  a:\n    image: redis:7\n    pull_refresh_after: 3h\n", nil)
	mustWarn(t, p, "a", "pull_refresh_after")
	p, _ = planOf(t, "services:\n  a:\n    image: ./x.sif\n    pull_policy: always\n", map[string]string{"x.sif": ""})
	mustWarn(t, p, "a", "pull_policy")
}

const definition = "# the app\nBootstrap: localimage\nFrom: base.sif\n\n%runscript\n  echo hi\n"

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		files   map[string]string
		check   func(t *testing.T, p *Plan, f *fixture)
	}{
		{
			name:    "build.dockerfile naming a definition file, built under <project>-<service>",
			compose: "services:\n  web:\n    build:\n      context: ./src\n      dockerfile: app.def\n",
			files:   map[string]string{"src/app.def": definition},
			check: func(t *testing.T, p *Plan, f *fixture) {
				s := p.Service("web")
				eq(t, s.ImageRef, "")
				eq(t, s.Image, filepath.Join(f.imageDir, "app-web+latest.sif"))
				eq(t, s.ImageSource.Pull, "")
				eq(t, s.ImageSource.Name, "app-web")
				eq(t, *s.ImageSource.Build, ImageBuild{Context: filepath.Join(f.dir, "src"), Definition: filepath.Join(f.dir, "src/app.def")})
				m := p.MissingImages()
				if len(m) != 1 || m[0].String() != `service "web": build: no SIF of the image built from ./src/app.def (looked for `+f.imageDir+`/app-web+latest.sif, `+f.imageDir+`/app-web_latest.sif); up builds it, or build it now with: sstack build web` {
					t.Errorf("missing: %v", m)
				}
			},
		},
		{
			name:    "x-sstack.definition, built under the image: name",
			compose: "services:\n  web:\n    image: etl-kafka\n    build: .\n    x-sstack:\n      definition: defs/kafka.def\n",
			files:   map[string]string{"defs/kafka.def": definition, "Dockerfile": "FROM x\n"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				s := p.Service("web")
				eq(t, s.Image, filepath.Join(f.imageDir, "etl-kafka+latest.sif"))
				eq(t, s.ImageSource.Pull, "docker://etl-kafka")
				eq(t, s.ImageSource.Build.Definition, filepath.Join(f.dir, "defs/kafka.def"))
				eq(t, s.ImageSource.Build.Context, f.dir)
				if len(p.Warnings) != 0 {
					t.Errorf("warnings: %v", p.Warnings)
				}
			},
		},
		{
			name:    "x-sstack.definition without build: builds in the project directory",
			compose: "services:\n  web:\n    x-sstack: {definition: ./kafka.def}\n",
			files:   map[string]string{"kafka.def": definition},
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("web").ImageSource.Build, &ImageBuild{Context: f.dir, Definition: filepath.Join(f.dir, "kafka.def")})
			},
		},
		{
			name:    "a local path as the build's destination",
			compose: "services:\n  web:\n    image: ./out/web.sif\n    build: {dockerfile: app.def}\n",
			files:   map[string]string{"app.def": definition},
			check: func(t *testing.T, p *Plan, f *fixture) {
				src := p.Service("web").ImageSource
				eq(t, src.Target, filepath.Join(f.dir, "out/web.sif"))
				eq(t, src.Present, false)
			},
		},
		{
			name:    "build keys a definition file does not use",
			compose: "services:\n  web:\n    build:\n      dockerfile: app.def\n      args: {X: 1}\n      target: prod\n",
			files:   map[string]string{"app.def": definition},
			check: func(t *testing.T, p *Plan, f *fixture) {
				w := warningsOf(p, "web")
				if len(w) != 1 || !strings.Contains(w[0].String(), "build.args, build.target: not used: an Apptainer definition file is built as it is") {
					t.Errorf("warnings: %v", w)
				}
			},
		},
		{
			name:    "a Dockerfile: what works instead, with the target",
			compose: "services:\n  web:\n    build:\n      context: ./web\n      target: prod\n",
			files:   map[string]string{"web/Dockerfile": "FROM debian\n"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				src := p.Service("web").ImageSource
				eq(t, src.Build.Definition, "")
				eq(t, src.Build.Dockerfile, filepath.Join(f.dir, "web/Dockerfile"))
				m := p.MissingImages()
				want := strings.ReplaceAll(`service "web": build: no SIF of the image compose would build (looked for IMAGES/app-web+latest.sif, IMAGES/app-web_latest.sif): ./web/Dockerfile is a Dockerfile (stage "prod"), and Apptainer cannot build Dockerfiles. Either build it with Docker on a machine that has it (docker build -t app-web --target prod ./web && docker save app-web -o app-web.tar), copy app-web.tar here and convert it: apptainer build IMAGES/app-web+latest.sif docker-archive://app-web.tar; or write an Apptainer definition file (its first line is Bootstrap:) and name it in build.dockerfile or x-sstack.definition`, "IMAGES", f.imageDir)
				if len(m) != 1 || m[0].String() != want {
					t.Errorf("missing:\n got  %v\n want %s", m, want)
				}
				for _, wrong := range []string{"docker-daemon", "apptainer pull"} {
					if strings.Contains(m[0].String(), wrong) {
						t.Errorf("suggests %s: %s", wrong, m[0])
					}
				}
			},
		},
		{
			name:    "image and a Dockerfile: the pull is tried, then the same advice",
			compose: "services:\n  etl:\n    image: etl-kafka\n    build: .\n",
			files:   map[string]string{"Dockerfile": "FROM debian\n"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				m := p.MissingImages()
				if len(m) != 1 || !strings.Contains(m[0].String(), `no SIF for "etl-kafka"`) || !strings.Contains(m[0].String(), "up tries to pull docker://etl-kafka (sstack pull etl); if it exists only as a local build: ./Dockerfile is a Dockerfile") {
					t.Errorf("missing: %v", m)
				}
			},
		},
		{
			name:    "a Dockerfile whose SIF was converted by hand: used, with a warning",
			compose: "services:\n  etl:\n    image: etl-kafka\n    build: .\n",
			files:   map[string]string{"Dockerfile": "FROM debian\n", "../images/etl-kafka_latest.sif": ""},
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("etl").Image, filepath.Join(f.imageDir, "etl-kafka_latest.sif"))
				mustWarn(t, p, "etl", "build")
				eq(t, len(p.MissingImages()), 0)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"compose.yaml": tt.compose}
			for k, v := range tt.files {
				files[k] = v
			}
			f := newFixture(t, files)
			o := f.opts()
			tt.check(t, f.mustLoad(t, o), f)
		})
	}
}

func TestImageErrors(t *testing.T) {
	for compose, want := range map[string]string{
		"services:\n  a:\n    image: Redis:7\n":                                                         `service "a": image: "Redis:7" is not an image reference`,
		"services:\n  a:\n    image: redis:7\n    pull_policy: build\n":                                 `service "a": pull_policy: build, but the service has no build: section`,
		"services:\n  a:\n    image: redis:7\n    x-sstack: {definition: ./nope.def}\n":                 `service "a": x-sstack.definition: ./nope.def does not exist`,
		"services:\n  a:\n    image: redis:7\n    x-sstack: [x]\n":                                      `service "a": x-sstack: want a mapping with definition:`,
		"services:\n  a:\n    image: redis:7\n    pull_policy: refresh\n    pull_refresh_after: soon\n": `service "a": pull_refresh_after: "soon" is not a duration`,
	} {
		f := newFixture(t, map[string]string{"compose.yaml": compose})
		_, err := f.load(t, f.opts())
		wantErrors(t, err, want)
	}
}

func TestIsDefinition(t *testing.T) {
	for head, want := range map[string]bool{
		"Bootstrap: localimage\n":             true,
		"bootstrap:docker\nFrom: x\n":         true,
		"\n# comment\n  BootStrap: library\n": true,
		"FROM debian\n":                       false,
		"# Bootstrap: localimage\nFROM x\n":   false,
		"":                                    false,
	} {
		if got := isDefinition([]byte(head)); got != want {
			t.Errorf("isDefinition(%q) = %v", head, got)
		}
	}
}

package images

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sstack/compose"
	"sstack/internal/testutil"
	"sstack/singularity"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// TestDecide: docker compose's choices, table by table.
func TestDecide(t *testing.T) {
	pullable := func(policy string) *compose.ImageSource {
		return &compose.ImageSource{Pull: "docker://redis:7", PullPolicy: policy, RefreshAfter: 24 * time.Hour}
	}
	def := &compose.ImageBuild{Context: "/p", Definition: "/p/app.def"}
	buildOnly := &compose.ImageSource{Build: def}
	both := func(policy string) *compose.ImageSource {
		return &compose.ImageSource{Pull: "docker://app:1", PullPolicy: policy, Build: def}
	}
	missing := imageState{}
	present := imageState{Exists: true, ModTime: now.Add(-time.Hour)}
	stale := imageState{Exists: true, ModTime: now.Add(-25 * time.Hour)}
	tests := []struct {
		name string
		mode Mode
		src  *compose.ImageSource
		st   imageState
		opts Options
		want imageAction
	}{
		{"up: unset policy pulls a missing image", ForUp, pullable(""), missing, Options{}, imageAction{Pull: true}},
		{"up: unset policy keeps a present one", ForUp, pullable(""), present, Options{}, imageAction{}},
		{"up: missing", ForUp, pullable(compose.PullMissing), missing, Options{}, imageAction{Pull: true}},
		{"up: always pulls a present image", ForUp, pullable(compose.PullAlways), present, Options{}, imageAction{Pull: true}},
		{"up: never", ForUp, pullable(compose.PullNever), missing, Options{}, imageAction{}},
		{"up: refresh, fresh", ForUp, pullable(compose.PullRefresh), present, Options{}, imageAction{}},
		{"up: refresh, stale", ForUp, pullable(compose.PullRefresh), stale, Options{}, imageAction{Pull: true}},
		{"up: refresh, missing", ForUp, pullable(compose.PullRefresh), missing, Options{}, imageAction{Pull: true}},
		{"up --pull always overrides never", ForUp, pullable(compose.PullNever), present, Options{Pull: "always"}, imageAction{Pull: true}},
		{"up --pull never overrides always", ForUp, pullable(compose.PullAlways), missing, Options{Pull: "never"}, imageAction{}},
		{"up --pull missing overrides always", ForUp, pullable(compose.PullAlways), present, Options{Pull: "missing"}, imageAction{}},
		{"up: build-only is built if missing", ForUp, buildOnly, missing, Options{}, imageAction{Build: buildIfMissing}},
		{"up: image and build: pull first, build if still missing", ForUp, both(""), missing, Options{}, imageAction{Pull: true, Build: buildIfMissing}},
		{"up --build: build, no pull", ForUp, both(""), missing, Options{Build: true}, imageAction{Build: buildChanged}},
		{"up: pull_policy build", ForUp, both(compose.PullBuild), present, Options{}, imageAction{Build: buildChanged}},
		{"up --no-build", ForUp, both(""), missing, Options{NoBuild: true}, imageAction{Pull: true}},
		{"up --pull never, build-only still built", ForUp, buildOnly, missing, Options{Pull: "never"}, imageAction{Build: buildIfMissing}},
		{"pull: unset policy pulls a present image", ForPull, pullable(""), present, Options{}, imageAction{Pull: true}},
		{"pull: explicit missing skips a present one", ForPull, pullable(compose.PullMissing), present, Options{}, imageAction{Skip: "the image is already here"}},
		{"pull --policy missing", ForPull, pullable(""), present, Options{Pull: "missing"}, imageAction{Skip: "the image is already here"}},
		{"pull: never", ForPull, pullable(compose.PullNever), missing, Options{}, imageAction{Skip: "pull_policy: never"}},
		{"pull: build", ForPull, both(compose.PullBuild), missing, Options{}, imageAction{Skip: "pull_policy: build"}},
		{"pull: build-only", ForPull, buildOnly, missing, Options{}, imageAction{Skip: "nothing to pull: the image is built (sstack build)"}},
		{"pull --ignore-buildable", ForPull, both(""), missing, Options{IgnoreBuildable: true}, imageAction{Skip: "the image can be built"}},
		{"pull: refresh pulls", ForPull, pullable(compose.PullRefresh), present, Options{}, imageAction{Pull: true}},
		{"build: definition", ForBuild, both(""), present, Options{}, imageAction{Build: buildChanged}},
		{"build --no-cache", ForBuild, buildOnly, present, Options{NoCache: true}, imageAction{Build: buildAlways}},
		{"build: nothing to build", ForBuild, pullable(""), missing, Options{}, imageAction{Skip: "no build: section"}},
	}
	for _, tt := range tests {
		if got := decide(tt.mode, tt.src, tt.st, tt.opts, now); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// fakeImages pulls and builds by writing files, failing for the sources
// and definitions in fail; it records the most pulls at once.
type fakeImages struct {
	mu       sync.Mutex
	fail     map[string]bool
	pulled   []string
	built    []string
	running  atomic.Int32
	mostAtMu int32
	delay    time.Duration
}

func (f *fakeImages) Pull(ctx context.Context, spec singularity.PullSpec) error {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	f.mu.Lock()
	f.mostAtMu = max(f.mostAtMu, n)
	f.pulled = append(f.pulled, spec.Source)
	fail := f.fail[spec.Source]
	f.mu.Unlock()
	spec.Phase("Fetching OCI image")
	time.Sleep(f.delay)
	if fail {
		return errors.New("pulling " + spec.Source + ": FATAL: manifest unknown")
	}
	return os.WriteFile(spec.Dest, []byte(spec.Source), 0o644)
}

func (f *fakeImages) BuildImage(ctx context.Context, spec singularity.BuildSpec) error {
	f.mu.Lock()
	f.built = append(f.built, spec.Definition)
	fail := f.fail[spec.Definition]
	f.mu.Unlock()
	if fail {
		return errors.New("building: FATAL: no base")
	}
	if err := os.MkdirAll(filepath.Dir(spec.Dest), 0o755); err != nil {
		return err
	}
	return os.WriteFile(spec.Dest, []byte("built"), 0o644)
}

// planWith is a plan whose services use images in a temporary image
// directory; each service is (name, source).
func planWith(t *testing.T, services ...compose.Service) *compose.Plan {
	t.Helper()
	p := &compose.Plan{Project: "p", WorkingDir: t.TempDir(), StateDir: t.TempDir()}
	p.Services = services
	return p
}

func registryService(dir, name, ref, policy string) compose.Service {
	sif, _ := compose.SIFName(ref)
	target := filepath.Join(dir, sif)
	return compose.Service{Name: name, ImageRef: ref, Image: target, ImageSource: &compose.ImageSource{
		Name: ref, Pull: "docker://" + ref, PullPolicy: policy, Target: target, Tried: []string{target},
		Missing: "no SIF for " + ref,
	}}
}

func TestImagesParallelBounded(t *testing.T) {
	dir := t.TempDir()
	var services []compose.Service
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		services = append(services, registryService(dir, n, "team/"+n+":1", ""))
	}
	plan := planWith(t, services...)
	fake := &fakeImages{delay: 50 * time.Millisecond}
	var out bytes.Buffer
	err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForUp, Parallel: 3, Progress: &out, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if len(fake.pulled) != 7 || fake.mostAtMu != 3 {
		t.Errorf("pulled %d, at most %d at once; want 7, 3", len(fake.pulled), fake.mostAtMu)
	}
	for _, s := range plan.Services {
		if _, err := os.Stat(s.Image); err != nil {
			t.Errorf("service %s: %v", s.Name, err)
		}
	}
	if strings.Count(out.String(), " Pulling docker://") != 7 || strings.Count(out.String(), " Pulled docker://") != 7 {
		t.Errorf("progress:\n%s", out.String())
	}
}

// TestImagesSharedImagePulledOnce: services with one image share its pull.
func TestImagesSharedImagePulledOnce(t *testing.T) {
	dir := t.TempDir()
	plan := planWith(t, registryService(dir, "a", "redis:7", ""), registryService(dir, "b", "docker.io/library/redis:7", compose.PullAlways))
	fake := &fakeImages{}
	var out bytes.Buffer
	if err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForUp, Progress: &out}); err != nil {
		t.Fatal(err)
	}
	if len(fake.pulled) != 1 || !strings.Contains(out.String(), "a, b Pulling") {
		t.Errorf("pulled %v\n%s", fake.pulled, out.String())
	}
}

func TestImagesFailures(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(t.TempDir(), "app.def")
	testutil.WriteFile(t, def, "Bootstrap: localimage\n", 0o644)
	buildable := registryService(dir, "web", "app:1", "")
	buildable.ImageSource.Build = &compose.ImageBuild{Context: filepath.Dir(def), Definition: def}
	dockerfile := registryService(dir, "etl", "etl-kafka", "")
	dockerfile.ImageSource.Build = &compose.ImageBuild{Context: t.TempDir(), Dockerfile: "/x/Dockerfile", Unbuildable: "./Dockerfile is a Dockerfile, and Apptainer cannot build Dockerfiles"}

	t.Run("a failed pull names the service and apptainer's line", func(t *testing.T) {
		plan := planWith(t, registryService(t.TempDir(), "db", "redis:7", ""))
		fake := &fakeImages{fail: map[string]bool{"docker://redis:7": true}}
		err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForUp})
		if err == nil || err.Error() != `service "db": image: pulling docker://redis:7: FATAL: manifest unknown` {
			t.Errorf("error %v", err)
		}
	})
	t.Run("a failed pull of a buildable image builds it", func(t *testing.T) {
		plan := planWith(t, buildable)
		fake := &fakeImages{fail: map[string]bool{"docker://app:1": true}}
		var out bytes.Buffer
		if err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForUp, Progress: &out}); err != nil {
			t.Fatal(err)
		}
		if len(fake.built) != 1 || !strings.Contains(out.String(), "web Failed docker://app:1: building it instead") || !strings.Contains(out.String(), "web Built") {
			t.Errorf("built %v\n%s", fake.built, out.String())
		}
		if storedHash(plan.Services[0].Image) == "" {
			t.Error("no hash kept")
		}
	})
	t.Run("a Dockerfile: the pull's error and what works", func(t *testing.T) {
		plan := planWith(t, dockerfile)
		fake := &fakeImages{fail: map[string]bool{"docker://etl-kafka": true}}
		err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForUp})
		want := "service \"etl\": image: pulling docker://etl-kafka: FATAL: manifest unknown\nservice \"etl\": build: ./Dockerfile is a Dockerfile, and Apptainer cannot build Dockerfiles"
		if err == nil || err.Error() != want {
			t.Errorf("error:\n%v\nwant:\n%s", err, want)
		}
	})
	t.Run("--pull never", func(t *testing.T) {
		plan := planWith(t, registryService(t.TempDir(), "db", "redis:7", ""))
		err := Get(context.Background(), Options{Plan: plan, Runtime: &fakeImages{}, Mode: ForUp, Pull: "never"})
		if err == nil || !strings.Contains(err.Error(), `service "db": image: no SIF for "redis:7" (looked for `) || !strings.Contains(err.Error(), "and --pull never; pull it with: sstack pull db") {
			t.Errorf("error %v", err)
		}
		if Check(plan, plan.ServiceNames()) == nil {
			t.Error("CheckImages accepts a missing image")
		}
	})
	t.Run("pull: a buildable image's failure is no error", func(t *testing.T) {
		plan := planWith(t, buildable, registryService(t.TempDir(), "db", "redis:7", ""))
		fake := &fakeImages{fail: map[string]bool{"docker://app:1": true, "docker://redis:7": true}}
		var out bytes.Buffer
		err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForPull, Progress: &out})
		if err == nil || err.Error() != `service "db": image: pulling docker://redis:7: FATAL: manifest unknown` {
			t.Errorf("error %v", err)
		}
		if !strings.Contains(out.String(), "the image must be built: sstack build web") {
			t.Errorf("progress:\n%s", out.String())
		}
		err = Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForPull, IgnorePullFailures: true})
		if err != nil {
			t.Errorf("--ignore-pull-failures: %v", err)
		}
	})
	t.Run("no such service", func(t *testing.T) {
		plan := planWith(t, buildable)
		if err := Get(context.Background(), Options{Plan: plan, Runtime: &fakeImages{}, Mode: ForBuild, Services: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), "no such service: nope") {
			t.Errorf("error %v", err)
		}
	})
}

// TestBuildOnlyWhenChanged: the hash of definition and context decides;
// the image directory inside the context does not count.
func TestBuildOnlyWhenChanged(t *testing.T) {
	ctxDir := t.TempDir()
	def := filepath.Join(ctxDir, "app.def")
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ctxDir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, filepath.Join(ctxDir, name), content, 0o644)
	}
	write("app.def", "Bootstrap: localimage\n")
	write("data/a.txt", "a")
	target := filepath.Join(ctxDir, "images", "p-app+latest.sif")
	svc := compose.Service{Name: "app", Image: target, ImageSource: &compose.ImageSource{
		Name: "p-app", Target: target, Build: &compose.ImageBuild{Context: ctxDir, Definition: def},
	}}
	plan := planWith(t, svc)
	fake := &fakeImages{}
	build := func() {
		t.Helper()
		if err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForBuild}); err != nil {
			t.Fatal(err)
		}
	}
	build()
	build() // the SIF and its hash file, in the context, change nothing
	if len(fake.built) != 1 {
		t.Fatalf("built %d times, want 1", len(fake.built))
	}
	write(".git/HEAD", "x")
	build()
	if len(fake.built) != 1 {
		t.Errorf(".git changed the hash")
	}
	write("data/a.txt", "b")
	build()
	write("app.def", "Bootstrap: localimage\n# changed\n")
	build()
	if len(fake.built) != 3 {
		t.Errorf("built %d times, want 3 (context, then definition changed)", len(fake.built))
	}
	if err := Get(context.Background(), Options{Plan: plan, Runtime: fake, Mode: ForBuild, NoCache: true}); err != nil {
		t.Fatal(err)
	}
	if len(fake.built) != 4 {
		t.Errorf("--no-cache did not build")
	}
}

func TestProgressTerminal(t *testing.T) {
	var out bytes.Buffer
	clock := now
	p := newProgress(&out, true, 60, func() time.Time { return clock })
	a := p.add("db", "Pulling", "docker://redis:7")
	b := p.add("web, worker", "Pulling", "docker://example.org/a/very/long/reference/name:1")
	a.phase("Fetching OCI image")
	clock = clock.Add(1500 * time.Millisecond)
	a.finish(rowDone, "Pulled", "1.1 MB, 1.5s")
	b.finish(rowFailed, "", "")
	p.close()
	screen := out.String()
	frames := strings.Split(screen, "\x1b[2A")
	last := frames[len(frames)-1]
	want := "\r\x1b[2K ✔ db          Pulled docker://redis:7 (1.1 MB, 1.5s)\n\r\x1b[2K ✘ web, worker Failed docker://example.org/a/very/long/ref…\n"
	if last != want {
		t.Errorf("last frame:\n%q\nwant\n%q", last, want)
	}
	if !strings.Contains(screen, "Pulling docker://redis:7  Fetching OCI imag…") {
		t.Errorf("no phase shown: %q", screen)
	}
	for _, l := range strings.Split(strings.ReplaceAll(last, "\r\x1b[2K", ""), "\n") {
		if n := len([]rune(l)); n >= 60 {
			t.Errorf("line of %d runes on a 60-column terminal: %q", n, l)
		}
	}
}

func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, false, 0, time.Now)
	a := p.add("db", "Pulling", "docker://redis:7")
	a.phase("Fetching OCI image")
	a.finish(rowDone, "Pulled", "1.1 MB, 0.4s")
	p.note("web", "Skipped:", "pull_policy: never", "", rowSkipped)
	p.close()
	want := "db Pulling docker://redis:7\ndb Pulled docker://redis:7 (1.1 MB, 0.4s)\nweb Skipped: pull_policy: never\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	var nilProgress *progress
	nilProgress.add("x", "y", "z").finish(rowDone, "", "") // no panic
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1081344: "1.1 MB", 158367744: "158.4 MB", 3e9: "3.0 GB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestToRemove(t *testing.T) {
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "app", ImageSource: &compose.ImageSource{Target: "/i/p-app+latest.sif", Build: &compose.ImageBuild{}}},
		{Name: "cache", ImageRef: "redis:7", ImageSource: &compose.ImageSource{Target: "/i/redis+7.sif", Pull: "docker://redis:7"}},
		{Name: "cache2", ImageRef: "redis:7", ImageSource: &compose.ImageSource{Target: "/i/redis+7.sif", Pull: "docker://redis:7"}},
		{Name: "named", ImageRef: "me/app:1", ImageSource: &compose.ImageSource{Target: "/i/me%app+1.sif", Pull: "docker://me/app:1", Build: &compose.ImageBuild{}}},
		{Name: "local", ImageRef: "./x.sif", ImageSource: &compose.ImageSource{Target: "/p/x.sif"}},
		{Name: "byhand"},
	}}
	if got, want := ToRemove(plan, "local"), []string{"/i/p-app+latest.sif"}; !slices.Equal(got, want) {
		t.Errorf("local: %v, want %v", got, want)
	}
	if got, want := ToRemove(plan, "all"), []string{"/i/p-app+latest.sif", "/i/redis+7.sif", "/i/me%app+1.sif"}; !slices.Equal(got, want) {
		t.Errorf("all: %v, want %v", got, want)
	}
}

// What up shows: --attach, else the services named (their dependencies
// with --attach-dependencies), else all; less --no-attach.

func TestRows(t *testing.T) {
	dir := t.TempDir()
	sif := dir + "/app.sif"
	testutil.WriteFile(t, sif, "not really a SIF", 0o644)
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "app", ImageRef: "./app.sif", Image: sif},
		{Name: "db", ImageRef: "redis:7", Image: dir + "/redis+7.sif", ImageSource: &compose.ImageSource{Name: "redis:7", Pull: "docker://redis:7"}},
	}}
	rows := Rows(plan)
	if rows[0].Source != "file" || rows[0].Size != 16 || rows[0].ID != fileDigest(sif) || len(ShortID(rows[0].ID)) != 12 {
		t.Errorf("file image: %+v", rows[0])
	}
	if rows[1].Source != "missing" || rows[1].Image != "redis:7" {
		t.Errorf("missing pulled image: %+v", rows[1])
	}
}

package singularity

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sstack/internal/testutil"
	"strings"
	"testing"
	"time"
)

func TestPullAndBuildArgs(t *testing.T) {
	if got := pullArgs("/i/.x.tmp", "docker://redis:7"); !reflect.DeepEqual(got, []string{"pull", "/i/.x.tmp", "docker://redis:7"}) {
		t.Errorf("pullArgs: %v", got)
	}
	if got := buildArgs("/i/.x.tmp", "/p/app.def", false); !reflect.DeepEqual(got, []string{"build", "/i/.x.tmp", "/p/app.def"}) {
		t.Errorf("buildArgs: %v", got)
	}
	if got := buildArgs("/i/.x.tmp", "/p/app.def", true); !reflect.DeepEqual(got, []string{"build", "--fakeroot", "/i/.x.tmp", "/p/app.def"}) {
		t.Errorf("buildArgs fakeroot: %v", got)
	}
}

// TestToolEnv: apptainer pull and build keep apptainer's settings (which
// instance clients drop) but not the variables meant for containers.
func TestToolEnv(t *testing.T) {
	base := []string{"PATH=/bin", "APPTAINER_NOHTTPS=1", "APPTAINER_CACHEDIR=/c", "APPTAINER_DOCKER_USERNAME=u",
		"APPTAINER_DOCKER_PASSWORD=p", "SINGULARITY_NOHTTPS=1", "APPTAINERENV_X=1", "SINGULARITYENV_Y=2", "APPTAINER_BIND=/x"}
	want := []string{"PATH=/bin", "APPTAINER_NOHTTPS=1", "APPTAINER_CACHEDIR=/c", "APPTAINER_DOCKER_USERNAME=u",
		"APPTAINER_DOCKER_PASSWORD=p", "SINGULARITY_NOHTTPS=1", "APPTAINER_BIND=/x"}
	if got := toolEnv(base); !reflect.DeepEqual(got, want) {
		t.Errorf("toolEnv:\n got  %v\n want %v", got, want)
	}
	if got := clientEnv(base); !reflect.DeepEqual(got, []string{"PATH=/bin", "APPTAINER_CACHEDIR=/c"}) {
		t.Errorf("clientEnv no longer filters: %v", got)
	}
}

func TestPhaseWriter(t *testing.T) {
	var phases []string
	w := &phaseWriter{phase: func(s string) { phases = append(phases, s) }}
	for _, chunk := range []string{"INFO:    Fetching OCI ", "image...\nWARNING: x\nINFO:    Creating SIF file...\r\n",
		"INFO:    To see mksquashfs output with progress bar enable verbose logging\nFATAL:   boom\n"} {
		_, _ = w.Write([]byte(chunk))
	}
	if want := []string{"Fetching OCI image", "Creating SIF file"}; !reflect.DeepEqual(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	if got := summarize(w.bytes()); got != "FATAL: boom" {
		t.Errorf("summary %q", got)
	}
}

// fakeApptainer is a shell script standing in for apptainer: it runs
// body with the arguments apptainer would get.
func fakeApptainer(t *testing.T, body string) *Apptainer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "apptainer")
	testutil.WriteFile(t, bin, "#!/bin/sh\n"+body+"\n", 0o755)
	return &Apptainer{Binary: bin, Env: []string{"PATH=/usr/bin:/bin", "APPTAINER_NOHTTPS=1", "APPTAINERENV_SECRET=x"}}
}

// TestPullIsAtomic: a pull that fails half-way leaves neither its
// partial output nor the destination; a pull that succeeds replaces the
// destination in one rename.
func TestPullIsAtomic(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "redis+7.sif")
	failing := fakeApptainer(t, `echo partial > "$2"; echo "INFO:    Fetching OCI image..." >&2; echo "FATAL:   While making image: manifest unknown" >&2; exit 255`)
	err := failing.Pull(context.Background(), PullSpec{Source: "docker://redis:7", Dest: dest})
	if err == nil || !strings.Contains(err.Error(), "pulling docker://redis:7: FATAL: While making image: manifest unknown") {
		t.Fatalf("error %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}

	testutil.WriteFile(t, dest, "old", 0o644)
	// The script checks that the settings for apptainer reach it and the
	// container's do not, and writes to the temporary name, not dest.
	ok := fakeApptainer(t, `[ "$APPTAINER_NOHTTPS" = 1 ] && [ -z "$APPTAINERENV_SECRET" ] || exit 3
case "$2" in */.redis+7.sif.*.tmp) ;; *) exit 4 ;; esac
[ "$(cat `+dest+`)" = old ] || exit 5
echo new > "$2"`)
	var phases []string
	if err := ok.Pull(context.Background(), PullSpec{Source: "docker://redis:7", Dest: dest, Phase: func(s string) { phases = append(phases, s) }}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "new\n" {
		t.Errorf("dest holds %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}

	empty := fakeApptainer(t, `exit 0`)
	if err := empty.Pull(context.Background(), PullSpec{Source: "docker://x", Dest: dest}); err == nil || !strings.Contains(err.Error(), "wrote no image") {
		t.Errorf("no output accepted: %v", err)
	}
}

// TestPullRetriesTheCacheRace: a pull that loses apptainer's race over a
// shared cache is tried again (and succeeds once the cache is whole); any
// other failure is final at once, and the race gives up after
// pullAttempts tries.
func TestPullRetriesTheCacheRace(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	race := `echo x >> ` + count + `; echo "FATAL:   While making image from oci registry: error fetching image to cache: while building SIF from layers: conveyor failed to get: unexpected end of JSON input" >&2; exit 255`
	tries := func() int {
		b, _ := os.ReadFile(count)
		n := strings.Count(string(b), "x")
		os.Remove(count)
		return n
	}
	for _, c := range []struct {
		name, body string
		ok         bool
		tries      int
	}{
		{"race once", `[ -e ` + count + ` ] && { echo sif > "$2"; exit 0; }; ` + race, true, 1},
		{"race always", race, false, pullAttempts},
		{"other failure", `echo x >> ` + count + `; echo "FATAL:   manifest unknown" >&2; exit 255`, false, 1},
	} {
		var phases []string
		err := fakeApptainer(t, c.body).Pull(context.Background(), PullSpec{Source: "docker://x", Dest: filepath.Join(t.TempDir(), "x.sif"),
			Phase: func(s string) { phases = append(phases, s) }})
		if (err == nil) != c.ok {
			t.Errorf("%s: error %v", c.name, err)
		}
		if n := tries(); n != c.tries {
			t.Errorf("%s: apptainer failed %d times, want %d", c.name, n, c.tries)
		}
		if retried := slices.ContainsFunc(phases, func(p string) bool { return strings.HasPrefix(p, "Retrying") }); retried != (c.tries > 1 || c.ok) {
			t.Errorf("%s: phases %v", c.name, phases)
		}
	}
}

// TestPullCancelled: cancelling ends apptainer and what it started, and
// leaves nothing.
func TestPullCancelled(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "x.sif")
	slow := fakeApptainer(t, `echo partial > "$2"; sleep 60 & wait`)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := slow.Pull(ctx, PullSpec{Source: "docker://x", Dest: dest})
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("error %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancel took %v", took)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestBuildImageRunsInTheContext(t *testing.T) {
	ctxDir := t.TempDir()
	dest := filepath.Join(t.TempDir(), "app+latest.sif")
	fake := fakeApptainer(t, `[ "$(pwd)" = "`+ctxDir+`" ] || exit 3
[ "$1 $2" = "build --fakeroot" ] || exit 4
[ "$4" = "`+ctxDir+`/app.def" ] || exit 5
echo built > "$3"`)
	if err := fake.BuildImage(context.Background(), BuildSpec{Definition: "app.def", Dest: dest, Dir: ctxDir, Fakeroot: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "built\n" {
		t.Errorf("dest holds %q", b)
	}
}

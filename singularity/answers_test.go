package singularity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sstack/internal/testutil"
)

// keptAnswersIn points the kept answers at a directory of the test's.
func keptAnswersIn(t *testing.T, dir string) {
	old := answersDir
	answersDir = func() string { return dir }
	t.Cleanup(func() { answersDir = old })
}

// countingApptainer is a fake apptainer that counts its runs in a file
// and answers --version and inspect: the runscript it reports is the
// image file's first line ("fail": inspect fails).
func countingApptainer(t *testing.T) (bin string, runs func() int) {
	count := filepath.Join(t.TempDir(), "runs")
	bin = fakeApptainer(t, `echo x >> `+count+`
case "$1" in
--version) echo "apptainer version 9.9" ;;
-s) img=$5; line=$(head -n1 "$img")
    [ "$line" = fail ] && { echo "FATAL: not an image" >&2; exit 255; }
    printf '{"data":{"attributes":{"runscript":"%s"}}}' "$line" ;;
esac`).Binary
	return bin, func() int { return strings.Count(testutil.ReadFile(t, count), "\n") }
}

// rewrite gives path new content and a later modification time (a
// rebuild of an image, an upgrade of the runtime).
func rewrite(t *testing.T, path, content string) {
	t.Helper()
	testutil.WriteFile(t, path, content, 0o755)
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// The runtime's --version and an image's inspect are asked once per
// state of the file: kept while it is unchanged, asked again once it is
// rewritten; a failure is never kept; a cache that cannot be written
// changes nothing but the number of runs.
func TestAnswersKeptPerFile(t *testing.T) {
	keptAnswersIn(t, t.TempDir())
	bin, runs := countingApptainer(t)
	ctx := context.Background()

	for i := 0; i < 2; i++ {
		a, err := Detect(bin)
		if err != nil || a.Version != "apptainer version 9.9" {
			t.Fatalf("Detect: %+v, %v", a, err)
		}
	}
	if got := runs(); got != 1 {
		t.Fatalf("--version ran %d times for an unchanged binary, want 1", got)
	}

	img := filepath.Join(t.TempDir(), "app.sif")
	testutil.WriteFile(t, img, "exec /app\n", 0o644)
	a := &Apptainer{Binary: bin}
	for i := 0; i < 2; i++ {
		if has, err := a.HasRunscript(ctx, img); err != nil || !has {
			t.Fatalf("HasRunscript: %v, %v", has, err)
		}
	}
	if got := runs(); got != 2 {
		t.Fatalf("%d runs after two inspections of one image, want 2", got)
	}
	rewrite(t, img, "# none\n")
	if has, err := a.HasRunscript(ctx, img); err != nil || has {
		t.Fatalf("HasRunscript of the rebuilt image: %v, %v (the old answer kept?)", has, err)
	}
	rewrite(t, img, "fail\n")
	for i := 0; i < 2; i++ {
		if _, err := a.Inspect(ctx, img); err == nil || !strings.Contains(err.Error(), "not an image") {
			t.Fatalf("Inspect of a broken image: %v", err)
		}
	}
	if got := runs(); got != 5 {
		t.Fatalf("%d runs, want 5: a failed inspect is asked again", got)
	}

	rewrite(t, bin, strings.Replace(testutil.ReadFile(t, bin), "9.9", "10.0", 1))
	if a, err := Detect(bin); err != nil || a.Version != "apptainer version 10.0" {
		t.Fatalf("Detect after an upgrade: %+v, %v", a, err)
	}

	// A cache directory that cannot be made: asked every time, no error.
	blocker := filepath.Join(t.TempDir(), "file")
	testutil.WriteFile(t, blocker, "", 0o644)
	keptAnswersIn(t, filepath.Join(blocker, "answers"))
	before := runs()
	for i := 0; i < 2; i++ {
		if _, err := Detect(bin); err != nil {
			t.Fatal(err)
		}
	}
	if got := runs() - before; got != 2 {
		t.Fatalf("--version ran %d times without a cache, want 2", got)
	}
}

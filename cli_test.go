package main

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"sstack/internal/testutil"
)

// Every command's help prints, in process and with no runtime: a flag
// that clashes with another (a shorthand taken twice) panics in cobra only
// when the command's flags are merged, which --help does.
func TestEveryCommandHasHelp(t *testing.T) {
	root := newRoot(&options{})
	for _, c := range root.Commands() {
		if c.Hidden {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			var out, errs bytes.Buffer
			code := run([]string{c.Name(), "--help"}, &out, &errs)
			if code != 0 || !strings.Contains(out.String(), "Usage:") {
				t.Errorf("sstack %s --help: exit code %d\nstdout:\n%s\nstderr:\n%s", c.Name(), code, out.String(), errs.String())
			}
		})
	}
}

// The logs flags parse after `logs`, with singularity-stack's -i and -x.
func TestLogsFlags(t *testing.T) {
	o := &options{}
	root := newRoot(o)
	logs, _, err := root.Find([]string{"logs"})
	if err != nil {
		t.Fatal(err)
	}
	if err := logs.ParseFlags([]string{"--until", "5m", "--index", "2", "-i", "a", "--include", "b", "-x", "c", "--exclude", "d", "--stdout", "--stderr", "-f"}); err != nil {
		t.Fatal(err)
	}
	if l := o.logs; l.Until != "5m" || l.Index != 2 || strings.Join(l.Include, ",") != "a,b" || strings.Join(l.Exclude, ",") != "c,d" || !l.Stdout || !l.Stderr || !l.Follow {
		t.Errorf("parsed %+v", o)
	}
	if root.Flags().ShorthandLookup("i") != nil || root.Flags().ShorthandLookup("x") != nil {
		t.Error("-i and -x are taken before the command too")
	}
}

// up without -n loads the compose file to learn the project's name, then
// to run it: the second load is the first's answer, not a second read
// (the file, rewritten in between, is not read again); other options are
// loaded anew.
func TestComposeFileLoadedOncePerOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	testutil.WriteFile(t, file, "name: once\nservices:\n  web:\n    image: "+filepath.Join(dir, "web.sif")+"\n", 0o644)
	o := &options{files: []string{file}, stderr: io.Discard}
	project, err := o.projectName()
	if err != nil || project != "once" {
		t.Fatalf("project %q, %v", project, err)
	}
	testutil.WriteFile(t, file, "name: twice\nservices: {web: {image: x.sif}, db: {image: y.sif}}\n", 0o644)
	if plan, err := o.load(); err != nil || plan.Project != "once" {
		t.Fatalf("the second load read the file again: %v", err)
	}
	o.profiles = []string{"debug"}
	if plan, err := o.load(); err != nil || plan.Project != "twice" {
		t.Fatalf("other options, loaded anew: %v", err)
	}
}

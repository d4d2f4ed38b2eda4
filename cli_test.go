package main

import (
	"bytes"
	"strings"
	"testing"
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

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

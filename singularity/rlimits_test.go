package singularity

import (
	"strings"
	"testing"
)

func TestWithRlimits(t *testing.T) {
	argv, err := withRlimits([]Rlimit{{"nofile", 1024, 4096}, {"core", -1, -1}}, []string{"/usr/bin/apptainer", "exec"})
	if err != nil {
		t.Skip(err) // no prlimit here
	}
	got := strings.Join(argv[1:], " ")
	if got != "--nofile=1024:4096 --core=unlimited:unlimited -- /usr/bin/apptainer exec" || !strings.HasSuffix(argv[0], "prlimit") {
		t.Errorf("argv %q", argv)
	}
	if argv, _ := withRlimits(nil, []string{"a"}); len(argv) != 1 {
		t.Errorf("no limits: %q", argv)
	}
	for _, bad := range []Rlimit{{"nofiles", 1, 1}, {"nofile", 5, 1}, {"nofile", -1, 10}, {"nofile", -2, -2}} {
		if err := ValidateRlimit(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if n, err := HardLimit("nofile"); err != nil || n == 0 {
		t.Errorf("HardLimit(nofile) = %d, %v", n, err)
	}
}

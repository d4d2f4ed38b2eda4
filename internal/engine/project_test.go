package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sstack/internal/testutil"
	"sstack/singularity"
)

// The clash check trusts a listing asked ahead only when it shows no
// instance of the project: one that shows some is asked again (a
// teardown may have ended since), and that answer decides.
func TestClashListedAhead(t *testing.T) {
	dir := t.TempDir()
	asked := filepath.Join(dir, "asked")
	// The runtime's answer now: the instances named in the file "now".
	now := filepath.Join(dir, "now")
	bin := filepath.Join(dir, "apptainer")
	testutil.WriteFile(t, bin, `#!/bin/sh
echo "$*" >> `+asked+`
printf '{"instances":[%s]}' "$(cat `+now+`)"
`, 0o755)
	rt := &singularity.Apptainer{Binary: bin}
	instance := func(name string) singularity.InstanceInfo { return singularity.InstanceInfo{Name: name} }
	ahead := func(infos ...singularity.InstanceInfo) Listing {
		return func() ([]singularity.InstanceInfo, error) { return infos, nil }
	}
	for _, c := range []struct {
		name    string
		ahead   Listing
		now     string
		clash   string // in the error; "" for none
		askedRT bool
	}{
		{"ahead, none of the project's", ahead(instance("other.web.1")), `{"instance":"p.web.1"}`, "", false},
		{"ahead, gone since", ahead(instance("p.web.1")), ``, "", true},
		{"ahead, still there", ahead(instance("p.web.1")), `{"instance":"p.web.1"},{"instance":"p.db.1"}`, "instances p.db.1, p.web.1 exist", true},
		{"not ahead", nil, `{"instance":"p.web.1"}`, "instances p.web.1 exist", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_ = os.Remove(asked)
			testutil.WriteFile(t, now, c.now, 0o644)
			err := checkClash(context.Background(), rt, "p", t.TempDir(), c.ahead)
			if c.clash == "" && err != nil || c.clash != "" && (err == nil || !strings.Contains(err.Error(), c.clash)) {
				t.Errorf("error %v, want clash %q", err, c.clash)
			}
			_, statErr := os.Stat(asked)
			if ran := statErr == nil; ran != c.askedRT {
				t.Errorf("apptainer asked: %v, want %v", ran, c.askedRT)
			}
		})
	}
}

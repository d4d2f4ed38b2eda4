package singularity

import (
	"os"
	"os/user"
	"path/filepath"
	"testing"
)

// The instance log directory is the one Apptainer reported last, else
// where Apptainer puts it; removing an instance's files leaves others'.
func TestInstanceLogFiles(t *testing.T) {
	host, _ := os.Hostname()
	u, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	a := &Apptainer{Binary: "/usr/bin/apptainer", Env: []string{"HOME=/h"}}
	if got, want := a.instanceLogDir(), filepath.Join("/h/.apptainer/instances/logs", host, u.Username); got != want {
		t.Errorf("from HOME: %s, want %s", got, want)
	}
	a.Env = []string{"HOME=/h", "APPTAINER_CONFIGDIR=/c"}
	if got, want := a.instanceLogDir(), filepath.Join("/c/instances/logs", host, u.Username); got != want {
		t.Errorf("from APPTAINER_CONFIGDIR: %s, want %s", got, want)
	}
	s := &Apptainer{Binary: "/usr/bin/singularity", Env: []string{"HOME=/h"}}
	if got, want := s.instanceLogDir(), filepath.Join("/h/.singularity/instances/logs", host, u.Username); got != want {
		t.Errorf("singularity: %s, want %s", got, want)
	}
	dir := t.TempDir()
	a.noteLogDir([]InstanceInfo{{Name: "p.web.1", LogOutPath: filepath.Join(dir, "p.web.1.out")}})
	for _, f := range []string{"p.web.1.out", "p.web.1.err", "p.web.10.out", "p.db.1.err"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.removeInstanceLogs("p.web.1")
	a.removeInstanceLogs("../x")
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 2 || filepath.Base(left[0]) != "p.db.1.err" || filepath.Base(left[1]) != "p.web.10.out" {
		t.Errorf("left: %v, want p.db.1.err and p.web.10.out", left)
	}
}

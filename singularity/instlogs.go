package singularity

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// Apptainer keeps each instance's output in NAME.out and NAME.err of a
// per-user, per-host log directory (~/.apptainer/instances/logs/HOST/USER)
// and never removes them: `instance stop` leaves both (measured), so
// thousands pile up after a few hundred stacks. sstack removes an
// instance's files once it has made sure the instance is gone.

// noteLogDir remembers the log directory Apptainer reported for an
// instance in `instance list --json`: the one that holds every instance's
// files of this user on this host.
func (a *Apptainer) noteLogDir(infos []InstanceInfo) {
	for _, i := range infos {
		if i.LogOutPath != "" {
			a.initsMu.Lock()
			a.logDir = filepath.Dir(i.LogOutPath)
			a.initsMu.Unlock()
			return
		}
	}
}

// instanceLogDir is the log directory last reported by Apptainer, else
// where Apptainer puts it: APPTAINER_CONFIGDIR (SINGULARITY_CONFIGDIR),
// else ~/.apptainer (~/.singularity), then instances/logs/HOST/USER.
func (a *Apptainer) instanceLogDir() string {
	a.initsMu.Lock()
	dir := a.logDir
	a.initsMu.Unlock()
	if dir != "" {
		return dir
	}
	prefix, hidden := "APPTAINER_", ".apptainer"
	if filepath.Base(a.Binary) == "singularity" {
		prefix, hidden = "SINGULARITY_", ".singularity"
	}
	var config, home string
	for _, kv := range a.baseEnv() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case prefix + "CONFIGDIR":
			config = v
		case "HOME":
			home = v
		}
	}
	u, err := user.Current()
	host, herr := os.Hostname()
	if err != nil || herr != nil {
		return ""
	}
	if config == "" {
		if home == "" {
			home = u.HomeDir
		}
		config = filepath.Join(home, hidden)
	}
	return filepath.Join(config, "instances", "logs", host, u.Username)
}

// removeInstanceLogs removes the log files of the instance name, which is
// gone. Names are checked by ValidateName: no path can escape the
// directory.
func (a *Apptainer) removeInstanceLogs(name string) {
	dir := a.instanceLogDir()
	if dir == "" || ValidateName(name) != nil {
		return
	}
	for _, ext := range []string{".out", ".err"} {
		_ = os.Remove(filepath.Join(dir, name+ext))
	}
}

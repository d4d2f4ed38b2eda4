// Package statedir is the layout of a project's state directory, in one
// place: every part of sstack that reads or writes a file there asks this
// package where it is. The tree is private to the user who runs the stack
// (directories 0700, files 0600): logs, volumes and the control socket of
// a stack on a shared login node are nobody else's business.
//
//	<base>/<project>/
//	    lock             held by the running supervisor; holds its pid
//	    control.sock     the control API
//	    sstack.log       status lines of a detached supervisor
//	    ps.json          the replicas as the stack ended (ps -a until down)
//	    journal/<inst>   instances about to be started (crash-safe down)
//	    logs/            service output (sstack logs)
//	    hosts/<service>  generated /etc/hosts files
//	    network.json, slirp.sock, holder.sock, resolv.conf
//	                     the stack's network (internal/stacknet)
//	    <run-name>/      a one-off run's files (sstack run)
//	    volumes/<name>   named volumes
//	<base>/_volumes/<name>  external volumes
package statedir

import (
	"fmt"
	"os"
	"path/filepath"
)

const (
	lockFile    = "lock"
	socketFile  = "control.sock"
	logFile     = "sstack.log"
	lastPsFile  = "ps.json"
	journalDir  = "journal"
	logsDir     = "logs"
	hostsDir    = "hosts"
	volumesDir  = "volumes"
	externalDir = "_volumes"
)

func Lock(dir string) string          { return filepath.Join(dir, lockFile) }
func Socket(dir string) string        { return dir + "/" + socketFile }
func SocketName() string              { return socketFile }
func SupervisorLog(dir string) string { return filepath.Join(dir, logFile) }
func LastPs(dir string) string        { return filepath.Join(dir, lastPsFile) }
func Journal(dir string) string       { return filepath.Join(dir, journalDir) }
func Logs(dir string) string          { return filepath.Join(dir, logsDir) }
func Hosts(dir string) string         { return filepath.Join(dir, hostsDir) }
func Volumes(dir string) string       { return filepath.Join(dir, volumesDir) }

// IsVolumes: the entry of a state directory that `down` keeps unless -v.
func IsVolumes(name string) bool { return name == volumesDir }

// ExternalVolume is where an external volume lives, under the state base.
func ExternalVolume(base, name string) string { return filepath.Join(base, externalDir, name) }

// IsProject: an entry of the state base that is a project's directory.
func IsProject(name string) bool { return name != externalDir && name != "" && name[0] != '.' }

// Private creates dir (and its parents) readable by its owner only, and
// tightens it when an earlier version made it 0755.
func Private(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Problem(err)
	}
	return Problem(os.Chmod(dir, 0o700))
}

// Problem says that err (which names the path) is the state directory's,
// and what to do; nil stays nil.
func Problem(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("state directory: %w; sstack keeps each project's state there: make it writable by you and give it space, or set SSTACK_STATE_DIR to another directory", err)
}

// Record notes, before its start, that instance is being started: an
// sstack killed meanwhile leaves the note, and `down` then knows to look
// for an instance that appears after the sstack died.
func Record(dir, instance string) error {
	j := Journal(dir)
	if err := os.MkdirAll(j, 0o700); err != nil {
		return Problem(err)
	}
	return Problem(os.WriteFile(filepath.Join(j, instance), nil, 0o600))
}

// Forget removes instance's note once it is gone (or never started).
func Forget(dir, instance string) { _ = os.Remove(filepath.Join(Journal(dir), instance)) }

// Recorded lists the instances noted and not forgotten.
func Recorded(dir string) []string {
	entries, _ := os.ReadDir(Journal(dir))
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

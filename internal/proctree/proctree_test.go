package proctree

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sstack/internal/testutil"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestTreeOfShell: a shell and the two sleeps it started, with the shell
// as their parent.
func TestTreeOfShell(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sh := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-sh, syscall.SIGKILL) // the group: sh and its sleeps
		_ = cmd.Wait()
	})

	var procs []Process
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if procs, err = Tree(sh); err != nil {
			t.Fatal(err)
		}
		if len(procs) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(procs) != 3 {
		t.Fatalf("Tree(%d) = %+v, want sh and two sleeps", sh, procs)
	}
	if procs[0].Pid != sh || procs[0].PPid != os.Getpid() || procs[0].Command != "sh -c sleep 30 & sleep 30 & wait" {
		t.Errorf("root = %+v, want sh (pid %d, parent %d)", procs[0], sh, os.Getpid())
	}
	for _, p := range procs[1:] {
		if p.PPid != sh || p.Command != "sleep 30" || p.UID != os.Getuid() {
			t.Errorf("child %+v: want sleep 30 of uid %d with parent %d", p, os.Getuid(), sh)
		}
	}
	if procs[1].Pid >= procs[2].Pid {
		t.Errorf("not sorted by pid: %+v", procs)
	}

	// In sstack's own PID namespace, InNamespaceOf is Tree: not the host.
	ns, err := InNamespaceOf(sh)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ns, procs) {
		t.Errorf("InNamespaceOf(%d) = %+v, want Tree's %+v", sh, ns, procs)
	}
}

func TestTreeOfMissingProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := Tree(cmd.Process.Pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Tree of an exited process: %v, want a not-exist error", err)
	}
	if _, err := InNamespaceOf(cmd.Process.Pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("InNamespaceOf an exited process: %v, want a not-exist error", err)
	}
}

// fakeProc writes a /proc with the given processes; a nil entry is a
// process that vanished (its directory is left, empty).
func fakeProc(t *testing.T, procs map[int]*fakeProcess) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if p == nil {
			continue
		}
		files := map[string]string{
			"stat":    strconv.Itoa(pid) + " (" + p.comm + ") S " + strconv.Itoa(p.ppid) + " 1 1 0 -1 4194560",
			"status":  "Name:\t" + p.comm + "\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t" + p.uid + "\nGid:\t0\t0\t0\t0\n",
			"cmdline": p.cmdline,
		}
		for name, content := range files {
			testutil.WriteFile(t, filepath.Join(dir, name), content, 0o644)
		}
		if err := os.Symlink("pid:["+p.ns+"]", filepath.Join(dir, "ns", "pid")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(strconv.Itoa(1), filepath.Join(root, "self")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sys", "meminfo"} {
		if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type fakeProcess struct {
	comm, cmdline, uid, ns string
	ppid                   int
}

func TestReadFromFakeProc(t *testing.T) {
	procDir = fakeProc(t, map[int]*fakeProcess{
		1:   {comm: "init", cmdline: "/sbin/init\x00", uid: "0\t0\t0\t0", ns: "host"},
		2:   {comm: "kthreadd", cmdline: "", uid: "0\t0\t0\t0", ns: "host"},
		10:  {comm: "Apptainer instan", cmdline: "Apptainer instance: root [app.web.1]\x00\x00", uid: "0\t0\t0\t0", ns: "host", ppid: 1},
		11:  {comm: "appinit", cmdline: "appinit\x00\x00\x00\x00   \x00", uid: "0\t0\t0\t0", ns: "inst", ppid: 10},
		20:  {comm: "starter", cmdline: "Apptainer runtime parent: \x00", uid: "1000\t1000\t1000\t1000", ns: "host", ppid: 1},
		21:  {comm: "odd) (name", cmdline: "sh\x00-c\x00echo a b\x00", uid: "1000\t0\t0\t0", ns: "inst", ppid: 20},
		22:  nil,                                                                               // vanished
		23:  {comm: "sleep", cmdline: "", uid: "1000\t1000\t1000\t1000", ns: "inst", ppid: 21}, // a zombie
		100: {comm: "other", cmdline: "other\x00", uid: "0\t0\t0\t0", ns: "other", ppid: 1},
	})
	t.Cleanup(func() { procDir = "/proc" })

	for _, c := range []struct {
		call string
		read func() ([]Process, error)
		want []Process
	}{
		{"Tree(10)", func() ([]Process, error) { return Tree(10) }, []Process{
			{Pid: 10, PPid: 1, UID: 0, Command: "Apptainer instance: root [app.web.1]"},
			{Pid: 11, PPid: 10, UID: 0, Command: "appinit"},
		}},
		{"InNamespaceOf(11)", func() ([]Process, error) { return InNamespaceOf(11) }, []Process{
			{Pid: 11, PPid: 10, UID: 0, Command: "appinit"},
			{Pid: 21, PPid: 20, UID: 1000, Command: "sh -c echo a b"},
			{Pid: 23, PPid: 21, UID: 1000, Command: "[sleep]"},
		}},
	} {
		got, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %+v\nwant %+v", c.call, got, c.want)
		}
	}

	// pid 1 is "self" here: its namespace is sstack's own, so the
	// namespace is not listed (it would be the whole host), the tree is.
	all, err := InNamespaceOf(1)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range all {
		pids = append(pids, p.Pid)
	}
	if want := []int{1, 10, 11, 20, 21, 23, 100}; !reflect.DeepEqual(pids, want) {
		t.Errorf("InNamespaceOf(1) pids = %v, want the tree of 1: %v", pids, want)
	}
	if _, err := InNamespaceOf(22); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("InNamespaceOf a vanished process: %v", err)
	}
}

func TestCommand(t *testing.T) {
	for _, c := range []struct{ cmdline, comm, want string }{
		{"sleep\x0030\x00", "sleep", "sleep 30"},
		{"", "kworker/0:1", "[kworker/0:1]"},
		{"appinit\x00\x00\x00", "appinit", "appinit"},
		{"nginx: master process\x00", "nginx", "nginx: master process"},
		{"a\x00\x00b\x00", "a", "a  b"}, // an empty argument stays visible
	} {
		if got := command([]byte(c.cmdline), c.comm); got != c.want {
			t.Errorf("command(%q, %q) = %q, want %q", c.cmdline, c.comm, got, c.want)
		}
	}
}

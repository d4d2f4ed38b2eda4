package proctree_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
	"sstack/internal/proctree"
	"sstack/internal/testimg"
	"sstack/singularity"
)

// TestInstanceProcesses (integration): a process started with `apptainer
// exec instance://NAME` is in the instance's PID namespace but not a
// descendant of the instance pid (appinit): InNamespaceOf finds it, Tree
// does not. See the package comment.
func TestInstanceProcesses(t *testing.T) {
	rt := testimg.RequireRuntime(t)
	img := testimg.Busybox(t)
	name := testimg.StartInstance(t, rt, singularity.InstanceSpec{Image: img})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := rt.ListInstances(ctx, name)
	if err != nil || len(list) != 1 {
		t.Fatalf("instance list %s: %v, %+v", name, list, err)
	}
	initPid := list[0].Pid

	client := exec.Command(rt.Binary, "exec", "--pwd", "/", "instance://"+name, "sleep", "30")
	client.Stderr = os.Stderr
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	// Runs before the instance is stopped (cleanups run last first);
	// killing the client makes the kernel kill the sleep inside.
	t.Cleanup(func() {
		_ = client.Process.Kill()
		_ = client.Wait()
	})

	// Apptainer runs it by its path in the image.
	isSleep := func(p api.Process) bool { return p.Command == "sleep 30" || strings.HasSuffix(p.Command, "/sleep 30") }
	var procs []api.Process
	deadline := time.Now().Add(30 * time.Second)
	for {
		if procs, err = proctree.InNamespaceOf(initPid); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(procs, isSleep) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("InNamespaceOf(%d) = %+v", initPid, procs)
	i := slices.IndexFunc(procs, isSleep)
	if i < 0 {
		t.Fatalf("InNamespaceOf(%d) lacks the exec'd sleep 30: %+v", initPid, procs)
	}
	sleep := procs[i]
	if procs[0].Pid != initPid || procs[0].Command != "appinit" {
		t.Errorf("first process %+v, want appinit, pid %d", procs[0], initPid)
	}
	if sleep.UID != os.Getuid() {
		t.Errorf("sleep runs as uid %d, want %d", sleep.UID, os.Getuid())
	}
	for _, p := range procs {
		if p.Pid == os.Getpid() || p.Pid == client.Process.Pid || strings.HasPrefix(p.Command, "Apptainer") {
			t.Errorf("%+v is not in the instance", p)
		}
	}

	tree, err := proctree.Tree(initPid)
	if err != nil {
		t.Fatal(err)
	}
	if tree[0].Pid != initPid {
		t.Errorf("Tree(%d) starts with %+v", initPid, tree[0])
	}
	// What the package comment says of Apptainer; a change would make
	// Tree enough for top.
	if slices.ContainsFunc(tree, isSleep) {
		t.Logf("note: with this Apptainer the exec'd process is a descendant of appinit: %+v", tree)
	}
	// Its parent is the client itself (titled "Apptainer runtime
	// parent"), outside the namespace.
	if sleep.PPid != client.Process.Pid {
		t.Errorf("the exec'd sleep's parent is %d, want the apptainer exec client %d", sleep.PPid, client.Process.Pid)
	}
}

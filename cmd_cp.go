package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"sstack/internal/api"
	"sstack/internal/instancefs"
	"sstack/internal/slurm"
	"sstack/singularity"
)

// newCp is docker compose's cp: files into and out of a running
// replica's instance, through its root as the host sees it
// (/proc/PID/root of the instance's init), so the image needs no tar.
func newCp(o *options) *cobra.Command {
	var index int
	c := &cobra.Command{
		Use:   "cp [OPTIONS] SERVICE:SRC_PATH DEST_PATH\n  sstack cp [OPTIONS] SRC_PATH SERVICE:DEST_PATH",
		Short: "Copy files or directories between a service's replica and the host",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcSvc, src, srcIn := splitCpArg(args[0])
			dstSvc, dst, dstIn := splitCpArg(args[1])
			if srcIn == dstIn {
				return &usageError{fmt.Errorf("cp: name a service on exactly one side (SERVICE:PATH)")}
			}
			service, host := srcSvc, args[1]
			if dstIn {
				service, host = dstSvc, args[0]
			}
			hostPath, err := instancefs.HostPath(host)
			if err != nil {
				return &usageError{fmt.Errorf("cp: %w", err)}
			}
			target, err := replicaTarget(o, service, index)
			if err != nil {
				return err
			}
			rt, err := o.runtimeBinary()
			if err != nil {
				return err
			}
			inPath := dst
			if srcIn {
				inPath = src
			}
			if target.Node != "" {
				return cpOnNode(rt.Binary, target, srcIn, inPath, hostPath)
			}
			root, err := instanceRoot(rt, target.Instance)
			if err != nil {
				return err
			}
			if srcIn {
				err = instancefs.Copy(root, src, "/", hostPath)
			} else {
				err = instancefs.Copy("/", hostPath, root, dst)
			}
			if err != nil {
				return fmt.Errorf("cp: service %q: %w", service, err)
			}
			return nil
		},
	}
	c.Flags().IntVar(&index, "index", 0, "Replica number of the service (default 1)")
	return c
}

// splitCpArg splits SERVICE:PATH; a path with no colon, or one starting
// with / or . before its first colon, is the host's.
func splitCpArg(arg string) (service, path string, inInstance bool) {
	svc, p, ok := strings.Cut(arg, ":")
	if !ok || svc == "" || strings.ContainsAny(svc, "/.") {
		return "", arg, false
	}
	return svc, p, true
}

// replicaTarget is where the running replica is.
func replicaTarget(o *options, service string, index int) (api.ExecTarget, error) {
	if index == 0 {
		index = 1
	}
	var target api.ExecTarget
	err := withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
		var err error
		target, err = st.ExecTarget(ctx, api.ExecOptions{Service: service, Index: index})
		return err
	})
	return target, err
}

// cpOnNodeArg, as sstack's first argument, copies on the node where it
// runs: RUNTIME INSTANCE in|out PATH-IN-INSTANCE HOST-PATH. cp runs it
// there in a step of the allocation, for a replica on another node (the
// instance's root is in that node's /proc; host paths are the shared
// file system's, as on a cluster).
const cpOnNodeArg = "__sstack-cp-on-node"

func cpOnNode(runtime string, t api.ExecTarget, fromInstance bool, inPath, hostPath string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := "out"
	if !fromInstance {
		dir = "in"
	}
	argv := slurm.ExecStep("srun", t.Job, t.Node, false, []string{self, cpOnNodeArg, runtime, t.Instance, dir, inPath, hostPath})
	srun, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("cp: %s runs on node %s of Slurm job %s, and srun is not on PATH to reach it: %w", t.Instance, t.Node, t.Job, err)
	}
	cmd := exec.Command(srun, argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return &exitError{exitStatus(cmd.ProcessState)}
	}
	return nil
}

// cpHere is cpOnNodeArg's side: the copy, on this node.
func cpHere(args []string) int {
	if len(args) != 5 {
		fmt.Fprintln(os.Stderr, "sstack: "+cpOnNodeArg+": want RUNTIME INSTANCE in|out PATH HOST-PATH")
		return 2
	}
	rt, err := singularity.Detect(args[0])
	root := ""
	if err == nil {
		root, err = instanceRoot(rt, args[1])
	}
	if err == nil {
		if args[2] == "out" {
			err = instancefs.Copy(root, args[3], "/", args[4])
		} else {
			err = instancefs.Copy("/", args[4], root, args[3])
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sstack: cp: instance %s: %v\n", args[1], err)
		return 1
	}
	return 0
}

// instanceRoot is /proc/PID/root of the instance's init on this node.
func instanceRoot(rt *singularity.Apptainer, instance string) (string, error) {
	infos, err := rt.ListInstances(context.Background(), instance)
	if err != nil {
		return "", err
	}
	for _, i := range infos {
		if i.Name == instance && i.Pid > 0 {
			return "/proc/" + strconv.Itoa(i.Pid) + "/root", nil
		}
	}
	return "", fmt.Errorf("cp: instance %s is not running", instance)
}

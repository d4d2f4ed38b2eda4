package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"sstack/internal/api"
	"sstack/internal/instancefs"
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
			root, err := replicaRoot(o, service, index)
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

// replicaRoot is /proc/PID/root of the running replica's instance init.
func replicaRoot(o *options, service string, index int) (string, error) {
	if index == 0 {
		index = 1
	}
	var target api.ExecTarget
	err := withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
		var err error
		target, err = st.ExecTarget(ctx, api.ExecOptions{Service: service, Index: index})
		return err
	})
	if err != nil {
		return "", err
	}
	if target.Node != "" {
		return "", fmt.Errorf("cp: %s runs on node %s of the Slurm allocation: cp reaches only replicas on this node", target.Instance, target.Node)
	}
	rt, err := o.runtimeBinary()
	if err != nil {
		return "", err
	}
	infos, err := rt.ListInstances(context.Background(), target.Instance)
	if err != nil {
		return "", err
	}
	for _, i := range infos {
		if i.Name == target.Instance && i.Pid > 0 {
			return "/proc/" + strconv.Itoa(i.Pid) + "/root", nil
		}
	}
	return "", fmt.Errorf("cp: instance %s is not running", target.Instance)
}

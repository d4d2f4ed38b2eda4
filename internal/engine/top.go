package engine

import (
	"context"

	"sstack/internal/api"
	"sstack/internal/proctree"
	"sstack/singularity"
)

// Top lists the processes of each replica's instance, read from the host's
// /proc, for replicas found by ps (supervised or not).
func Top(ctx context.Context, rt *singularity.Apptainer, project string, rows []api.Replica) ([]api.TopReplica, error) {
	infos, err := rt.ListInstances(ctx, project+".*")
	if err != nil {
		return nil, err
	}
	pids := map[string]int{}
	for _, i := range infos {
		pids[i.Name] = i.Pid
	}
	var out []api.TopReplica
	for _, r := range rows {
		pid, ok := pids[r.Instance]
		if !ok {
			continue
		}
		// Processes started with exec instance:// are no descendants of the
		// instance's init, but they live in its PID namespace.
		procs, err := proctree.InNamespaceOf(pid)
		if err != nil {
			return nil, err
		}
		out = append(out, api.TopReplica{Name: r.Name, Instance: r.Instance, Processes: procs})
	}
	return out, nil
}

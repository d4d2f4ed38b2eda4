package singularity

import (
	"context"

	"sstack/internal/usage"
)

// hostUsage reads the usage of this host's instances; it keeps the host's
// cgroup mounts, read once.
var hostUsage usage.Reader

// Usage implements Runtime: the instances' init pids come from the cache
// ListInstances fills (checked against recycled pids), so a scrape runs
// no apptainer command unless an instance is new to it.
func (a *Apptainer) Usage(ctx context.Context, instances []string) (map[string]usage.Usage, error) {
	inits := make(map[string]int, len(instances))
	missing := false
	a.initsMu.Lock()
	for _, name := range instances {
		if pid, ok := a.inits[name]; ok {
			inits[name] = pid
		} else {
			missing = true
		}
	}
	a.initsMu.Unlock()
	for name, pid := range inits {
		if !isInstanceInit(pid, name) {
			delete(inits, name)
			missing = true
		}
	}
	if missing {
		want := map[string]bool{}
		for _, name := range instances {
			want[name] = true
		}
		infos, err := a.ListInstances(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, info := range infos {
			if want[info.Name] {
				inits[info.Name] = info.Pid
			}
		}
	}
	return hostUsage.Read(inits), nil
}

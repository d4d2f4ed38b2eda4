package actors

import (
	"context"
	"time"

	"sstack/compose"
	"sstack/singularity"
)

// oomWatch reads the OOM kill count of the instance's memory cgroup
// (Runtime.Usage) before a run of a service with a memory limit, and
// returns the test of the run's exit: killed by SIGKILL (137) while the
// count went up means the kernel's OOM killer ended it. Without a limit,
// or without a cgroup to count in, the test always says no, without a
// look at the instance.
func oomWatch(rt singularity.Runtime, svc *compose.Service, instance string) func(code int) bool {
	no := func(int) bool { return false }
	if r := svc.Resources; r == nil || r.Memory == 0 && r.MemorySwap <= 0 {
		return no
	}
	before, ok := oomKills(rt, instance)
	if !ok {
		return no
	}
	return func(code int) bool {
		if code != 137 {
			return false
		}
		after, ok := oomKills(rt, instance)
		return ok && after > before
	}
}

// oomKills is the instance's OOM kill count, if it has a cgroup.
func oomKills(rt singularity.Runtime, instance string) (uint64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	use, err := rt.Usage(ctx, []string{instance})
	u, ok := use[instance]
	return u.OOMKills, err == nil && ok && u.Cgroup()
}

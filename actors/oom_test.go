package actors

import (
	"context"
	"testing"

	"sstack/compose"
	"sstack/internal/api"
)

// oomRuntime counts OOM kills as the kernel would, in a cgroup.
type oomRuntime struct {
	*fakeRuntime
	kills uint64
	asked int
}

func (o *oomRuntime) Usage(ctx context.Context, instances []string) (map[string]api.Usage, error) {
	o.asked++
	return map[string]api.Usage{instances[0]: {Source: api.SourceCgroupV1, OOMKills: o.kills}}, nil
}

func TestOOMWatch(t *testing.T) {
	limited := &compose.Service{Resources: &compose.Resources{Memory: 1 << 20}}
	rt := &oomRuntime{fakeRuntime: newFakeRuntime(nil), kills: 2}
	killed := oomWatch(rt, limited, "p.w.1")
	if killed(137) {
		t.Error("no new OOM kill, yet reported")
	}
	rt.kills = 3
	if killed(1) {
		t.Error("exit code 1 reported as an OOM kill")
	}
	if !killed(137) {
		t.Error("SIGKILL with a new OOM kill not reported")
	}
	rt.asked = 0
	if oomWatch(rt, &compose.Service{}, "p.w.1")(137) || rt.asked != 0 {
		t.Errorf("a service without a memory limit: the cgroup was read %d times", rt.asked)
	}
	if oomWatch(newFakeRuntime(nil), limited, "p.w.1")(137) {
		t.Error("an instance without a cgroup reported an OOM kill")
	}
}

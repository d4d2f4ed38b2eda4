package actors

import (
	"context"
	"testing"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/singularity"
)

func TestInstanceSpecLimitsAndGPU(t *testing.T) {
	svc := &compose.Service{Name: "w", Image: "/i.sif",
		Resources: &compose.Resources{CPUs: 0.5, CPUShares: 100, CPUSet: "1", Memory: 1 << 20, MemoryReservation: 1 << 19,
			MemorySwap: -1, PidsLimit: 9, OOMKillDisable: true, BlkioWeight: 20, Keys: []string{"x"}},
		GPU: &compose.GPU{Vendor: compose.GPUAMD}}
	spec := instanceSpec(&ServiceConfig{Instance: "p.w.1", Service: svc})
	want := singularity.Limits{CPUs: 0.5, CPUShares: 100, CPUSetCPUs: "1", Memory: 1 << 20, MemoryReservation: 1 << 19,
		MemorySwap: -1, PidsLimit: 9, OOMKillDisable: true, BlkioWeight: 20}
	if spec.Limits != want || spec.GPU != singularity.GPUAMD {
		t.Errorf("limits %+v gpu %q, want %+v amd", spec.Limits, spec.GPU, want)
	}
	svc.GPU.Vendor = compose.GPUNvidia
	if spec := instanceSpec(&ServiceConfig{Instance: "p.w.1", Service: svc}); spec.GPU != singularity.GPUNvidia {
		t.Errorf("gpu %q, want nvidia", spec.GPU)
	}
	if spec := instanceSpec(&ServiceConfig{Instance: "p.w.1", Service: &compose.Service{Image: "/i.sif"}}); !spec.Limits.IsZero() || spec.GPU != "" {
		t.Errorf("a service without limits or GPUs: %+v", spec)
	}
}

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

package actors

import (
	"context"

	"sstack/compose"
	"sstack/singularity"
)

// InstanceLimits are the cgroup limits of a service's instances.
func InstanceLimits(svc *compose.Service) singularity.Limits {
	r := svc.Resources
	if r == nil {
		return singularity.Limits{}
	}
	return singularity.Limits{
		CPUs: r.CPUs, CPUShares: r.CPUShares, CPUSetCPUs: r.CPUSet,
		Memory: r.Memory, MemoryReservation: r.MemoryReservation, MemorySwap: r.MemorySwap,
		PidsLimit: r.PidsLimit, OOMKillDisable: r.OOMKillDisable, BlkioWeight: r.BlkioWeight,
	}
}

// instanceGPU is the GPU vendor flag of a service's instances.
func instanceGPU(svc *compose.Service) string {
	if svc.GPU == nil {
		return ""
	}
	switch svc.GPU.Vendor {
	case compose.GPUAMD:
		return singularity.GPUAMD
	default:
		return singularity.GPUNvidia
	}
}

// oomCounter is implemented by runtimes that can tell how many processes
// of an instance the kernel killed for exceeding its memory limit
// (*singularity.Apptainer).
type oomCounter interface {
	OOMKills(ctx context.Context, instance string) (int64, error)
}

// oomWatch reads the OOM kill count of the instance before a run of a
// service with a memory limit, and returns the test of the run's exit:
// killed by SIGKILL (137) while the count went up means the kernel's OOM
// killer ended it. Without a limit, or a runtime that cannot tell, the
// test always says no, without a look at the instance.
func oomWatch(rt singularity.Runtime, svc *compose.Service, instance string) func(code int) bool {
	no := func(int) bool { return false }
	c, ok := rt.(oomCounter)
	if r := svc.Resources; !ok || r == nil || r.Memory == 0 && r.MemorySwap <= 0 {
		return no
	}
	before, err := c.OOMKills(context.Background(), instance)
	if err != nil {
		return no
	}
	return func(code int) bool {
		if code != 137 {
			return false
		}
		after, err := c.OOMKills(context.Background(), instance)
		return err == nil && after > before
	}
}

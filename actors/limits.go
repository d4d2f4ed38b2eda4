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

// oomWatch reads the OOM kill count of the instance before a run of a
// service with a memory limit, and returns the test of the run's exit:
// killed by SIGKILL (137) while the count went up means the kernel's OOM
// killer ended it. Without a limit the test always says no, without a
// look at the instance; so does it when the count cannot be read.
func oomWatch(rt singularity.Runtime, svc *compose.Service, instance string) func(code int) bool {
	no := func(int) bool { return false }
	if r := svc.Resources; r == nil || r.Memory == 0 && r.MemorySwap <= 0 {
		return no
	}
	before, err := rt.OOMKills(context.Background(), instance)
	if err != nil {
		return no
	}
	return func(code int) bool {
		if code != 137 {
			return false
		}
		after, err := rt.OOMKills(context.Background(), instance)
		return err == nil && after > before
	}
}

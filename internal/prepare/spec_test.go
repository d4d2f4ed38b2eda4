package prepare

import (
	"testing"

	"sstack/compose"
	"sstack/singularity"
)

func TestInstanceSpecLimitsAndGPU(t *testing.T) {
	svc := &compose.Service{Name: "w", Image: "/i.sif",
		Resources: &compose.Resources{CPUs: 0.5, CPUShares: 100, CPUSet: "1", Memory: 1 << 20, MemoryReservation: 1 << 19,
			MemorySwap: -1, PidsLimit: 9, OOMKillDisable: true, BlkioWeight: 20, Keys: []string{"x"}},
		GPU: &compose.GPU{Vendor: compose.GPUAMD}}
	spec := (&Spec{Instance: "p.w.1", Service: svc}).InstanceSpec()
	want := singularity.Limits{CPUs: 0.5, CPUShares: 100, CPUSetCPUs: "1", Memory: 1 << 20, MemoryReservation: 1 << 19,
		MemorySwap: -1, PidsLimit: 9, OOMKillDisable: true, BlkioWeight: 20}
	if spec.Limits != want || spec.GPU != singularity.GPUAMD {
		t.Errorf("limits %+v gpu %q, want %+v amd", spec.Limits, spec.GPU, want)
	}
	svc.GPU.Vendor = compose.GPUNvidia
	if spec := (&Spec{Instance: "p.w.1", Service: svc}).InstanceSpec(); spec.GPU != singularity.GPUNvidia {
		t.Errorf("gpu %q, want nvidia", spec.GPU)
	}
	if spec := (&Spec{Instance: "p.w.1", Service: &compose.Service{Image: "/i.sif"}}).InstanceSpec(); !spec.Limits.IsZero() || spec.GPU != "" {
		t.Errorf("a service without limits or GPUs: %+v", spec)
	}
}

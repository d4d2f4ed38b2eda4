package singularity

import (
	"reflect"
	"testing"
)

func TestDetectGPUsFromEnvironment(t *testing.T) {
	inv := DetectGPUs([]string{"CUDA_VISIBLE_DEVICES=2, 3", "ROCR_VISIBLE_DEVICES=NoDevFiles"})
	eqGPU(t, inv.NVIDIA.IDs, []string{"2", "3"})
	eqGPU(t, inv.NVIDIA.Inherited, true)
	eqGPU(t, inv.NVIDIA.Source, "CUDA_VISIBLE_DEVICES")
	eqGPU(t, inv.AMD.IDs, []string{})
	eqGPU(t, inv.AMD.Inherited, true)
}

func eqGPU(t *testing.T, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

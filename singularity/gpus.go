package singularity

import "fmt"

// GPU vendors of InstanceSpec.GPU.
const (
	GPUNvidia = "nvidia" // --nv: the host's driver libraries and /dev/nvidia* in the instance
	GPUAMD    = "amd"    // --rocm: the host's ROCm libraries and /dev/kfd, /dev/dri
)

// gpuArgs are the flags that give an instance the host's GPUs. They are
// given at instance start: the libraries are bound into the instance
// then, and every `exec instance://` finds them on LD_LIBRARY_PATH
// (/.singularity.d/libs, measured). Without a GPU Apptainer prints
// nothing and starts the instance anyway (measured), so sstack warns
// about that itself (compose, when it translates the request).
func gpuArgs(vendor string) ([]string, error) {
	switch vendor {
	case "":
		return nil, nil
	case GPUNvidia:
		return []string{"--nv"}, nil
	case GPUAMD:
		return []string{"--rocm"}, nil
	}
	return nil, fmt.Errorf("GPU vendor %q: want %q or %q", vendor, GPUNvidia, GPUAMD)
}

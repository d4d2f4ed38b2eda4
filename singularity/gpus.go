package singularity

// The host's GPUs, as Apptainer's --nv and --rocm give them to an
// instance: the flags, which devices this machine has and which of them
// this job may use. Package compose decides from this which GPUs a
// service sees.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

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

// GPUInventory is the GPUs the machine gives this job, per vendor.
type GPUInventory struct {
	NVIDIA GPUDevices
	AMD    GPUDevices
}

// GPUDevices are one vendor's GPUs.
type GPUDevices struct {
	// Present: the machine has such GPUs (NVIDIA: a /dev/nvidiaN device or
	// nvidia-smi; AMD: /dev/kfd).
	Present bool
	// IDs are the GPUs this job may use, as the visibility variables name
	// them ("0", "1", ...), in order.
	IDs []string
	// Aliases are other names of a GPU (its UUID) and the ID they name.
	Aliases map[string]string
	// Inherited: IDs come from sstack's own environment (Source is the
	// variable), as a scheduler set it: a service must not see more.
	Inherited bool
	// Source says where IDs come from: the variable, nvidia-smi,
	// /dev/nvidia*, /dev/dri.
	Source string
}

// A batch scheduler tells a job its GPUs through the
// visibility variables (Slurm sets CUDA_VISIBLE_DEVICES, and
// ROCR_VISIBLE_DEVICES for AMD GPUs); a service must not see more.
// Of is the GPUs of vendor (GPUNvidia or GPUAMD).
func (inv *GPUInventory) Of(vendor string) *GPUDevices {
	if vendor == GPUAMD {
		return &inv.AMD
	}
	return &inv.NVIDIA
}

// DetectGPUs finds the GPUs of this machine and of this job: a
// visibility variable in environ (as Slurm sets it) restricts them.
func DetectGPUs(environ []string) GPUInventory {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var inv GPUInventory

	nv := &inv.NVIDIA
	devs := deviceNumbers("/dev/nvidia[0-9]*", "/dev/nvidia")
	smi, smiErr := exec.LookPath("nvidia-smi")
	nv.Present = len(devs) > 0 || smiErr == nil
	if smiErr == nil {
		nv.IDs, nv.Aliases = nvidiaSMI(smi)
		nv.Source = "nvidia-smi"
	}
	if len(nv.IDs) == 0 && len(devs) > 0 {
		nv.IDs, nv.Source = devs, "/dev/nvidia*"
	}

	amd := &inv.AMD
	if _, err := os.Stat("/dev/kfd"); err == nil {
		amd.Present = true
		for i := range deviceNumbers("/dev/dri/renderD*", "/dev/dri/renderD") {
			amd.IDs = append(amd.IDs, strconv.Itoa(i))
		}
		amd.Source = "/dev/dri"
	}

	for d, name := range map[*GPUDevices]string{nv: "CUDA_VISIBLE_DEVICES", amd: "ROCR_VISIBLE_DEVICES"} {
		if v, ok := env[name]; ok {
			d.IDs, d.Inherited, d.Source = splitGPUIDs(v), true, name
		}
	}
	return inv
}

// deviceNumbers lists the numbers N of device files prefix+N, sorted.
func deviceNumbers(glob, prefix string) []string {
	paths, _ := filepath.Glob(glob)
	var nums []int
	for _, p := range paths {
		if n, err := strconv.Atoi(strings.TrimPrefix(p, prefix)); err == nil {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = strconv.Itoa(n)
	}
	return out
}

// nvidiaSMI lists the GPUs by index, with their UUIDs as aliases.
func nvidiaSMI(smi string) ([]string, map[string]string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, smi, "--query-gpu=index,uuid", "--format=csv,noheader").Output()
	if err != nil {
		return nil, nil
	}
	var ids []string
	aliases := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		index, uuid, _ := strings.Cut(line, ",")
		if index = strings.TrimSpace(index); index == "" {
			continue
		}
		ids = append(ids, index)
		if uuid = strings.TrimSpace(uuid); uuid != "" {
			aliases[uuid] = index
		}
	}
	return ids, aliases
}

// splitGPUIDs reads a visibility variable; Slurm's NoDevFiles means none.
func splitGPUIDs(v string) []string {
	ids := []string{}
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" && f != "NoDevFiles" {
			ids = append(ids, f)
		}
	}
	return ids
}

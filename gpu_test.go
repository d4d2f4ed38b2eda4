package main

// GPUs on a machine without one (these machines have none): a service
// that asks for GPUs still starts, its instance gets --nv or --rocm, and
// sstack warns, naming the service and the key, before anything starts;
// Apptainer itself says nothing (measured). Which GPUs a service sees
// (device_ids, count, CUDA_VISIBLE_DEVICES) is tested in compose/.

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"
)

// requireNoGPU skips on a machine with GPUs: the warning is for one
// without.
func requireNoGPU(t *testing.T) {
	t.Helper()
	if devs, _ := filepath.Glob("/dev/nvidia[0-9]*"); len(devs) > 0 {
		t.Skip("this machine has an NVIDIA GPU")
	}
	if _, err := exec.LookPath("nvidia-smi"); err == nil {
		t.Skip("this machine has nvidia-smi")
	}
	if _, err := os.Stat("/dev/kfd"); err == nil {
		t.Skip("this machine has an AMD GPU")
	}
}

// instanceOption reads a boolean option of a running instance from the
// configuration Apptainer keeps for it (~/.apptainer/instances/app/HOST/USER/NAME/NAME.json,
// whose "config" is base64 JSON holding e.g. "rocm": true for --rocm).
func instanceOption(t *testing.T, instance, option string) bool {
	t.Helper()
	home, _ := os.UserHomeDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(home, ".apptainer", "instances", "app", "*", u.Username, instance, instance+".json"))
	if len(files) != 1 {
		t.Fatalf("configuration of instance %s: found %v", instance, files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Config string `json:"config"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(file.Config)
	if err != nil {
		t.Fatal(err)
	}
	var config any
	if err := json.Unmarshal(raw, &config); err != nil {
		t.Fatal(err)
	}
	return findTrue(config, option)
}

func findTrue(v any, key string) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if b, ok := x.(bool); ok && k == key && b {
				return true
			}
			if findTrue(x, key) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if findTrue(x, key) {
				return true
			}
		}
	}
	return false
}

func TestGPUServiceWithoutGPUWarnsAndStarts(t *testing.T) {
	requireNoGPU(t)
	t.Parallel()
	p := newProject(t, services(
		service("train", `["sh", "-c", "echo cuda=$${CUDA_VISIBLE_DEVICES-unset}; exec sleep 1000"]`, "gpus: all"),
		service("infer", `["sh", "-c", "echo rocr=$${ROCR_VISIBLE_DEVICES-unset}; exec sleep 1000"]`, `deploy: {resources: {reservations: {devices: [{driver: amd, capabilities: ["gpu"]}]}}}`),
	))
	r := p.up()
	r.waitStdout(t, "cuda=")
	r.waitStdout(t, "rocr=")
	errs := r.stderr.String()
	nv := `WARN service "train": gpus: no NVIDIA GPU on this machine (no /dev/nvidia*, no nvidia-smi): the instance is started with --nv, but the service sees no GPU; run sstack on a GPU node`
	amd := `WARN service "infer": deploy.resources.reservations.devices: no AMD GPU on this machine (no /dev/kfd): the instance is started with --rocm, but the service sees no GPU; run sstack on a GPU node`
	before(t, errs, nv, "Attaching to")
	before(t, errs, amd, "Attaching to")
	// Nothing restricts GPUs that are not there.
	contains(t, "stdout", r.stdout.String(), "train-1 | cuda=unset", "infer-1 | rocr=unset")
	// Apptainer 1.4 records --nv (without --nvccli) as nvLegacy.
	if !instanceOption(t, p.name+".train.1", "nvLegacy") && !instanceOption(t, p.name+".train.1", "nv") {
		t.Error("the instance of train was not started with --nv")
	}
	if !instanceOption(t, p.name+".infer.1", "rocm") {
		t.Error("the instance of infer was not started with --rocm")
	}
	if instanceOption(t, p.name+".train.1", "rocm") || instanceOption(t, p.name+".infer.1", "nvLegacy") {
		t.Error("an instance got the other vendor's flag")
	}
	p.ctrlCLeavesNothing(r)
}

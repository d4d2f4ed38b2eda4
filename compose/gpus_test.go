package compose

import (
	"bytes"
	"sstack/singularity"
	"strings"
	"testing"
)

// gpuPlan loads compose on a machine with inv's GPUs.
func gpuPlan(t *testing.T, compose string, inv singularity.GPUInventory) (*Plan, error) {
	t.Helper()
	f := newFixture(t, map[string]string{"compose.yaml": compose}, fixtureImages...)
	o := f.opts()
	o.GPUs = &inv
	return f.load(t, o)
}

// devicesKey is where reserveDevices puts devices.
const devicesKey = "deploy.resources.reservations.devices"

// reserveDevices is a service's deploy key reserving devices (a YAML
// flow sequence).
func reserveDevices(devices string) string {
	return "    deploy:\n      resources:\n        reservations:\n          devices: " + devices + "\n"
}

func envOf(s *Service, key string) (string, bool) {
	for _, kv := range s.Environment {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Four NVIDIA GPUs found by nvidia-smi; a Slurm job given GPUs 2 and 3;
// one AMD GPU; no GPU at all.
var (
	fourGPUs = singularity.GPUInventory{NVIDIA: singularity.GPUDevices{Present: true, IDs: []string{"0", "1", "2", "3"}, Aliases: map[string]string{"GPU-aaaa": "1"}, Source: "nvidia-smi"}}
	slurmJob = singularity.GPUInventory{NVIDIA: singularity.GPUDevices{Present: true, IDs: []string{"2", "3"}, Inherited: true, Source: "CUDA_VISIBLE_DEVICES"}}
	oneAMD   = singularity.GPUInventory{AMD: singularity.GPUDevices{Present: true, IDs: []string{"0"}, Source: "/dev/dri"}}
	noGPU    = singularity.GPUInventory{}
)

func TestGPURequests(t *testing.T) {
	tests := []struct {
		name    string
		svc     string
		inv     singularity.GPUInventory
		want    *GPU
		env     map[string]string // visibility variables; "-" means unset
		warnKey string
	}{
		{
			name: "gpus: all sees every GPU, no variable",
			svc:  "    gpus: all\n", inv: fourGPUs,
			want: &GPU{Vendor: GPUNvidia, Key: "gpus", Count: -1},
			env:  map[string]string{"CUDA_VISIBLE_DEVICES": "-", "NVIDIA_VISIBLE_DEVICES": "-"},
		},
		{
			name: "gpus: all in a Slurm job sees the job's GPUs",
			svc:  "    gpus: all\n", inv: slurmJob,
			want: &GPU{Vendor: GPUNvidia, Key: "gpus", Count: -1, Visible: []string{"2", "3"}},
			env:  map[string]string{"CUDA_VISIBLE_DEVICES": "2,3", "NVIDIA_VISIBLE_DEVICES": "2,3"},
		},
		{
			name: "deploy devices with count",
			svc:  reserveDevices("[{driver: nvidia, count: 2, capabilities: [gpu, utility]}]"), inv: fourGPUs,
			want: &GPU{Vendor: GPUNvidia, Key: devicesKey, Count: 2, Visible: []string{"0", "1"}},
			env:  map[string]string{"CUDA_VISIBLE_DEVICES": "0,1", "NVIDIA_VISIBLE_DEVICES": "0,1"},
		},
		{
			name: "deploy devices without a driver or count: all of them",
			svc:  reserveDevices("[{capabilities: [gpu]}]"), inv: fourGPUs,
			want: &GPU{Vendor: GPUNvidia, Key: devicesKey, Count: -1},
		},
		{
			name: "device_ids, one by UUID",
			svc:  "    gpus:\n      - device_ids: ['3', GPU-aaaa]\n", inv: fourGPUs,
			want: &GPU{Vendor: GPUNvidia, Key: "gpus", DeviceIDs: []string{"3", "GPU-aaaa"}, Visible: []string{"3", "1"}},
			env:  map[string]string{"CUDA_VISIBLE_DEVICES": "3,1"},
		},
		{
			name: "amd",
			svc:  reserveDevices("[{driver: amd, count: 1, capabilities: [gpu]}]"), inv: oneAMD,
			want: &GPU{Vendor: GPUAMD, Key: devicesKey, Count: 1, Visible: []string{"0"}},
			env:  map[string]string{"ROCR_VISIBLE_DEVICES": "0", "CUDA_VISIBLE_DEVICES": "-"},
		},
		{
			name: "runtime: nvidia",
			svc:  "    runtime: nvidia\n", inv: fourGPUs,
			want: &GPU{Vendor: GPUNvidia, Key: "runtime", Count: -1},
		},
		{
			name: "no NVIDIA GPU: a warning naming the key",
			svc:  "    gpus: all\n", inv: noGPU,
			want:    &GPU{Vendor: GPUNvidia, Key: "gpus", Count: -1},
			env:     map[string]string{"CUDA_VISIBLE_DEVICES": "-"},
			warnKey: "gpus",
		},
		{
			name: "no AMD GPU",
			svc:  reserveDevices("[{driver: amd, capabilities: [gpu]}]"), inv: fourGPUs,
			want:    &GPU{Vendor: GPUAMD, Key: devicesKey, Count: -1},
			warnKey: devicesKey,
		},
		{
			name: "a job given no GPU hides them all",
			svc:  "    gpus: all\n", inv: singularity.GPUInventory{NVIDIA: singularity.GPUDevices{Present: true, IDs: []string{}, Inherited: true, Source: "CUDA_VISIBLE_DEVICES"}},
			want:    &GPU{Vendor: GPUNvidia, Key: "gpus", Count: -1, Visible: []string{}},
			env:     map[string]string{"CUDA_VISIBLE_DEVICES": ""},
			warnKey: "gpus",
		},
		{
			name: "count beyond the job's GPUs warns",
			svc:  "    gpus:\n      - count: 3\n", inv: slurmJob,
			want:    &GPU{Vendor: GPUNvidia, Key: "gpus", Count: 3, Visible: []string{"2", "3"}},
			warnKey: "gpus",
		},
		{
			name: "the compose file's own variable wins",
			svc:  "    gpus:\n      - count: 1\n    environment: {CUDA_VISIBLE_DEVICES: '3'}\n", inv: fourGPUs,
			want:    &GPU{Vendor: GPUNvidia, Key: "gpus", Count: 1, Visible: []string{"0"}},
			env:     map[string]string{"CUDA_VISIBLE_DEVICES": "3", "NVIDIA_VISIBLE_DEVICES": "0"},
			warnKey: "environment",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := gpuPlan(t, "services:\n  a:\n    image: redis:7\n"+tt.svc, tt.inv)
			if err != nil {
				t.Fatal(err)
			}
			s := p.Service("a")
			eq(t, s.GPU, tt.want)
			for k, want := range tt.env {
				got, ok := envOf(s, k)
				if want == "-" && ok || want != "-" && (!ok || got != want) {
					t.Errorf("%s = %q (set %v), want %q", k, got, ok, want)
				}
			}
			if tt.warnKey != "" {
				mustWarn(t, p, "a", tt.warnKey)
			} else if len(p.Warnings) > 0 {
				t.Errorf("unexpected warnings: %v", p.Warnings)
			}
		})
	}
}

func TestNoGPUWarningText(t *testing.T) {
	p, err := gpuPlan(t, "services:\n  train:\n    image: redis:7\n    gpus: all\n", noGPU)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, p.Warnings[0].String(), `service "train": gpus: no NVIDIA GPU on this machine (no /dev/nvidia*, no nvidia-smi): the instance is started with --nv, but the service sees no GPU; run sstack on a GPU node`)
}

// Services get GPUs of their own while there are enough; device_ids pin a
// GPU, which count: never takes while another is free, and a GPU two
// services see is always warned about.
func TestGPUAssignment(t *testing.T) {
	compose := `services:
  a:
    image: redis:7
    gpus: [{device_ids: ["0"]}]
  b:
    image: redis:7
    gpus: [{count: 1}]
  c:
    image: redis:7
    gpus: [{count: 2}]
`
	p, err := gpuPlan(t, compose, fourGPUs)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, p.Service("a").GPU.Visible, []string{"0"})
	eq(t, p.Service("b").GPU.Visible, []string{"1"})
	eq(t, p.Service("c").GPU.Visible, []string{"2", "3"})
	if len(p.Warnings) > 0 {
		t.Errorf("enough GPUs for everyone, yet: %v", p.Warnings)
	}

	// In a job of two GPUs: b takes the free one, c must share.
	p, err = gpuPlan(t, strings.ReplaceAll(compose, `"0"`, `"2"`), slurmJob)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, p.Service("a").GPU.Visible, []string{"2"})
	eq(t, p.Service("b").GPU.Visible, []string{"3"})
	eq(t, p.Service("c").GPU.Visible, []string{"3", "2"})
	var texts []string
	for _, w := range warningsOf(p, "c") {
		texts = append(texts, w.Reason)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{`shares GPU 3 with service "b"`, `shares GPU 2 with service "a"`} {
		if !strings.Contains(all, want) {
			t.Errorf("c's warnings lack %q:\n%s", want, all)
		}
	}

	// Two services pinning the same GPU: both see it, with a warning.
	p, err = gpuPlan(t, "services:\n  a:\n    image: redis:7\n    gpus: [{device_ids: ['1']}]\n  b:\n    image: redis:7\n    gpus: [{device_ids: ['1']}]\n", fourGPUs)
	if err != nil {
		t.Fatal(err)
	}
	ws := warningsOf(p, "b")
	if len(ws) != 1 || !strings.Contains(ws[0].Reason, `GPU 1 is also given to service "a" by its device_ids: both see it`) {
		t.Errorf("warnings of b: %v", ws)
	}

	// count: all next to a pinned GPU says so.
	p, err = gpuPlan(t, "services:\n  a:\n    image: redis:7\n    gpus: [{device_ids: ['1']}]\n  b:\n    image: redis:7\n    gpus: all\n", fourGPUs)
	if err != nil {
		t.Fatal(err)
	}
	if ws := warningsOf(p, "b"); len(ws) != 1 || !strings.Contains(ws[0].Reason, `also GPU 1 of service "a" given by device_ids`) {
		t.Errorf("warnings of b: %v", ws)
	}

	// Replicas share their service's GPUs.
	p, err = gpuPlan(t, "services:\n  a:\n    image: redis:7\n    scale: 2\n    gpus: [{count: 1}]\n", fourGPUs)
	if err != nil {
		t.Fatal(err)
	}
	mustWarn(t, p, "a", "gpus")
}

func TestGPUErrors(t *testing.T) {
	for _, tt := range []struct {
		svc  string
		inv  singularity.GPUInventory
		want string
	}{
		{"    gpus: [{device_ids: ['0']}]\n", slurmJob, `service "a": gpus: device_ids: GPU "0" is not one this job may use; CUDA_VISIBLE_DEVICES gives 2,3`},
		{"    gpus: [{driver: intel, count: 1}]\n", fourGPUs, `service "a": gpus: driver "intel": sstack gives GPUs with driver nvidia (apptainer --nv) or amd (--rocm)`},
		{"    gpus: [{driver: nvidia, count: 1}, {driver: amd, count: 1}]\n", fourGPUs, `asks for nvidia and amd GPUs; a service can use one vendor's GPUs`},
	} {
		_, err := gpuPlan(t, "services:\n  a:\n    image: redis:7\n"+tt.svc, tt.inv)
		wantErrors(t, err, tt.want)
	}
}

func TestPrintGPU(t *testing.T) {
	p, err := gpuPlan(t, "services:\n  a:\n    image: redis:7\n    gpus: [{count: 1}]\n  b:\n    image: redis:7\n    gpus: all\n", fourGPUs)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = p.Print(&b)
	for _, want := range []string{
		`    gpu: {vendor: "nvidia", key: "gpus", count: 1, visible: ["0"]}`,
		`    gpu: {vendor: "nvidia", key: "gpus", count: -1, visible: all}`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("config lacks %s:\n%s", want, b.String())
		}
	}
}

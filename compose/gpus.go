package compose

import (
	"fmt"
	"slices"
	"sstack/singularity"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// GPU vendors: the driver of a compose device request.
const (
	GPUNvidia = singularity.GPUNvidia // apptainer --nv
	GPUAMD    = singularity.GPUAMD    // apptainer --rocm
)

// GPU is a service's request for GPUs and the GPUs it was given.
// Apptainer's --nv and --rocm give the instance every GPU of the machine;
// what sstack restricts is which of them the service's programs use, with
// the vendor's visibility variables (gpuVisibilityEnv). That is
// visibility, not isolation: a program that ignores the variables can
// still open every device.
type GPU struct {
	Vendor string `json:"vendor"` // GPUNvidia or GPUAMD
	// Key is the compose key that asked: gpus,
	// deploy.resources.reservations.devices or runtime.
	Key string `json:"key"`
	// Count is how many GPUs were asked for by count: (-1: all); device
	// IDs asked for by name are in DeviceIDs.
	Count     int      `json:"count,omitempty"`
	DeviceIDs []string `json:"device_ids,omitempty"`
	// Visible are the GPUs the service sees, the value of the visibility
	// variables in its Environment; nil when it sees every GPU of the
	// machine (no variable is set).
	Visible []string `json:"visible,omitempty"`
}

// gpuVisibilityEnv are the variables that say which GPUs a program uses.
var gpuVisibilityEnv = map[string][]string{
	GPUNvidia: {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"},
	GPUAMD:    {"ROCR_VISIBLE_DEVICES"},
}

// gpuKeys are the service keys gpuRequest translates.
var gpuKeys = []string{"gpus", "runtime"}

type deviceRequest struct {
	key string
	d   types.DeviceRequest
}

// gpuRequest translates gpus:, deploy.resources.reservations.devices with
// the gpu capability and runtime: nvidia; nil when the service asks for
// no GPU. Which GPUs it gets is decided for all services at once
// (assignGPUs).
func (t *translator) gpuRequest(sc types.ServiceConfig) *GPU {
	name := sc.Name
	var reqs []deviceRequest
	for _, d := range sc.Gpus {
		reqs = append(reqs, deviceRequest{"gpus", d})
	}
	if sc.Deploy != nil && sc.Deploy.Resources.Reservations != nil {
		for _, d := range sc.Deploy.Resources.Reservations.Devices {
			if slices.Contains(d.Capabilities, "gpu") {
				reqs = append(reqs, deviceRequest{"deploy.resources.reservations.devices", d})
			} else {
				t.warn(name, "deploy.resources.reservations.devices", "capabilities %v: only GPUs (capabilities: [gpu]) are given to instances", d.Capabilities)
			}
		}
	}
	switch sc.Runtime {
	case "":
	case "nvidia":
		if len(reqs) == 0 {
			reqs = append(reqs, deviceRequest{"runtime", types.DeviceRequest{Driver: GPUNvidia, Count: -1}})
		}
	default:
		t.warn(name, "runtime", "%q is not used: instances always run with apptainer (runtime: nvidia gives the service the GPUs)", sc.Runtime)
	}
	if len(reqs) == 0 {
		return nil
	}
	g := &GPU{}
	for _, r := range reqs {
		vendor := strings.ToLower(r.d.Driver)
		switch vendor {
		case "":
			vendor = GPUNvidia
		case GPUNvidia, GPUAMD:
		default:
			t.fail(name, r.key, "driver %q: sstack gives GPUs with driver nvidia (apptainer --nv) or amd (--rocm)", r.d.Driver)
			continue
		}
		if g.Vendor != "" && g.Vendor != vendor {
			t.fail(name, r.key, "asks for %s and %s GPUs; a service can use one vendor's GPUs", g.Vendor, vendor)
			continue
		}
		g.Vendor = vendor
		if g.Key == "" {
			g.Key = r.key
		}
		if len(r.d.Options) > 0 {
			t.warn(name, r.key, "driver options are not used")
		}
		switch {
		case len(r.d.IDs) > 0:
			for _, id := range r.d.IDs {
				if id = strings.TrimSpace(id); id != "" && !slices.Contains(g.DeviceIDs, id) {
					g.DeviceIDs = append(g.DeviceIDs, id)
				}
			}
		case r.d.Count <= 0:
			// count: all, or neither count nor device_ids, which compose
			// reads as all.
			g.Count = -1
		case g.Count >= 0:
			g.Count += int(r.d.Count)
		}
	}
	if g.Vendor == "" {
		return nil
	}
	if g.Count < 0 {
		g.DeviceIDs = nil
	}
	return g
}

// assignGPUs decides which GPUs each service sees, among those the
// machine gives this job: device_ids first, each GPU named by one service
// only unless a warning says otherwise; then count: takes GPUs no other
// service was given, before sharing any (with a warning). A service on a
// machine without GPUs gets a warning: Apptainer itself says nothing.
func (t *translator) assignGPUs(order []string, services map[string]*Service, opts Options) {
	var want []*Service
	for _, name := range order {
		if s := services[name]; s.GPU != nil {
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		return
	}
	inv := opts.GPUs
	if inv == nil {
		d := singularity.DetectGPUs(opts.environ())
		inv = &d
	}
	// users[vendor][id] are the services that see the GPU, in order.
	users := map[string]map[string][]string{GPUNvidia: {}, GPUAMD: {}}
	pinned := map[string]map[string]string{GPUNvidia: {}, GPUAMD: {}}
	usable := map[string]bool{}
	for _, s := range want {
		g, devs := s.GPU, inv.Of(s.GPU.Vendor)
		usable[s.Name] = t.gpusPresent(s.Name, g, devs)
		if !usable[s.Name] {
			if devs.Inherited && len(devs.IDs) == 0 {
				// The job was given none: hide every GPU, as the
				// scheduler hid them from sstack.
				g.Visible = []string{}
				t.setGPUEnv(s)
			}
			continue
		}
		g.Visible = []string{}
		for _, id := range g.DeviceIDs {
			canon := id
			if a, ok := devs.Aliases[id]; ok {
				canon = a
			}
			if len(devs.IDs) > 0 && !slices.Contains(devs.IDs, canon) {
				t.fail(s.Name, g.Key, "device_ids: GPU %q is not one this job may use; %s gives %s", id, devs.Source, gpuList(devs.IDs))
				continue
			}
			if other, ok := pinned[g.Vendor][canon]; ok {
				t.warn(s.Name, g.Key, "device_ids: GPU %s is also given to service %q by its device_ids: both see it (sstack restricts which GPUs a service sees, it does not isolate them)", canon, other)
			} else {
				pinned[g.Vendor][canon] = s.Name
			}
			if !slices.Contains(g.Visible, canon) {
				g.Visible = append(g.Visible, canon)
				users[g.Vendor][canon] = append(users[g.Vendor][canon], s.Name)
			}
		}
	}
	for _, s := range want {
		g, devs := s.GPU, inv.Of(s.GPU.Vendor)
		if !usable[s.Name] || g.Count == 0 {
			continue
		}
		if g.Count < 0 {
			g.Visible = nil
			if devs.Inherited {
				g.Visible = append([]string{}, devs.IDs...)
			}
			var shared []string
			for _, id := range devs.IDs {
				if other, ok := pinned[g.Vendor][id]; ok && other != s.Name {
					shared = append(shared, fmt.Sprintf("GPU %s of service %q", id, other))
				}
			}
			if len(shared) > 0 {
				t.warn(s.Name, g.Key, "sees every GPU (count: all), also %s given by device_ids", strings.Join(shared, ", "))
			}
			continue
		}
		if len(devs.IDs) == 0 {
			t.warn(s.Name, g.Key, "count: %d, but sstack cannot tell which GPUs this machine has (no nvidia-smi): the service sees all of them", g.Count)
			g.Visible = nil
			continue
		}
		free := len(devs.IDs) - len(g.Visible)
		if g.Count > free {
			t.warn(s.Name, g.Key, "count: %d, but this job has %d GPUs (%s: %s): the service sees those", g.Count, len(devs.IDs), devs.Source, gpuList(devs.IDs))
		}
		// Least shared first: a GPU nobody uses, then one other count:
		// services use, then one pinned by another service's device_ids.
		candidates := slices.DeleteFunc(append([]string{}, devs.IDs...), func(id string) bool { return slices.Contains(g.Visible, id) })
		rank := func(id string) int {
			if _, ok := pinned[g.Vendor][id]; ok {
				return 2*len(want) + len(users[g.Vendor][id])
			}
			return len(users[g.Vendor][id])
		}
		slices.SortStableFunc(candidates, func(a, b string) int { return rank(a) - rank(b) })
		for _, id := range candidates[:min(g.Count, len(candidates))] {
			if others := users[g.Vendor][id]; len(others) > 0 {
				t.warn(s.Name, g.Key, "count: %d: shares GPU %s with service %s: this job has too few GPUs to give each service its own", g.Count, id, quoteList(others))
			}
			g.Visible = append(g.Visible, id)
			users[g.Vendor][id] = append(users[g.Vendor][id], s.Name)
		}
	}
	for _, s := range want {
		if usable[s.Name] {
			t.setGPUEnv(s)
		}
	}
}

// gpusPresent warns when the machine or the job has no GPU of the vendor.
func (t *translator) gpusPresent(service string, g *GPU, devs *singularity.GPUDevices) bool {
	flag := "--nv"
	if g.Vendor == GPUAMD {
		flag = "--rocm"
	}
	switch {
	case !devs.Present && g.Vendor == GPUAMD:
		t.warn(service, g.Key, "no AMD GPU on this machine (no /dev/kfd): the instance is started with %s, but the service sees no GPU; run sstack on a GPU node", flag)
		return false
	case !devs.Present:
		t.warn(service, g.Key, "no NVIDIA GPU on this machine (no /dev/nvidia*, no nvidia-smi): the instance is started with %s, but the service sees no GPU; run sstack on a GPU node", flag)
		return false
	case devs.Inherited && len(devs.IDs) == 0:
		t.warn(service, g.Key, "this job was given no GPU (%s is empty): the service sees none; ask the scheduler for GPUs (e.g. srun --gpus=1)", devs.Source)
		return false
	}
	return true
}

// setGPUEnv puts the visibility variables into the service's environment,
// unless the compose file sets them itself: that value wins, as it would
// in a container.
func (t *translator) setGPUEnv(s *Service) {
	g := s.GPU
	if g.Visible == nil {
		return
	}
	value := strings.Join(g.Visible, ",")
	for _, key := range gpuVisibilityEnv[g.Vendor] {
		i := slices.IndexFunc(s.Environment, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
		if i >= 0 {
			if own := strings.TrimPrefix(s.Environment[i], key+"="); own != value {
				t.warn(s.Name, "environment", "%s=%s is kept; the GPUs sstack chose from %s were %s", key, own, g.Key, gpuList(g.Visible))
			}
			continue
		}
		s.Environment = append(s.Environment, key+"="+value)
	}
	slices.SortStableFunc(s.Environment, func(a, b string) int {
		ka, _, _ := strings.Cut(a, "=")
		kb, _, _ := strings.Cut(b, "=")
		return strings.Compare(ka, kb)
	})
	if s.Replicas > 1 && len(g.Visible) > 0 {
		t.warn(s.Name, g.Key, "its %d replicas share GPU %s", s.Replicas, gpuList(g.Visible))
	}
}

func gpuList(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ",")
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// gpu prints a service's GPUs for `sstack config`.
func (e *emitter) gpu(g *GPU) {
	if g == nil {
		return
	}
	f := []string{"vendor: " + quote(g.Vendor), "key: " + quote(g.Key)}
	if g.Count != 0 {
		f = append(f, "count: "+strconv.Itoa(g.Count))
	}
	if g.DeviceIDs != nil {
		f = append(f, "device_ids: ["+strings.Join(quoteAll(g.DeviceIDs), ", ")+"]")
	}
	if g.Visible != nil {
		f = append(f, "visible: ["+strings.Join(quoteAll(g.Visible), ", ")+"]")
	} else {
		f = append(f, "visible: all")
	}
	e.line(2, "gpu: {"+strings.Join(f, ", ")+"}")
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = quote(v)
	}
	return q
}

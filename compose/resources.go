package compose

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Resources are the cgroup limits of a service's instance, from the
// service-level keys and deploy.resources. Zero values are unset.
type Resources struct {
	CPUs              float64 `json:"cpus,omitempty"`               // cpus, deploy.resources.limits.cpus
	CPUShares         int64   `json:"cpu_shares,omitempty"`         // cpu_shares
	CPUSet            string  `json:"cpuset,omitempty"`             // cpuset
	Memory            int64   `json:"memory,omitempty"`             // bytes: mem_limit, deploy.resources.limits.memory
	MemoryReservation int64   `json:"memory_reservation,omitempty"` // bytes: mem_reservation, deploy.resources.reservations.memory
	MemorySwap        int64   `json:"memory_swap,omitempty"`        // bytes of memory plus swap (memswap_limit); -1 unlimited
	PidsLimit         int64   `json:"pids_limit,omitempty"`         // pids_limit, deploy.resources.limits.pids
	OOMKillDisable    bool    `json:"oom_kill_disable,omitempty"`   // oom_kill_disable
	BlkioWeight       uint16  `json:"blkio_weight,omitempty"`       // blkio_config.weight
	// Keys are the compose keys that set these limits, for messages.
	Keys []string `json:"keys"`
}

// resourceKeys are the service keys resources translates.
var resourceKeys = []string{"blkio_config", "cpu_shares", "cpus", "cpuset", "mem_limit", "mem_reservation", "memswap_limit", "oom_kill_disable", "pids_limit"}

// resources translates the limit keys of sc; nil when none is set.
// A key and its deploy.resources counterpart may both be given only with
// the same value, as docker compose requires.
func (t *translator) resources(sc types.ServiceConfig) *Resources {
	name := sc.Name
	r := &Resources{}
	var limits, reservations *types.Resource
	if sc.Deploy != nil {
		limits, reservations = sc.Deploy.Resources.Limits, sc.Deploy.Resources.Reservations
	}
	if limits == nil {
		limits = &types.Resource{}
	}
	if reservations == nil {
		reservations = &types.Resource{}
	}
	// pair merges a service key and its deploy counterpart.
	pair := func(key string, v float64, deployKey string, dv float64, show func(float64) string) float64 {
		switch {
		case v != 0 && dv != 0 && v != dv:
			t.fail(name, key, "%s and %s: %s differ; keep one of them", show(v), deployKey, show(dv))
		case v != 0:
			r.Keys = append(r.Keys, key)
		case dv != 0:
			r.Keys, v = append(r.Keys, deployKey), dv
		}
		return v
	}
	cpus := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	bytes := func(f float64) string { return formatBytes(int64(f)) }
	count := func(f float64) string { return strconv.FormatInt(int64(f), 10) }

	r.CPUs = pair("cpus", float32To64(sc.CPUS), "deploy.resources.limits.cpus", float32To64(float32(limits.NanoCPUs)), cpus)
	if r.CPUs < 0 {
		t.fail(name, "cpus", "%s: give a positive number of CPUs, e.g. 0.5", cpus(r.CPUs))
	}
	if r.CPUShares = sc.CPUShares; r.CPUShares < 0 {
		t.fail(name, "cpu_shares", "%d: give a positive relative weight (1024 is the default share)", r.CPUShares)
	} else if r.CPUShares > 0 {
		r.Keys = append(r.Keys, "cpu_shares")
	}
	if r.CPUSet = strings.TrimSpace(sc.CPUSet); r.CPUSet != "" {
		if !validCPUSet(r.CPUSet) {
			t.fail(name, "cpuset", "%q: give CPU numbers and ranges, e.g. 0-3,6", sc.CPUSet)
		}
		r.Keys = append(r.Keys, "cpuset")
	}
	r.Memory = int64(pair("mem_limit", float64(sc.MemLimit), "deploy.resources.limits.memory", float64(limits.MemoryBytes), bytes))
	r.MemoryReservation = int64(pair("mem_reservation", float64(sc.MemReservation), "deploy.resources.reservations.memory", float64(reservations.MemoryBytes), bytes))
	switch swap := int64(sc.MemSwapLimit); {
	case swap == 0:
	case swap < -1:
		t.fail(name, "memswap_limit", "%d: give a size (memory plus swap) or -1 for unlimited swap", swap)
	case r.Memory == 0:
		t.fail(name, "memswap_limit", "is set without mem_limit; it is the limit of memory plus swap: set mem_limit too")
	case swap != -1 && swap < r.Memory:
		t.fail(name, "memswap_limit", "%s is less than mem_limit %s; it is the limit of memory plus swap, so give at least mem_limit (or -1 for unlimited swap)", formatBytes(swap), formatBytes(r.Memory))
	default:
		r.MemorySwap = swap
		r.Keys = append(r.Keys, "memswap_limit")
	}
	if r.Memory > 0 && r.MemoryReservation > r.Memory {
		t.fail(name, "mem_reservation", "%s is more than the memory limit %s; the reservation is a soft limit below it", formatBytes(r.MemoryReservation), formatBytes(r.Memory))
	}
	// Docker's -1 and 0 mean unlimited: no flag.
	pids := pair("pids_limit", float64(max(sc.PidsLimit, 0)), "deploy.resources.limits.pids", float64(max(limits.Pids, 0)), count)
	r.PidsLimit = int64(pids)
	if r.OOMKillDisable = sc.OomKillDisable; r.OOMKillDisable {
		r.Keys = append(r.Keys, "oom_kill_disable")
		if r.Memory == 0 {
			// Docker's warning: the limit is what makes OOM kills happen.
			t.warn(name, "oom_kill_disable", "no mem_limit is set, so this only stops the kernel from killing the service when the whole machine runs out of memory")
		}
	}
	if b := sc.BlkioConfig; b != nil {
		if b.Weight != 0 {
			if b.Weight < 10 || b.Weight > 1000 {
				t.fail(name, "blkio_config.weight", "%d: give a weight from 10 to 1000", b.Weight)
			}
			r.BlkioWeight = b.Weight
			r.Keys = append(r.Keys, "blkio_config.weight")
		}
		for _, k := range []struct {
			key string
			set bool
		}{
			{"weight_device", len(b.WeightDevice) > 0}, {"device_read_bps", len(b.DeviceReadBps) > 0},
			{"device_read_iops", len(b.DeviceReadIOps) > 0}, {"device_write_bps", len(b.DeviceWriteBps) > 0},
			{"device_write_iops", len(b.DeviceWriteIOps) > 0},
		} {
			if k.set {
				t.warn(name, "blkio_config."+k.key, "not applied: sstack gives Apptainer only blkio_config.weight (--blkio-weight)")
			}
		}
	}
	if reservations.NanoCPUs != 0 {
		t.warn(name, "deploy.resources.reservations.cpus", "a reservation for a swarm scheduler: nothing reserves CPUs here; cpus: sets a limit")
	}
	if len(reservations.GenericResources) > 0 || len(limits.GenericResources) > 0 {
		t.warn(name, "deploy.resources.reservations.generic_resources", "generic resources are a swarm scheduler's: they are not applied")
	}
	if len(limits.Devices) > 0 {
		t.warn(name, "deploy.resources.limits.devices", "devices are requested under reservations: this is not applied")
	}
	if len(r.Keys) == 0 {
		return nil
	}
	return r
}

// float32To64 keeps the decimal value compose-go read (cpus: 1.1 is a
// float32 there): a plain conversion would give 1.100000023841858.
func float32To64(f float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'f', -1, 32), 64)
	return v
}

// validCPUSet accepts cpuset lists: numbers and ranges separated by commas.
func validCPUSet(s string) bool {
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if _, err := strconv.ParseUint(lo, 10, 32); err != nil {
			return false
		}
		if isRange {
			if _, err := strconv.ParseUint(hi, 10, 32); err != nil {
				return false
			}
		}
	}
	return true
}

// formatBytes shows a size as a compose file would give it: 512m, 1g, or
// bytes when it is no whole number of KiB.
func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// resources prints the limits of a service for `sstack config`.
func (e *emitter) resources(r *Resources) {
	if r == nil {
		return
	}
	var f []string
	add := func(key string, set bool, v string) {
		if set {
			f = append(f, key+": "+v)
		}
	}
	add("cpus", r.CPUs != 0, strconv.FormatFloat(r.CPUs, 'f', -1, 64))
	add("cpu_shares", r.CPUShares != 0, strconv.FormatInt(r.CPUShares, 10))
	add("cpuset", r.CPUSet != "", quote(r.CPUSet))
	add("memory", r.Memory != 0, quote(formatBytes(r.Memory)))
	add("memory_reservation", r.MemoryReservation != 0, quote(formatBytes(r.MemoryReservation)))
	add("memory_swap", r.MemorySwap != 0, quote(formatBytes(r.MemorySwap)))
	add("pids_limit", r.PidsLimit != 0, strconv.FormatInt(r.PidsLimit, 10))
	add("oom_kill_disable", r.OOMKillDisable, "true")
	add("blkio_weight", r.BlkioWeight != 0, strconv.Itoa(int(r.BlkioWeight)))
	e.line(2, fmt.Sprintf("resources: {%s}", strings.Join(f, ", ")))
}

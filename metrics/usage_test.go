package metrics

import (
	"context"
	"errors"
	"testing"

	"sstack/internal/api"
	"sstack/internal/usage"
)

// The usage series carry the replica's labels (and its node when placed),
// are read at each scrape, and the limit and OOM count appear only where
// they mean something: a limit set, a cgroup to count in.
func TestUsageSeries(t *testing.T) {
	reads := 0
	var fail error
	m := NewPlaced("proj", func(service string, replica int) string { return "n" + string(rune('0'+replica)) })
	m.CollectUsage(func(ctx context.Context) ([]api.ReplicaStats, error) {
		reads++
		return []api.ReplicaStats{
			{Service: "db", Replica: 1, Usage: api.Usage{Source: api.SourceCgroupV1, CPUSeconds: 1.5, MemoryBytes: 300, WorkingSetBytes: 200,
				MemoryLimitBytes: 1000, Processes: 3, Threads: 4, ReadBytes: 10, WriteBytes: 20, OOMKills: 2}},
			{Service: "web", Replica: 2, Usage: api.Usage{Source: api.SourceProc, CPUSeconds: 0.25, MemoryBytes: 50, WorkingSetBytes: 50, Processes: 1, Threads: 1}},
		}, fail
	})
	fams := families(t, m)
	if reads != 1 {
		t.Errorf("read %d times for one scrape", reads)
	}
	db := lbl("db", "1", "node", "n1")
	web := lbl("web", "2", "node", "n2")
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sstack_container_cpu_usage_seconds_total", db, 1.5},
		{"sstack_container_memory_usage_bytes", db, 300},
		{"sstack_container_memory_working_set_bytes", db, 200},
		{"sstack_container_spec_memory_limit_bytes", db, 1000},
		{"sstack_container_processes", db, 3},
		{"sstack_container_threads", db, 4},
		{"sstack_container_fs_reads_bytes_total", db, 10},
		{"sstack_container_fs_writes_bytes_total", db, 20},
		{"sstack_container_oom_events_total", db, 2},
		{"sstack_container_cpu_usage_seconds_total", web, 0.25},
		{"sstack_container_memory_working_set_bytes", web, 50},
		{"sstack_usage_read_errors_total", map[string]string{"project": "proj"}, 0},
	} {
		s := series(t, fams, c.name, c.labels)
		if s == nil {
			t.Errorf("%s%v missing", c.name, c.labels)
			continue
		}
		if v := s.GetCounter().GetValue() + s.GetGauge().GetValue(); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	for _, name := range []string{"sstack_container_spec_memory_limit_bytes", "sstack_container_oom_events_total"} {
		if series(t, fams, name, web) != nil {
			t.Errorf("%s exists for a replica without limit or cgroup", name)
		}
	}

	// A failed read (a node that did not answer) keeps what was read and
	// is counted.
	fail = errors.New("node n2: the agent's job step ended")
	fams = families(t, m)
	if series(t, fams, "sstack_container_cpu_usage_seconds_total", db) == nil {
		t.Errorf("a partial read lost its series")
	}
	if v := series(t, fams, "sstack_usage_read_errors_total", map[string]string{"project": "proj"}).GetCounter().GetValue(); v != 1 {
		t.Errorf("read errors = %v, want 1", v)
	}
}

// An OOM kill and a restart policy that gives up are counted from the die
// events, from 0 registered before the first run.
func TestOOMKillsAndGaveUpFromEvents(t *testing.T) {
	m := New("proj")
	m.Register("hog", 1, false)
	fams := families(t, m)
	for _, name := range []string{"sstack_service_oom_kills_total", "sstack_service_restarts_exhausted"} {
		if s := series(t, fams, name, lbl("hog", "1")); s == nil || s.GetCounter().GetValue()+s.GetGauge().GetValue() != 0 {
			t.Errorf("%s not registered at 0: %v", name, s)
		}
	}
	m.Observe(api.Event{Kind: api.EventDied, Service: "hog", Replica: 1, ExitCode: 137, OOMKilled: true, Restart: true})
	m.Observe(api.Event{Kind: api.EventDied, Service: "hog", Replica: 1, ExitCode: 137, OOMKilled: true, GaveUp: true})
	fams = families(t, m)
	if v := series(t, fams, "sstack_service_oom_kills_total", lbl("hog", "1")).GetCounter().GetValue(); v != 2 {
		t.Errorf("oom kills = %v, want 2", v)
	}
	if v := series(t, fams, "sstack_service_restarts_exhausted", lbl("hog", "1")).GetGauge().GetValue(); v != 1 {
		t.Errorf("restarts exhausted = %v, want 1", v)
	}
	m.Observe(api.Event{Kind: api.EventStarted, Service: "hog", Replica: 1})
	fams = families(t, m)
	if v := series(t, fams, "sstack_service_restarts_exhausted", lbl("hog", "1")).GetGauge().GetValue(); v != 0 {
		t.Errorf("restarts exhausted after a new start = %v, want 0", v)
	}
}

// The stack network's counters are per project and interface: its
// replicas share the namespace.
func TestNetworkSeries(t *testing.T) {
	m := New("proj")
	m.CollectNetwork(func() ([]usage.Interface, error) {
		return []usage.Interface{{Name: "lo", ReceiveBytes: 100, TransmitBytes: 100}, {Name: "tap0", ReceiveBytes: 166, TransmitBytes: 702}}, nil
	})
	fams := families(t, m)
	for name, want := range map[string]float64{"sstack_network_receive_bytes_total": 166, "sstack_network_transmit_bytes_total": 702} {
		s := series(t, fams, name, map[string]string{"project": "proj", "interface": "tap0"})
		if s == nil || s.GetCounter().GetValue() != want {
			t.Errorf("%s{tap0} = %v, want %v", name, s, want)
		}
	}
}

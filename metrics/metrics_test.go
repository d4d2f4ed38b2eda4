package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"sstack/internal/api"
	"sstack/internal/testutil"
)

// families gathers the registry into name → family.
func families(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	got, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range got {
		out[f.GetName()] = f
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// series finds the series of family name with exactly the labels want.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		got := labelMap(m)
		if len(got) != len(want) {
			continue
		}
		same := true
		for k, v := range want {
			if got[k] != v {
				same = false
			}
		}
		if same {
			return m
		}
	}
	return nil
}

func lbl(service, replica string, extra ...string) map[string]string {
	m := map[string]string{"project": "proj", "service": service, "replica": replica}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// TestNamesTypesAndLabels: the metric names, types and label names are a
// contract; every sstack series carries project, service and replica.
func TestNamesTypesAndLabels(t *testing.T) {
	m := New("proj")
	m.Register("web", 1, true)
	m.Started("web", 1, 100*time.Millisecond)
	m.CollectUsage(func(context.Context) ([]api.ReplicaStats, error) {
		return []api.ReplicaStats{{Service: "web", Replica: 1, Usage: api.Usage{Source: api.SourceCgroupV1, MemoryLimitBytes: 1}}}, nil
	})
	fams := families(t, m)
	// (No network is read here.)
	want := testutil.MetricTypesWithout("sstack_network_receive_bytes_total", "sstack_network_transmit_bytes_total")
	testutil.CheckFamilies(t, fams, want, "proj")
	var goSeen, procSeen bool
	for name := range fams {
		goSeen = goSeen || strings.HasPrefix(name, "go_")
		procSeen = procSeen || strings.HasPrefix(name, "process_")
		if _, ok := want[name]; !ok && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("unexpected metric %s", name)
		}
	}
	if !goSeen || !procSeen {
		t.Errorf("go_* (%v) or process_* (%v) collectors missing", goSeen, procSeen)
	}
}

// TestRegisterInitialValues: a registered replica shows zeros before it
// starts; healthy exists only with a healthcheck.
func TestRegisterInitialValues(t *testing.T) {
	m := New("proj")
	m.Register("web", 1, false)
	m.Register("db", 2, true)
	fams := families(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"sstack_service_restarts_total", lbl("web", "1")},
		{"sstack_service_up", lbl("web", "1")},
		{"sstack_service_last_exit_code", lbl("web", "1")},
		{"sstack_log_lines_total", lbl("web", "1", "stream", "stdout")},
		{"sstack_log_lines_total", lbl("web", "1", "stream", "stderr")},
		{"sstack_service_healthy", lbl("db", "2")},
		{"sstack_service_up", lbl("db", "2")},
	} {
		s := series(t, fams, c.name, c.labels)
		if s == nil {
			t.Errorf("%s%v missing after Register", c.name, c.labels)
			continue
		}
		if v := s.GetCounter().GetValue() + s.GetGauge().GetValue(); v != 0 {
			t.Errorf("%s%v = %v, want 0", c.name, c.labels, v)
		}
	}
	if s := series(t, fams, "sstack_service_healthy", lbl("web", "1")); s != nil {
		t.Errorf("sstack_service_healthy exists for a service without healthcheck")
	}
	// No start observed yet: no histogram series.
	if f := fams["sstack_service_start_seconds"]; f != nil && len(f.GetMetric()) > 0 {
		t.Errorf("start_seconds has series before any start: %v", f)
	}
}

// TestRecording: each method moves the series it is documented to move.
func TestRecording(t *testing.T) {
	m := New("proj")
	m.Register("web", 1, true)
	m.Started("web", 1, 300*time.Millisecond)
	m.Healthy("web", 1, true)
	m.LogLines("web", 1, "stdout", 5)
	m.LogLines("web", 1, "stdout", 2)
	m.LogLines("web", 1, "stderr", 3)
	fams := families(t, m)
	if v := series(t, fams, "sstack_service_up", lbl("web", "1")).GetGauge().GetValue(); v != 1 {
		t.Errorf("up after Started = %v, want 1", v)
	}
	if v := series(t, fams, "sstack_service_healthy", lbl("web", "1")).GetGauge().GetValue(); v != 1 {
		t.Errorf("healthy = %v, want 1", v)
	}
	h := series(t, fams, "sstack_service_start_seconds", lbl("web", "1")).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.3 {
		t.Errorf("start_seconds count %d sum %v, want 1 and 0.3", h.GetSampleCount(), h.GetSampleSum())
	}
	if v := series(t, fams, "sstack_log_lines_total", lbl("web", "1", "stream", "stdout")).GetCounter().GetValue(); v != 7 {
		t.Errorf("stdout lines = %v, want 7", v)
	}
	if v := series(t, fams, "sstack_log_lines_total", lbl("web", "1", "stream", "stderr")).GetCounter().GetValue(); v != 3 {
		t.Errorf("stderr lines = %v, want 3", v)
	}

	m.Healthy("web", 1, false)
	m.Exited("web", 1, 3)
	m.Restarted("web", 1)
	m.Restarted("web", 1)
	fams = families(t, m)
	if v := series(t, fams, "sstack_service_up", lbl("web", "1")).GetGauge().GetValue(); v != 0 {
		t.Errorf("up after Exited = %v, want 0", v)
	}
	if v := series(t, fams, "sstack_service_healthy", lbl("web", "1")).GetGauge().GetValue(); v != 0 {
		t.Errorf("healthy after Healthy(false) = %v, want 0", v)
	}
	if v := series(t, fams, "sstack_service_last_exit_code", lbl("web", "1")).GetGauge().GetValue(); v != 3 {
		t.Errorf("last_exit_code = %v, want 3", v)
	}
	if v := series(t, fams, "sstack_service_restarts_total", lbl("web", "1")).GetCounter().GetValue(); v != 2 {
		t.Errorf("restarts = %v, want 2", v)
	}
}

// TestNilMetrics: a nil *Metrics records nothing and does not panic.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Register("web", 1, true)
	m.Restarted("web", 1)
	m.Up("web", 1, true)
	m.Healthy("web", 1, true)
	m.Exited("web", 1, 1)
	m.Started("web", 1, time.Second)
	m.LogLines("web", 1, "stdout", 1)
}

func TestListenEmptyIsOff(t *testing.T) {
	l, err := Listen("")
	if l != nil || err != nil {
		t.Fatalf("Listen(\"\") = %v, %v; want nil, nil", l, err)
	}
}

// TestListenTakenPort: the error names the flag and how to fix it.
func TestListenTakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	l, err := Listen(taken.Addr().String())
	if err == nil {
		l.Close()
		t.Fatal("Listen on a taken port succeeded")
	}
	for _, want := range []string{"--metrics-addr " + taken.Addr().String(), "address already in use", "--metrics-addr ''"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestServe: /metrics answers in the Prometheus text format, without any
// value a label did not put there, and Serve returns nil once closed.
func TestServe(t *testing.T) {
	m := New("proj")
	m.Register("web", 1, false)
	m.LogLines("web", 1, "stderr", 4)
	m.Started("web", 1, 2*time.Second)
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- m.Serve(l) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`sstack_log_lines_total{project="proj",replica="1",service="web",stream="stderr"} 4`,
		`sstack_service_up{project="proj",replica="1",service="web"} 1`,
		"# TYPE sstack_service_start_seconds histogram",
		`sstack_service_start_seconds_bucket{project="proj",replica="1",service="web",le="1"} 0`,
		`sstack_service_start_seconds_bucket{project="proj",replica="1",service="web",le="2.5"} 1`,
		`sstack_service_start_seconds_count{project="proj",replica="1",service="web"} 1`,
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if resp, err := http.Get("http://" + l.Addr().String() + "/other"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("/other: status %d, want 404", resp.StatusCode)
		}
	}
	l.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the listener was closed")
	}
}

package testutil

import (
	"maps"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// MetricTypes are the sstack metric families and their types: the
// contract of metrics/.
var MetricTypes = map[string]dto.MetricType{
	"sstack_service_restarts_total":             dto.MetricType_COUNTER,
	"sstack_service_up":                         dto.MetricType_GAUGE,
	"sstack_service_healthy":                    dto.MetricType_GAUGE,
	"sstack_service_last_exit_code":             dto.MetricType_GAUGE,
	"sstack_service_start_seconds":              dto.MetricType_HISTOGRAM,
	"sstack_log_lines_total":                    dto.MetricType_COUNTER,
	"sstack_service_oom_kills_total":            dto.MetricType_COUNTER,
	"sstack_service_restarts_exhausted":         dto.MetricType_GAUGE,
	"sstack_container_cpu_usage_seconds_total":  dto.MetricType_COUNTER,
	"sstack_container_memory_usage_bytes":       dto.MetricType_GAUGE,
	"sstack_container_memory_working_set_bytes": dto.MetricType_GAUGE,
	"sstack_container_spec_memory_limit_bytes":  dto.MetricType_GAUGE,
	"sstack_container_processes":                dto.MetricType_GAUGE,
	"sstack_container_threads":                  dto.MetricType_GAUGE,
	"sstack_container_fs_reads_bytes_total":     dto.MetricType_COUNTER,
	"sstack_container_fs_writes_bytes_total":    dto.MetricType_COUNTER,
	"sstack_container_oom_events_total":         dto.MetricType_COUNTER,
	"sstack_usage_read_errors_total":            dto.MetricType_COUNTER,
	"sstack_network_receive_bytes_total":        dto.MetricType_COUNTER,
	"sstack_network_transmit_bytes_total":       dto.MetricType_COUNTER,
}

// MetricTypesWithout is MetricTypes without the families named: those a
// test has no series of.
func MetricTypesWithout(names ...string) map[string]dto.MetricType {
	m := maps.Clone(MetricTypes)
	for _, n := range names {
		delete(m, n)
	}
	return m
}

// SeriesLabels are the label names, sorted and joined with ",", that every
// series of the sstack metric name carries: the contract of metrics/.
func SeriesLabels(name string) string {
	switch name {
	case "sstack_log_lines_total":
		return "project,replica,service,stream"
	case "sstack_usage_read_errors_total":
		return "project"
	case "sstack_network_receive_bytes_total", "sstack_network_transmit_bytes_total":
		return "interface,project"
	}
	return "project,replica,service"
}

// CheckFamilies checks that fams (a scrape or a gather, by family name)
// has every family of types, of its type, each of its series with the
// labels of SeriesLabels; with project not "", their project label is
// project.
func CheckFamilies(t testing.TB, fams map[string]*dto.MetricFamily, types map[string]dto.MetricType, project string) {
	t.Helper()
	for name, typ := range types {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
		}
		for _, m := range f.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
				if l.GetName() == "project" && project != "" && l.GetValue() != project {
					t.Errorf("%s has project=%q, want %q", name, l.GetValue(), project)
				}
			}
			sort.Strings(names)
			if got, want := strings.Join(names, ","), SeriesLabels(name); got != want {
				t.Errorf("%s series has labels %s, want %s", name, got, want)
			}
		}
	}
}

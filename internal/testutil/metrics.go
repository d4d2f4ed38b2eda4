package testutil

import (
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

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

package metrics

import (
	"strings"
	"testing"
)

// A stack spread over nodes labels every series with the replica's node.
func TestPlacedSeriesHaveTheNode(t *testing.T) {
	m := NewPlaced("p", func(service string, replica int) string { return map[int]string{1: "n1", 2: "n3"}[replica] })
	for r := 1; r <= 2; r++ {
		m.Register("web", r, true)
		m.LogLines("web", r, "stdout", r)
		m.Started("web", r, 0)
		m.Restarted("web", r)
		m.Exited("web", r, 3)
		m.Healthy("web", r, true)
	}
	got := map[string]float64{}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for k, v := range map[string]float64{
		"sstack_log_lines_total{node=n1,project=p,replica=1,service=web,stream=stdout}": 1,
		"sstack_log_lines_total{node=n3,project=p,replica=2,service=web,stream=stdout}": 2,
		"sstack_service_restarts_total{node=n3,project=p,replica=2,service=web}":        1,
		"sstack_service_last_exit_code{node=n1,project=p,replica=1,service=web}":        3,
		"sstack_service_healthy{node=n3,project=p,replica=2,service=web}":               1,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	m.Remove("web", 2)
	fams, _ = m.Registry().Gather()
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "node" && l.GetValue() == "n3" {
					t.Errorf("%s: replica 2 is still there after Remove", f.GetName())
				}
			}
		}
	}
}

// Package prometheus holds no Go code: alerts.yml, its promtool unit tests
// (alerts_test.yml) and the Grafana dashboard (dashboard.json) for sstack's
// metrics, and the tests that check them without a running stack. The
// root package's TestPrometheusQueriesAndAlerts runs them against a real
// Prometheus scraping a real stack.
package prometheus

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"sstack/internal/api"
	"sstack/internal/usage"
	"sstack/metrics"
)

// requirePromtool returns promtool's path, or skips (fails when CI=true:
// scripts/install-test-deps.sh installs Debian's prometheus package).
func requirePromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing (Debian package prometheus; scripts/install-test-deps.sh)")
		}
		t.Skip("promtool is missing (Debian package prometheus)")
	}
	return p
}

// The rules are valid and pass their unit tests (input series in,
// expected alerts with labels and annotations out).
func TestAlertRules(t *testing.T) {
	promtool := requirePromtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Dashboard is what the tests read of dashboard.json.
type Dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Repeat  string `json:"repeat"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// sstackMetrics are the names of every series sstack exports.
func sstackMetrics(t *testing.T) map[string]bool {
	m := metrics.New("p")
	m.Register("s", 1, true)
	m.Started("s", 1, 0)
	m.CollectUsage(func(context.Context) ([]api.ReplicaStats, error) {
		return []api.ReplicaStats{{Service: "s", Replica: 1, Usage: api.Usage{Source: api.SourceCgroupV1, MemoryLimitBytes: 1}}}, nil
	})
	m.CollectNetwork(func() ([]usage.Interface, error) { return []usage.Interface{{Name: "lo"}}, nil })
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\bsstack_[a-z_]+`)

// The dashboard has the project (and the repeated service) variable, and
// every panel query names only metrics sstack exports, for the project
// chosen.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["project"] || !vars["service"] || !vars["datasource"] {
		t.Errorf("variables %v, want datasource, project and service", vars)
	}
	known := sstackMetrics(t)
	queries, repeated := 0, false
	for _, p := range d.Panels {
		repeated = repeated || p.Repeat == "service"
		for _, tg := range p.Targets {
			queries++
			if !strings.Contains(tg.Expr, `project="$project"`) {
				t.Errorf("panel %q: %s is not limited to $project", p.Title, tg.Expr)
			}
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %s names no sstack metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("panel %q: %s is not an sstack metric", p.Title, n)
				}
			}
		}
	}
	if !repeated {
		t.Error("no row repeated per service")
	}
	if queries < 10 {
		t.Errorf("%d queries", queries)
	}
}

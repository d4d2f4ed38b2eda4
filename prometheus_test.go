package main

// sstack's metrics as a real Prometheus sees them: every query of the
// README's Metrics section and every panel query of the Grafana dashboard
// (metrics/prometheus/dashboard.json) is run through Prometheus's HTTP API
// against a stack with a crash-looping service, an OOM-killed one (root
// only), an unhealthy one, one whose restart policy gives up and a healthy
// busy one, as root and as an unprivileged user, and the alert rules
// (metrics/prometheus/alerts.yml) fire for the crash loop, the OOM kill
// and the restarts given up. Also `sstack stats` on the same stack.

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
	"sstack/internal/testutil"
)

// promServer is a Prometheus started for one test.
type promServer struct {
	addr string
}

// startPrometheus runs Debian's prometheus on a free loopback port,
// scraping target every second and evaluating ruleFiles every second, with
// its storage in a temporary directory; it is stopped at the end of the
// test. Without prometheus it skips (fails when CI=true).
func startPrometheus(t *testing.T, target string, ruleFiles ...string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testimg.Unavailable(t, "prometheus is missing (Debian package prometheus; scripts/install-test-deps.sh)")
	}
	dir := t.TempDir()
	var rules []string
	for _, f := range ruleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, strconv.Quote(abs))
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: sstack
    static_configs:
      - targets: [%q]
`, strings.Join(rules, ", "), target)
	cfg := filepath.Join(dir, "prometheus.yml")
	testutil.WriteFile(t, cfg, config, 0o600)
	s := &promServer{addr: freeAddr(t)}
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+s.addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", logs)
		}
	})
	eventually(t, 30*time.Second, "prometheus ready", func() bool {
		resp, err := http.Get("http://" + s.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

// promSample is one series of an instant query's result.
type promSample struct {
	Metric map[string]string
	Value  float64
}

func (s *promServer) get(path string, query url.Values, into any) error {
	resp, err := http.Get("http://" + s.addr + path + "?" + query.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", path, body.Error)
	}
	return json.Unmarshal(body.Data, into)
}

// query runs an instant query; the result must be a vector.
func (s *promServer) query(q string) ([]promSample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := s.get("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s", data.ResultType)
	}
	out := make([]promSample, len(data.Result))
	for i, r := range data.Result {
		str, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %w", r.Value[1], err)
		}
		out[i] = promSample{Metric: r.Metric, Value: v}
	}
	return out, nil
}

// firing lists the firing alerts as "alertname service".
func (s *promServer) firing() ([]string, error) {
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := s.get("/api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range data.Alerts {
		if a.State == "firing" {
			out = append(out, a.Labels["alertname"]+" "+a.Labels["service"])
		}
	}
	sort.Strings(out)
	return out, nil
}

// readmeQueries are the PromQL queries of the README's Metrics section.
func readmeQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "### Metrics")
	if i < 0 {
		t.Fatal("README has no Metrics section")
	}
	s = s[i:]
	var out []string
	for {
		start := strings.Index(s, "```promql\n")
		if start < 0 {
			break
		}
		s = s[start+len("```promql\n"):]
		end := strings.Index(s, "```")
		for _, line := range strings.Split(s[:end], "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				out = append(out, line)
			}
		}
		s = s[end:]
		if next := strings.Index(s, "\n### "); next >= 0 && next < strings.Index(s+"```promql\n", "```promql\n") {
			break // the next section
		}
	}
	return out
}

// dashboardQueries are the panel queries of the dashboard, with Grafana's
// variables filled in as Grafana would for project and service.
func dashboardQueries(t *testing.T, project, service string) []string {
	t.Helper()
	b, err := os.ReadFile("metrics/prometheus/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("$project", project, "$service", service, "$__rate_interval", "15s")
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, fill.Replace(tg.Expr))
		}
	}
	return out
}

// As root the stack also has hog, a service under mem_limit that is
// OOM-killed (limits need root on cgroups v1); as an unprivileged user the
// same stack without it, read from /proc.
func TestPrometheusQueriesAndAlerts(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		testPrometheusQueriesAndAlerts(t, newP)
	})
}

func testPrometheusQueriesAndAlerts(t *testing.T, newP func(*testing.T, string) *project) {
	compose := services(
		service("ok", `["sh", "-c", "while true; do i=0; while [ $$i -lt 3000 ]; do i=$$((i+1)); done; sleep 0.1; done"]`, `healthcheck: {test: ["CMD", "true"], interval: 1s}`),
		service("crash", `["sh", "-c", "echo crashing; exit 3"]`, "restart: always"),
		service("sick", `["sleep", "600"]`, `healthcheck: {test: ["CMD", "false"], interval: 1s, retries: 1}`),
		service("quitter", `["sh", "-c", "exit 1"]`, "restart: on-failure:1"),
	)
	const hog = `
  hog:
    image: busybox
    command: ["sh", "-c", "echo allocating; exec dd if=/dev/zero of=/dev/null bs=64M count=1"]
    mem_limit: 32m
    restart: always
`
	p := newP(t, compose)
	limits := p.user == nil
	if limits {
		requireLimits(t)
		p.write("docker-compose.yml", p.withImages(compose+hog))
	}
	addr := freeAddr(t)
	r := p.up("--metrics-addr", addr)
	prom := startPrometheus(t, addr, "metrics/prometheus/alerts.yml")

	type check func([]promSample) string
	has := func(services ...string) check {
		return func(res []promSample) string {
			for _, s := range services {
				found := false
				for _, x := range res {
					found = found || x.Metric["service"] == s
				}
				if !found {
					return "no series for " + s
				}
			}
			return ""
		}
	}
	hasNot := func(services ...string) check {
		return func(res []promSample) string {
			for _, x := range res {
				for _, s := range services {
					if x.Metric["service"] == s {
						return fmt.Sprintf("a series for %s: %v", s, x)
					}
				}
			}
			return ""
		}
	}
	where := func(service, what string, ok func(float64) bool) check {
		return func(res []promSample) string { // a series of service (any stream) with a value ok
			var got []float64
			for _, x := range res {
				if x.Metric["service"] == service {
					if ok(x.Value) {
						return ""
					}
					got = append(got, x.Value)
				}
			}
			if got == nil {
				return "no series for " + service
			}
			return fmt.Sprintf("%s = %v, want %s", service, got, what)
		}
	}
	positive := func(v float64) bool { return v > 0 }
	all := func(cs ...check) check {
		return func(res []promSample) string {
			for _, c := range cs {
				if why := c(res); why != "" {
					return why
				}
			}
			return ""
		}
	}
	const limit = 32 << 20
	empty := func(res []promSample) string {
		if len(res) > 0 {
			return fmt.Sprintf("series where none can be: %v", res)
		}
		return ""
	}
	// ifLimits is c where hog runs, else none: no limit, no OOM kill.
	ifLimits := func(c check) check {
		if limits {
			return c
		}
		return empty
	}
	withHog := func(services ...string) []string {
		if limits {
			return append(services, "hog")
		}
		return services
	}
	readme := map[string]check{
		`increase(sstack_service_restarts_total[10m]) > 3`: all(has("crash"), hasNot("ok", "sick")),
		`sstack_service_up == 0`:                           all(has("quitter"), hasNot("ok", "sick")),
		`sstack_service_healthy == 0`:                      all(has("sick"), hasNot("ok")),
		`histogram_quantile(0.95, sum by (service, le) (rate(sstack_service_start_seconds_bucket[1h])))`: where("crash", "in (0, 30s]", func(v float64) bool { return v > 0 && v <= 30 }),
		`sum by (service, stream) (rate(sstack_log_lines_total[5m]))`:                                    where("crash", "> 0", positive),
		`sum by (service) (rate(sstack_container_cpu_usage_seconds_total[5m]))`:                          where("ok", "> 0", positive),
		`sstack_container_memory_working_set_bytes / sstack_container_spec_memory_limit_bytes`:           ifLimits(all(where("hog", "in (0, 1.1]", func(v float64) bool { return v > 0 && v <= 1.1 }), hasNot("ok", "crash", "sick"))),
		`increase(sstack_service_oom_kills_total[10m]) > 0`:                                              ifLimits(all(has("hog"), hasNot("ok", "crash"))),
		`sstack_service_restarts_exhausted == 1`:                                                         all(has("quitter"), hasNot("crash", "hog", "ok")),
		`topk(5, sstack_container_memory_working_set_bytes)`: all(has(withHog("ok", "sick")...), func(res []promSample) string {
			for _, x := range res {
				if x.Value <= 0 {
					return fmt.Sprintf("%v: no memory", x)
				}
			}
			return ""
		}),
	}
	interfaces := func(res []promSample) string { // the stack network's, each with a rate
		found := map[string]bool{}
		for _, x := range res {
			if pr, ok := x.Metric["project"]; ok && pr != p.name || x.Value < 0 || math.IsNaN(x.Value) {
				return fmt.Sprintf("%v", x)
			}
			found[x.Metric["interface"]] = true
		}
		if !found["lo"] || !found["tap0"] {
			return fmt.Sprintf("interfaces %v, want lo and tap0", found)
		}
		return ""
	}
	readme[`sum by (project, interface) (rate(sstack_network_transmit_bytes_total[5m]))`] = interfaces
	queries := readmeQueries(t)
	if len(queries) != len(readme) {
		t.Errorf("the README has %d queries, this test checks %d: keep them in step", len(queries), len(readme))
	}
	for _, q := range queries {
		if readme[q] == nil {
			t.Errorf("README query %q: no expectation here", q)
		}
	}

	// Dashboard panels: every query returns series, none negative or NaN
	// but the start time quantile (NaN for a service that started once);
	// some with the values the stack must show.
	dashboard := map[string]check{}
	for _, q := range dashboardQueries(t, p.name, "ok") {
		c := func(res []promSample) string {
			if len(res) == 0 {
				return "no series"
			}
			for _, x := range res {
				if x.Value < 0 || math.IsNaN(x.Value) && !strings.Contains(q, "histogram_quantile") {
					return fmt.Sprintf("%v", x)
				}
			}
			return ""
		}
		switch {
		case strings.Contains(q, "sstack_network_"):
			c = interfaces
		case strings.Contains(q, "spec_memory_limit_bytes") && strings.Contains(q, "sum by (service)") && !limits:
			c = empty // no limit anywhere
		case strings.Contains(q, "spec_memory_limit_bytes") && strings.Contains(q, "sum by (service)"):
			c = all(c, where("hog", "32 MiB", func(v float64) bool { return v == limit }), hasNot("ok"))
		case strings.Contains(q, "oom_kills_total") && strings.Contains(q, "sum by (service)") && limits:
			c = all(c, where("hog", "> 0", positive))
		case strings.Contains(q, "sstack_container_cpu_usage_seconds_total") && strings.Contains(q, `service="ok"`):
			c = all(c, where("ok", "> 0", positive))
		case strings.Contains(q, "spec_memory_limit_bytes") && strings.Contains(q, `service="ok"`):
			c = func(res []promSample) string { // ok has no limit: the line is absent
				if len(res) != 0 {
					return fmt.Sprintf("a limit for ok: %v", res)
				}
				return ""
			}
		}
		dashboard[q] = c
	}

	// Series no query above shows with its value: the cgroup's own OOM
	// count (cAdvisor's container_oom_events_total), block I/O counters.
	also := map[string]check{
		`sstack_container_oom_events_total > 0`:       ifLimits(all(has("hog"), hasNot("ok", "crash", "sick"))),
		`sstack_container_fs_writes_bytes_total >= 0`: has("ok", "sick"),
		`sstack_container_threads >= 1`:               has("ok", "sick"),
	}

	// The crash loop needs 4 restarts in Prometheus's view, the OOM kill
	// a scrape before it: a few seconds.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		why := ""
		run := func(kind string, checks map[string]check) {
			for q, c := range checks {
				res, err := prom.query(q)
				if err == nil {
					if w := c(res); w != "" {
						err = fmt.Errorf("%s", w)
					}
				}
				if err != nil {
					why += fmt.Sprintf("\n%s %s: %v", kind, q, err)
				}
			}
		}
		run("README", readme)
		run("dashboard", dashboard)
		run("also", also)
		if why == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queries still failing after 2 minutes:%s", why)
		}
		time.Sleep(time.Second)
	}

	var alerts []string
	want := []string{"SstackCrashLoop crash", "SstackRestartsExhausted quitter"}
	if limits {
		want = append(want, "SstackOOMKilled hog")
	}
	eventually(t, time.Minute, "alerts firing: "+strings.Join(want, ", "), func() bool {
		var err error
		alerts, err = prom.firing()
		if err != nil {
			t.Log(err)
			return false
		}
		a := strings.Join(alerts, ",")
		for _, w := range want {
			if !strings.Contains(a, w) {
				return false
			}
		}
		return true
	})
	for _, a := range alerts {
		if strings.HasSuffix(a, " ok") {
			t.Errorf("alert for the healthy service: %s", a)
		}
	}
	t.Logf("firing: %v", alerts)

	// sstack stats on the same stack: one row per active replica, the
	// limit where there is one, the source the numbers came from.
	rows := map[string]statsRow{}
	for _, row := range p.stats() {
		rows[row.Service] = row
	}
	source := "proc" // an unprivileged user on cgroups v1
	if limits {
		source = "cgroup v1"
		if hog := rows["hog"]; hog.Usage.MemoryLimitBytes != limit || hog.Usage.Source != source || !strings.HasSuffix(hog.MemUsage, " / 32MiB") {
			t.Errorf("hog: %+v", hog)
		}
	}
	if ok := rows["ok"]; ok.Usage.CPUSeconds <= 0 || ok.Usage.Processes < 2 || ok.CPUPerc == "0.00%" || ok.Usage.MemoryLimitBytes != 0 || ok.Usage.Source != source {
		t.Errorf("ok: %+v", ok)
	}
	if _, found := rows["quitter"]; found {
		t.Errorf("stats shows the exited quitter: %+v", rows)
	}
	table := p.must("stats", "--no-stream", "ok")
	if !regexp.MustCompile(`(?m)^NAME +CPU % +MEM USAGE / LIMIT +MEM % +NET I/O +BLOCK I/O +PIDS\n` + `ok-1 +\d+\.\d\d% +\S+ / \S+ +\d+\.\d\d% +-- +\S+ / \S+ +\d+\n$`).MatchString(table) {
		t.Errorf("stats table:\n%s", table)
	}
	r.ctrlC(t)
}

package main

// The Prometheus endpoint of up (--metrics-addr): served from before the
// first service starts until up exits, an error before anything starts
// when its port is taken, and the exact names, types, labels and values of
// every documented metric, with no environment or secret value in them.

import (
	"fmt"
	"sstack/internal/testutil"
	"strings"
	"sync"
	"testing"
	"time"
)

// --metrics-addr serves /metrics from before the first service starts
// until up exits (through the teardown), and the port is released at exit.
func TestMetricsServedFromBeforeStartUntilExit(t *testing.T) {
	p := newProject(t, oneService("app", `["sh", "-c", "trap 'sleep 1; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]`, "stop_grace_period: 20s"))
	addr := freeAddr(t)
	type sample struct {
		err           error
		fams          scraped
		before, after string // sstack's stderr just before and just after the scrape
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	r := p.up("--metrics-addr", addr)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-r.done:
				return
			default:
			}
			s := sample{before: r.stderr.String()}
			var text string
			text, s.err = scrape(addr)
			s.after = r.stderr.String()
			if s.err == nil {
				s.fams, s.err = parseScrape(text)
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	r.waitStdout(t, "app-1 | ready")
	up := replicaLabels(p.name, "app", 1)
	waitScrape(t, r, addr, 30*time.Second, func(s scraped) string {
		if v, _ := s.value("sstack_service_up", up); v != 1 {
			return "app not up"
		}
		return ""
	})
	r.ctrlC(t)
	<-polled
	if _, err := scrape(addr); err == nil {
		t.Errorf("/metrics still answers after sstack exited")
	}

	mu.Lock()
	defer mu.Unlock()
	first, last := -1, -1
	for i, s := range samples {
		if s.err == nil {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Fatalf("no scrape succeeded in %d tries: %v", len(samples), samples[len(samples)-1].err)
	}
	// Served before anything started: stderr had no "Started" yet when
	// the first scrape had been answered.
	if s := samples[first]; strings.Contains(s.after, "Started") {
		t.Errorf("first answered scrape came after a service started:\n%s", s.after)
	}
	// Continuously served from then on: no failure between two successes.
	for i := first; i <= last; i++ {
		if samples[i].err != nil {
			t.Errorf("scrape %d failed while sstack ran: %v", i, samples[i].err)
			break
		}
	}
	// Served through the teardown: once the service process has exited
	// (the instance is still being stopped; the teardown's exit has no
	// status line, as in docker compose), up is 0 and the exit code 0.
	sawExited := false
	for _, s := range samples[first : last+1] {
		if !strings.Contains(s.before, "  Stopping") {
			continue
		}
		if v, ok := s.fams.value("sstack_service_up", up); !ok || v != 0 {
			if sawExited {
				t.Errorf("sstack_service_up after the process exited = %v (present %v), want 0", v, ok)
				break
			}
			continue // not exited yet
		}
		if !sawExited {
			if v, ok := s.fams.value("sstack_service_last_exit_code", up); !ok || v != 0 {
				t.Errorf("sstack_service_last_exit_code after exit 0 = %v (present %v)", v, ok)
			}
		}
		sawExited = true
	}
	if !sawExited {
		t.Errorf("no scrape answered after the service process exited, during the teardown:\n%s", r.stderr.String())
	}
	p.assertNothingLeft()
}

// A port already in use is an error before anything starts, naming
// --metrics-addr.
func TestMetricsAddrTakenStartsNothing(t *testing.T) {
	p := newProject(t, oneService("app", `["sleep", "100"]`))
	addr := testutil.HoldTCP(t, "127.0.0.1:0").String()
	out, _ := p.refusedBeforeStart(1, []string{"--metrics-addr", addr}, "--metrics-addr "+addr, "address already in use")
	if out != "" {
		t.Errorf("something started:\nstdout:\n%s", out)
	}
}

// Exact names, labels and values of every sstack metric for services that
// crash-loop, print known numbers of lines, pass a healthcheck or just
// run; plus the go_* and process_* collectors; and no environment or
// secret value anywhere in the scrape.
func TestMetricsHaveExactValuesAndNoSecrets(t *testing.T) {
	const (
		envLiteral = "envliteral-5c1e0b7d"
		envHost    = "envfromhost-9a2f44e1"
		secret     = "secretvalue-b81d2e06"
	)
	p := newProject(t, services(
		service("crash", `["sh", "-c", "echo out1; echo out2; echo err1 >&2; exit 3"]`, "deploy: {restart_policy: {condition: on-failure, max_attempts: 2, delay: 2s}}"),
		service("lines", `["sh", "-c", "seq 1 1234; seq 1 567 >&2"]`, "deploy: {replicas: 2}"),
		service("healthy", `["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]`, `healthcheck: {test: ["CMD", "true"], interval: 300ms, timeout: 5s}`),
		service("keeper", `["sh", "-c", "trap 'exit 0' TERM; cat /run/secrets/token >/dev/null && echo ready; while true; do sleep 0.1; done"]`,
			"environment: {LITERAL: "+envLiteral+`, FROM_HOST: "${OBS_FROM_HOST}"}`, "secrets: [token]"),
	)+"secrets:\n  token:\n    file: ./token.txt\n")
	p.writeSecret("token.txt", secret)
	p.env = append(p.env, "OBS_FROM_HOST="+envHost)
	addr := freeAddr(t)
	r := p.up("--metrics-addr", addr)
	r.waitStdout(t, "keeper-1  | ready")

	lbl := func(service string, replica int, extra ...string) map[string]string {
		return replicaLabels(p.name, service, replica, extra...)
	}
	fams, text := waitScrape(t, r, addr, 60*time.Second, func(s scraped) string {
		for _, c := range []struct {
			name    string
			labels  map[string]string
			want    float64
			service string
		}{
			{"sstack_service_restarts_total", lbl("crash", 1), 2, ""},
			{"sstack_service_last_exit_code", lbl("crash", 1), 3, ""},
			{"sstack_service_healthy", lbl("healthy", 1), 1, ""},
			{"sstack_log_lines_total", lbl("lines", 1, "stream", "stdout"), 1234, ""},
			{"sstack_log_lines_total", lbl("lines", 2, "stream", "stderr"), 567, ""},
			// The logger counts lines as it takes them, which may trail
			// the exit under load: wait for them too (an excess still fails).
			{"sstack_log_lines_total", lbl("crash", 1, "stream", "stdout"), 6, ""},
			{"sstack_log_lines_total", lbl("crash", 1, "stream", "stderr"), 3, ""},
		} {
			if v, _ := s.value(c.name, c.labels); v != c.want {
				return fmt.Sprintf("%s%v = %v, waiting for %v", c.name, c.labels, v, c.want)
			}
		}
		if m := s.get("sstack_service_start_seconds", lbl("crash", 1)); m == nil || m.GetHistogram().GetSampleCount() < 3 {
			return "waiting for crash's third start to be observed"
		}
		errs := r.stderr.String()
		if !strings.Contains(errs, "crash-1 exited with code 3, giving up after 2 attempts") ||
			!strings.Contains(errs, "lines-1 exited with code 0") || !strings.Contains(errs, "lines-2 exited with code 0") {
			return "waiting for the exits"
		}
		for _, svc := range []string{"lines"} {
			for rep := 1; rep <= 2; rep++ {
				if v, ok := s.value("sstack_service_up", lbl(svc, rep)); !ok || v != 0 {
					return fmt.Sprintf("%s-%d still up", svc, rep)
				}
			}
		}
		if v, ok := s.value("sstack_service_up", lbl("crash", 1)); !ok || v != 0 {
			return "crash still up"
		}
		return ""
	})
	type want struct {
		name   string
		labels map[string]string
		value  float64
	}
	wants := []want{
		{"sstack_service_restarts_total", lbl("crash", 1), 2},
		{"sstack_service_up", lbl("crash", 1), 0},
		{"sstack_service_last_exit_code", lbl("crash", 1), 3},
		{"sstack_log_lines_total", lbl("crash", 1, "stream", "stdout"), 6},
		{"sstack_log_lines_total", lbl("crash", 1, "stream", "stderr"), 3},
		{"sstack_service_up", lbl("healthy", 1), 1},
		{"sstack_service_healthy", lbl("healthy", 1), 1},
		{"sstack_service_restarts_total", lbl("healthy", 1), 0},
		{"sstack_service_up", lbl("keeper", 1), 1},
		{"sstack_log_lines_total", lbl("keeper", 1, "stream", "stdout"), 1},
		{"sstack_log_lines_total", lbl("keeper", 1, "stream", "stderr"), 0},
		{"sstack_service_restarts_exhausted", lbl("crash", 1), 1},
		{"sstack_service_restarts_exhausted", lbl("keeper", 1), 0},
		{"sstack_service_oom_kills_total", lbl("crash", 1), 0},
		{"sstack_service_oom_kills_total", lbl("keeper", 1), 0},
	}
	for rep := 1; rep <= 2; rep++ {
		wants = append(wants,
			want{"sstack_service_up", lbl("lines", rep), 0},
			want{"sstack_service_last_exit_code", lbl("lines", rep), 0},
			want{"sstack_service_restarts_total", lbl("lines", rep), 0},
			want{"sstack_log_lines_total", lbl("lines", rep, "stream", "stdout"), 1234},
			want{"sstack_log_lines_total", lbl("lines", rep, "stream", "stderr"), 567},
		)
	}
	for _, w := range wants {
		v, ok := fams.value(w.name, w.labels)
		if !ok {
			t.Errorf("%s%v missing", w.name, w.labels)
		} else if v != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, v, w.value)
		}
	}
	// Resource usage exists for running replicas only (ps without -a).
	for _, name := range []string{"sstack_container_cpu_usage_seconds_total", "sstack_container_memory_working_set_bytes", "sstack_container_processes"} {
		if v, ok := fams.value(name, lbl("keeper", 1)); !ok || v <= 0 {
			t.Errorf("%s of keeper = %v (present %v), want > 0", name, v, ok)
		}
		if _, ok := fams.value(name, lbl("crash", 1)); ok {
			t.Errorf("%s of the exited crash exists", name)
		}
	}
	// healthy exists only for services with a healthcheck.
	for _, svc := range []string{"crash", "lines", "keeper"} {
		if m := fams.get("sstack_service_healthy", lbl(svc, 1)); m != nil {
			t.Errorf("sstack_service_healthy exists for %s, which has no healthcheck", svc)
		}
	}
	// Types, and the exact label names of every sstack series.
	// (No service has a memory limit: no spec_memory_limit series.)
	types := testutil.MetricTypesWithout("sstack_container_spec_memory_limit_bytes")
	testutil.CheckFamilies(t, fams, types, p.name)
	for name := range fams {
		if _, ok := types[name]; !ok && strings.HasPrefix(name, "sstack_") {
			t.Errorf("undocumented metric %s", name)
		}
	}
	// Start durations: one observation per run. Each measures the start
	// itself: the instance and the process for the first run, the process
	// alone for a restart; neither the restart delay (2 s) nor the time
	// since the first start. So every start is in the 2.5 s bucket, and
	// every one but the first in the 1 s bucket.
	for _, c := range []struct {
		service string
		runs    uint64
	}{{"crash", 3}, {"healthy", 1}, {"keeper", 1}, {"lines", 1}} {
		m := fams.get("sstack_service_start_seconds", lbl(c.service, 1))
		if m == nil {
			t.Errorf("sstack_service_start_seconds missing for %s", c.service)
			continue
		}
		h := m.GetHistogram()
		if h.GetSampleCount() != c.runs {
			t.Errorf("sstack_service_start_seconds_count for %s = %d, want %d", c.service, h.GetSampleCount(), c.runs)
		}
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 2.5 && b.GetCumulativeCount() != h.GetSampleCount() {
				t.Errorf("sstack_service_start_seconds for %s: %d of %d starts took more than 2.5 s (sum %.2f s)",
					c.service, h.GetSampleCount()-b.GetCumulativeCount(), h.GetSampleCount(), h.GetSampleSum())
			}
			if b.GetUpperBound() == 1 && b.GetCumulativeCount()+1 < h.GetSampleCount() {
				t.Errorf("sstack_service_start_seconds for %s: %d of %d starts took more than 1 s (sum %.2f s); restarts should take a process start",
					c.service, h.GetSampleCount()-b.GetCumulativeCount(), h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
	var goSeen, procSeen bool
	for name := range fams {
		goSeen = goSeen || strings.HasPrefix(name, "go_")
		procSeen = procSeen || strings.HasPrefix(name, "process_")
	}
	if !goSeen || !procSeen || fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Errorf("go_* or process_* collectors missing")
	}
	for _, v := range []string{envLiteral, envHost, secret} {
		if strings.Contains(text, v) {
			t.Errorf("/metrics shows the value %q", v)
		}
	}

	p.ctrlCLeavesNothing(r)
}

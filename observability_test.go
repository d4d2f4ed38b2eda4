package main

// Observability against real instances: the Prometheus endpoint during
// up, the exact metric values, a log pipeline that loses nothing, bounded
// memory under a slow reader, and the documented log formats.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"sstack/internal/testimg"
)

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

func scrape(addr string) (string, error) {
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

type scraped map[string]*dto.MetricFamily

func parseScrape(text string) (scraped, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(text))
}

// get finds the series of family name whose labels are exactly want.
func (s scraped) get(name string, want map[string]string) *dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		same := true
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				same = false
			}
		}
		if same {
			return m
		}
	}
	return nil
}

// value of a counter or gauge series; ok is false when it does not exist.
func (s scraped) value(name string, want map[string]string) (float64, bool) {
	m := s.get(name, want)
	if m == nil {
		return 0, false
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue(), true
	}
	return m.GetGauge().GetValue(), true
}

func replicaLabels(project, service string, replica int, extra ...string) map[string]string {
	l := map[string]string{"project": project, "service": service, "replica": strconv.Itoa(replica)}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

// waitScrape polls addr until check (given a parsed scrape) returns "",
// and returns that scrape; it fails with check's last complaint.
func waitScrape(t *testing.T, r *running, addr string, timeout time.Duration, check func(scraped) string) (scraped, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	why := "no scrape yet"
	for {
		text, err := scrape(addr)
		if err == nil {
			fams, perr := parseScrape(text)
			if perr != nil {
				t.Fatalf("/metrics is not in the Prometheus text format: %v\n%s", perr, text)
			}
			if why = check(fams); why == "" {
				return fams, text
			}
		} else {
			why = err.Error()
		}
		select {
		case <-r.done:
			t.Fatalf("sstack exited (code %d) while waiting for metrics: %s", r.code, why)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for metrics: %s\n%s", why, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsEndpointLifetime: --metrics-addr serves /metrics from before
// the first service starts until up exits (through the teardown), and the
// port is released at exit.
func TestMetricsEndpointLifetime(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  app:
    image: `+img+`
    command: ["sh", "-c", "trap 'sleep 1; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]
    stop_grace_period: 20s
`)
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
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
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
	// Served through the teardown: after the service process exited (the
	// instance is still being stopped), up is 0 and the exit code 0.
	sawExited := false
	for _, s := range samples[first : last+1] {
		if !strings.Contains(s.before, "app-1 exited with code 0") {
			continue
		}
		sawExited = true
		if v, ok := s.fams.value("sstack_service_up", up); !ok || v != 0 {
			t.Errorf("sstack_service_up after the process exited = %v (present %v), want 0", v, ok)
		}
		if v, ok := s.fams.value("sstack_service_last_exit_code", up); !ok || v != 0 {
			t.Errorf("sstack_service_last_exit_code after exit 0 = %v (present %v)", v, ok)
		}
		break
	}
	if !sawExited {
		t.Errorf("no scrape answered after the service process exited, during the teardown:\n%s", r.stderr.String())
	}
	assertNothingLeft(t, p.name)
}

// TestMetricsAddrTaken: a port already in use is an error before anything
// starts, naming --metrics-addr.
func TestMetricsAddrTaken(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  app:
    image: `+img+`
    command: ["sleep", "100"]
`)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	code, out, errs := p.run("--metrics-addr", addr)
	if code != 1 {
		t.Errorf("exit code %d with the metrics port taken, want 1", code)
	}
	if !strings.Contains(errs, "--metrics-addr "+addr) || !strings.Contains(errs, "address already in use") {
		t.Errorf("error does not name --metrics-addr %s and the cause:\n%s", addr, errs)
	}
	if strings.Contains(errs, "Creating") || strings.Contains(errs, "Started") || out != "" {
		t.Errorf("something started:\nstdout:\n%s\nstderr:\n%s", out, errs)
	}
	assertNothingLeft(t, p.name)
}

// TestMetricsValues: exact names, labels and values of every sstack metric
// for services that crash-loop, print known numbers of lines, pass a
// healthcheck or just run; plus the go_* and process_* collectors; and no
// environment or secret value anywhere in the scrape.
func TestMetricsValues(t *testing.T) {
	img := testimg.Busybox(t)
	const (
		envLiteral = "envliteral-5c1e0b7d"
		envHost    = "envfromhost-9a2f44e1"
		secret     = "secretvalue-b81d2e06"
	)
	p := newProject(t, `
services:
  crash:
    image: `+img+`
    command: ["sh", "-c", "echo out1; echo out2; echo err1 >&2; exit 3"]
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 2
        delay: 2s
  lines:
    image: `+img+`
    command: ["sh", "-c", "seq 1 1234; seq 1 567 >&2"]
    deploy:
      replicas: 2
  healthy:
    image: `+img+`
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 300ms
      timeout: 5s
  keeper:
    image: `+img+`
    command: ["sh", "-c", "trap 'exit 0' TERM; cat /run/secrets/token >/dev/null && echo ready; while true; do sleep 0.1; done"]
    environment:
      LITERAL: `+envLiteral+`
      FROM_HOST: ${OBS_FROM_HOST}
    secrets: [token]
secrets:
  token:
    file: ./token.txt
`)
	if err := os.WriteFile(filepath.Join(p.dir, "token.txt"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
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
		} {
			if v, _ := s.value(c.name, c.labels); v != c.want {
				return fmt.Sprintf("%s%v = %v, waiting for %v", c.name, c.labels, v, c.want)
			}
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
	// healthy exists only for services with a healthcheck.
	for _, svc := range []string{"crash", "lines", "keeper"} {
		if m := fams.get("sstack_service_healthy", lbl(svc, 1)); m != nil {
			t.Errorf("sstack_service_healthy exists for %s, which has no healthcheck", svc)
		}
	}
	// Types, and the exact label names of every sstack series.
	types := map[string]dto.MetricType{
		"sstack_service_restarts_total": dto.MetricType_COUNTER,
		"sstack_service_up":             dto.MetricType_GAUGE,
		"sstack_service_healthy":        dto.MetricType_GAUGE,
		"sstack_service_last_exit_code": dto.MetricType_GAUGE,
		"sstack_service_start_seconds":  dto.MetricType_HISTOGRAM,
		"sstack_log_lines_total":        dto.MetricType_COUNTER,
	}
	for name, typ := range types {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s has type %v, want %v", name, f.GetType(), typ)
		}
		for _, m := range f.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
				if l.GetName() == "project" && l.GetValue() != p.name {
					t.Errorf("%s has project=%q, want %q", name, l.GetValue(), p.name)
				}
			}
			wantNames := "project,replica,service"
			if name == "sstack_log_lines_total" {
				wantNames = "project,replica,service,stream"
			}
			if got := strings.Join(names, ","); got != wantNames {
				t.Errorf("%s series has labels %s, want %s", name, got, wantNames)
			}
		}
	}
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

	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
	assertNothingLeft(t, p.name)
}

// lineChecker verifies numbered lines "PREFIX N": per key, N must follow
// on from the previous line of that key without gap or repeat.
type lineChecker struct {
	t      *testing.T
	next   map[string]int
	errors int
}

func (c *lineChecker) see(key string, n int, line string) {
	if want := c.next[key]; n != want {
		c.errors++
		if c.errors <= 5 {
			c.t.Errorf("%s: got %d, want %d (line %q)", key, n, want, line)
		}
		c.next[key] = n + 1
		return
	}
	c.next[key]++
}

// TestLogsMillionLinesInOrder: one service printing a million numbered
// lines as fast as it can gives exactly a million whole lines, in order.
func TestLogsMillionLinesInOrder(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  svc:
    image: `+img+`
    command: ["seq", "1", "1000000"]
`)
	start := time.Now()
	code, out, errs := p.run()
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, errs)
	}
	lines := strings.Split(out, "\n")
	if last := lines[len(lines)-1]; last != "" {
		t.Errorf("output does not end with a newline: %q", last)
	}
	lines = lines[:len(lines)-1]
	if len(lines) != 1_000_000 {
		t.Errorf("%d lines, want 1000000", len(lines))
	}
	bad := 0
	for i, l := range lines {
		if want := "svc-1 | " + strconv.Itoa(i+1); l != want {
			if bad++; bad <= 5 {
				t.Errorf("line %d = %q, want %q", i, l, want)
			}
		}
	}
	t.Logf("1,000,000 lines through the race-built sstack in %s (whole up, instance start and stop included)", took.Round(time.Millisecond))
	assertNothingLeft(t, p.name)
}

// TestLogsConcurrentFloods: three services each flood stdout and stderr at
// once; every stream of every service arrives complete and in order, and
// no line is torn or mixed with another.
func TestLogsConcurrentFloods(t *testing.T) {
	img := testimg.Busybox(t)
	const n = 300_000
	cmd := fmt.Sprintf(`["sh", "-c", "seq 1 %d & seq 1000001 %d >&2; wait"]`, n, 1_000_000+n)
	p := newProject(t, `
services:
  alpha:
    image: `+img+`
    command: `+cmd+`
  beta:
    image: `+img+`
    command: `+cmd+`
  gamma:
    image: `+img+`
    command: `+cmd+`
`)
	start := time.Now()
	code, out, errs := p.run()
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, errs)
	}
	c := &lineChecker{t: t, next: map[string]int{}}
	for _, svc := range []string{"alpha-1", "beta-1", "gamma-1"} {
		c.next[svc+" stdout"] = 1
		c.next[svc+" stderr"] = 1_000_001
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	prefixes := []string{"alpha-1 | ", "beta-1  | ", "gamma-1 | "} // padded to the longest name
	for _, l := range lines {
		var num int
		err := errors.New("no prefix")
		name := ""
		for _, pre := range prefixes {
			if strings.HasPrefix(l, pre) {
				name = strings.TrimRight(pre[:7], " ")
				num, err = strconv.Atoi(l[len(pre):])
				break
			}
		}
		if err != nil {
			if c.errors++; c.errors <= 5 {
				t.Errorf("torn or foreign line %q", l)
			}
			continue
		}
		stream := "stdout"
		if num > 1_000_000 {
			stream = "stderr"
		}
		c.see(name+" "+stream, num, l)
	}
	for key, next := range c.next {
		want := n + 1
		if strings.HasSuffix(key, "stderr") {
			want = 1_000_001 + n
		}
		if next != want {
			t.Errorf("%s ended at %d, want %d", key, next-1, want-1)
		}
	}
	if len(lines) != 6*n {
		t.Errorf("%d lines, want %d", len(lines), 6*n)
	}
	t.Logf("%d lines from 3 services x 2 streams in %s", len(lines), took.Round(time.Millisecond))
	assertNothingLeft(t, p.name)
}

// TestLogsLongLineAndOddBytes: a 1 MiB line arrives whole, bytes that are
// not UTF-8 are passed through in text mode and give valid JSON lines with
// --log-format json, and a last line without newline is flushed.
func TestLogsLongLineAndOddBytes(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  odd:
    image: `+img+`
    command:
      - sh
      - -c
      - |
        head -c 1048576 /dev/zero | tr '\0' 'x'; echo
        printf 'bad \xff\xfe bytes\n'
        echo to-stderr >&2
        printf 'no newline at the end'
`)
	long := strings.Repeat("x", 1<<20)

	code, out, errs := p.run()
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, errs)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		got[l] = true
	}
	for _, want := range []string{"odd-1 | " + long, "odd-1 | bad \xff\xfe bytes", "odd-1 | to-stderr", "odd-1 | no newline at the end"} {
		if !got[want] {
			show := want
			if len(show) > 40 {
				show = show[:40] + "…"
			}
			t.Errorf("text output lacks the whole line %q", show)
		}
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 4 {
		t.Errorf("text output has %d lines, want 4 newline-terminated lines", strings.Count(out, "\n"))
	}

	code, out, errs = p.run("--log-format", "json")
	if code != 0 {
		t.Fatalf("json: exit code %d:\n%s", code, errs)
	}
	byLine := map[string]map[string]any{}
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		obj := checkJSONLine(t, i, l, p.name)
		if obj == nil {
			continue
		}
		if obj["service"] != "odd" || obj["replica"] != float64(1) {
			t.Errorf("json line %d: service %v replica %v, want odd 1", i, obj["service"], obj["replica"])
		}
		if s, ok := obj["line"].(string); ok {
			byLine[s] = obj
		}
	}
	if len(byLine) != 4 {
		t.Errorf("%d distinct json lines, want 4", len(byLine))
	}
	for text, stream := range map[string]string{long: "stdout", "to-stderr": "stderr", "no newline at the end": "stdout"} {
		obj := byLine[text]
		if obj == nil {
			t.Errorf("json lacks the line %.40q", text)
		} else if obj["stream"] != stream {
			t.Errorf("line %.40q: stream %v, want %s", text, obj["stream"], stream)
		}
	}
	// Invalid bytes are spelled \xNN rather than replaced with U+FFFD.
	_, found := byLine[`bad \xff\xfe bytes`]
	if !found {
		t.Errorf("json lacks the line with invalid bytes")
	}
	assertNothingLeft(t, p.name)
}

// TestLogsLineNotHeldBehindPartialLine: a whole line written together with
// the start of the next one (a prompt, a buffered writer flushing mid-line)
// shows at once, not when the next line is completed; the partial line
// shows when the process ends.
func TestLogsLineNotHeldBehindPartialLine(t *testing.T) {
	img := testimg.Busybox(t)
	p := newProject(t, `
services:
  svc:
    image: `+img+`
    command: ["sh", "-c", "trap 'exit 0' TERM; printf 'ready\\nprompt> '; while true; do sleep 0.1; done"]
`)
	r := p.up()
	r.waitFor(t, r.stdout.String, "svc-1 | ready\n", 20*time.Second)
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C", code)
	}
	if out := r.stdout.String(); out != "svc-1 | ready\nsvc-1 | prompt> \n" {
		t.Errorf("stdout %q, want the line and then the partial line", out)
	}
	assertNothingLeft(t, p.name)
}

// checkJSONLine decodes one --log-format json line and checks it has
// exactly the documented fields with their types.
func checkJSONLine(t *testing.T, i int, l, project string) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(l), &obj); err != nil {
		t.Errorf("json line %d is not JSON: %v: %.80q", i, err, l)
		return nil
	}
	keys := []string{"time", "project", "service", "replica", "stream", "line"}
	if len(obj) != len(keys) {
		t.Errorf("json line %d has fields %v, want exactly %v", i, obj, keys)
	}
	for _, k := range keys {
		if _, ok := obj[k]; !ok {
			t.Errorf("json line %d lacks %q: %.80q", i, k, l)
		}
	}
	if ts, _ := obj["time"].(string); true {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("json line %d: time %q is not RFC 3339: %v", i, ts, err)
		}
	}
	if obj["project"] != project {
		t.Errorf("json line %d: project %v, want %s", i, obj["project"], project)
	}
	if _, ok := obj["replica"].(float64); !ok {
		t.Errorf("json line %d: replica %v is not a number", i, obj["replica"])
	}
	if s := obj["stream"]; s != "stdout" && s != "stderr" {
		t.Errorf("json line %d: stream %v", i, s)
	}
	return obj
}

// buildPlainSstack builds sstack without -race, whose memory use is the
// one users get (the race detector multiplies it).
func buildPlainSstack(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sstack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// procStatusKB reads a "Name:   N kB" field of /proc/PID/status.
func procStatusKB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				return strconv.Atoi(f[1])
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// upPiped starts `sstack up` (bin, or the race-built binary when empty)
// with its stdout on a pipe the test reads at its own pace.
func upPiped(t *testing.T, p *project, bin string, args ...string) (*running, *os.File) {
	t.Helper()
	cmd := p.command(args...)
	if bin != "" {
		cmd.Path, cmd.Args[0] = bin, bin
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	r := &running{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = pw, r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		_ = cmd.Wait()
		r.code = cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("stderr:\n%s", r.stderr)
		}
	})
	return r, pr
}

// TestLogsMemoryBoundedSlowReader: while nobody reads sstack's stdout, the
// flooding service is held back by its pipe (sstack buffers a few batches,
// not the output); then a slow reader gets every line, in order, and
// sstack's peak RSS stays small throughout.
func TestLogsMemoryBoundedSlowReader(t *testing.T) {
	img := testimg.Busybox(t)
	bin := buildPlainSstack(t)
	p := newProject(t, `
services:
  svc:
    image: `+img+`
    command: ["seq", "1", "1000000"]
`)
	addr := freeAddr(t)
	r, pr := upPiped(t, p, bin, "--metrics-addr", addr)
	pid := r.cmd.Process.Pid
	var peakRSS, peakHWM int
	var peakMu sync.Mutex
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			rss, err1 := procStatusKB(pid, "VmRSS")
			hwm, err2 := procStatusKB(pid, "VmHWM")
			if err1 != nil || err2 != nil {
				return // exited (a zombie has no Vm* lines)
			}
			peakMu.Lock()
			peakRSS, peakHWM = max(peakRSS, rss), max(peakHWM, hwm)
			peakMu.Unlock()
			select {
			case <-r.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	// Nobody reads stdout: once the service runs, sstack may take in only
	// what fits in a few batches and pipe buffers.
	r.waitStderr(t, "Started")
	time.Sleep(3 * time.Second)
	stalled, _ := waitScrape(t, r, addr, 10*time.Second, func(scraped) string { return "" })
	held, _ := stalled.value("sstack_log_lines_total", replicaLabels(p.name, "svc", 1, "stream", "stdout"))
	if held > 100_000 {
		t.Errorf("sstack took in %v lines while its stdout was not read, want a few batches' worth", held)
	}
	if len(leftovers(p.name)) == 0 {
		t.Errorf("the service finished while sstack's stdout was not read: its output was buffered, not held back")
	}
	peakMu.Lock()
	stallRSS := peakRSS
	peakMu.Unlock()

	// A slow reader: 16 KiB at a time, pausing between reads.
	start := time.Now()
	br := bufio.NewReaderSize(&slowReader{r: pr, chunk: 16 << 10, pause: 2 * time.Millisecond}, 64<<10)
	c := &lineChecker{t: t, next: map[string]int{"svc": 1}}
	count := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			if l != "" {
				t.Errorf("last line without newline: %q", l)
			}
			break
		}
		count++
		n, convErr := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(l, "\n"), "svc-1 | "))
		if convErr != nil {
			if c.errors++; c.errors <= 5 {
				t.Errorf("bad line %q", l)
			}
			continue
		}
		c.see("svc", n, l)
	}
	readTook := time.Since(start)
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatal("sstack did not exit after its service ended")
	}
	<-sampled
	if r.code != 0 {
		t.Errorf("exit code %d", r.code)
	}
	if count != 1_000_000 || c.next["svc"] != 1_000_001 {
		t.Errorf("%d lines, up to %d; want 1000000", count, c.next["svc"]-1)
	}
	peakMu.Lock()
	defer peakMu.Unlock()
	t.Logf("non-race sstack: %v lines taken in during a 3 s stall, RSS %d kB then; peak RSS %d kB, VmHWM %d kB; slow read of 1M lines took %s",
		held, stallRSS, peakRSS, peakHWM, readTook.Round(time.Millisecond))
	const bound = 200 << 10 // kB
	if peakHWM > bound || peakRSS > bound {
		t.Errorf("peak RSS %d kB (VmHWM %d kB), want below %d kB", peakRSS, peakHWM, bound)
	}
	assertNothingLeft(t, p.name)
}

// slowReader reads at most chunk bytes at a time and pauses before each read.
type slowReader struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	if len(p) > s.chunk {
		p = p[:s.chunk]
	}
	return s.r.Read(p)
}

// TestLogsNothingLostWhenReaderLags: a service prints a burst that fits
// in the pipes and exits at once, while whoever reads sstack's stdout
// lags for a few seconds (a pager, a slow terminal): the stack ends by
// itself, and every line still reaches stdout before sstack exits.
func TestLogsNothingLostWhenReaderLags(t *testing.T) {
	img := testimg.Busybox(t)
	const n = 20_000
	p := newProject(t, `
services:
  svc:
    image: `+img+`
    command: ["seq", "1", "`+strconv.Itoa(n)+`"]
`)
	r, pr := upPiped(t, p, "")
	// Longer than everything sstack would wait for at exit before giving
	// up on stdout: the 2 s drain grace, the instance stop, the 5 s flush
	// and the 10 s logger stop timeouts.
	time.Sleep(20 * time.Second)
	out, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatal("sstack did not exit")
	}
	if r.code != 0 {
		t.Errorf("exit code %d", r.code)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != n {
		t.Errorf("%d lines reached stdout, want %d; the last: %q", len(lines), n, lines[len(lines)-1])
	}
	for i, l := range lines {
		if want := "svc-1 | " + strconv.Itoa(i+1); l != want {
			t.Errorf("line %d = %q, want %q", i, l, want)
			break
		}
	}
	assertNothingLeft(t, p.name)
}

// openPty returns the master and slave ends of a new pseudo-terminal.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		t.Skipf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		t.Skipf("ptsname: %v", e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("opening the pty slave: %v", err)
	}
	return m, s
}

// runOnTerminal runs sstack to completion with its stdout on a terminal
// and returns what the terminal showed (CR LF turned back into LF).
func runOnTerminal(t *testing.T, p *project, env []string, args ...string) (int, string, string) {
	t.Helper()
	master, slave := openPty(t)
	defer master.Close()
	cmd := p.command(args...)
	cmd.Env = append(cmd.Env, env...)
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = slave, &stderr
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&out, master) // ends with EIO once the slave is closed by all
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("sstack on a terminal did not finish")
	}
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("terminal output did not end")
	}
	return cmd.ProcessState.ExitCode(), strings.ReplaceAll(out.String(), "\r\n", "\n"), stderr.String()
}

// TestLogFormats: the text prefix is docker compose's, padded to the
// longest name; -t puts an RFC 3339 time after it; --no-log-prefix drops
// it; colour only on a terminal and never with --no-color or NO_COLOR;
// --log-format json gives one object per line.
func TestLogFormats(t *testing.T) {
	img := testimg.Busybox(t)
	compose := `
services:
  web:
    image: ` + img + `
    command: ["sh", "-c", "echo hello web; echo oops web >&2"]
  database:
    image: ` + img + `
    command: ["echo", "hello db"]
`
	wantSet := func(t *testing.T, out string, want ...string) {
		t.Helper()
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(got) != len(want) {
			t.Errorf("%d lines, want %d:\n%s", len(got), len(want), out)
		}
		have := map[string]bool{}
		for _, l := range got {
			have[l] = true
		}
		for _, w := range want {
			if !have[w] {
				t.Errorf("output lacks the line %q:\n%q", w, out)
			}
		}
	}
	stamped := func(t *testing.T, out string, re *regexp.Regexp, from, to time.Time) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Errorf("%d lines, want 3:\n%s", len(lines), out)
		}
		for _, l := range lines {
			m := re.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("line %q does not match %s", l, re)
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Errorf("timestamp %q is not RFC 3339: %v", m[1], err)
				continue
			}
			if !strings.HasSuffix(m[1], "Z") {
				t.Errorf("timestamp %q is not in UTC", m[1])
			}
			if ts.Before(from.Add(-time.Second)) || ts.After(to.Add(time.Second)) {
				t.Errorf("timestamp %s is outside the run (%s .. %s)", ts, from, to)
			}
		}
	}
	run := func(t *testing.T, args ...string) (string, time.Time, time.Time) {
		t.Helper()
		p := newProject(t, compose)
		from := time.Now()
		code, out, errs := p.run(args...)
		to := time.Now()
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, errs)
		}
		if strings.Contains(out, "\x1b") {
			t.Errorf("colour codes when stdout is not a terminal: %q", out)
		}
		assertNothingLeft(t, p.name)
		return out, from, to
	}

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		out, _, _ := run(t)
		wantSet(t, out, "web-1      | hello web", "web-1      | oops web", "database-1 | hello db")
	})
	t.Run("no-log-prefix", func(t *testing.T) {
		t.Parallel()
		out, _, _ := run(t, "--no-log-prefix")
		wantSet(t, out, "hello web", "oops web", "hello db")
	})
	t.Run("timestamps", func(t *testing.T) {
		t.Parallel()
		out, from, to := run(t, "--timestamps")
		stamped(t, out, regexp.MustCompile(`^(?:web-1     |database-1) \| (\S+) (?:hello web|oops web|hello db)$`), from, to)
	})
	t.Run("t no-log-prefix", func(t *testing.T) {
		t.Parallel()
		out, from, to := run(t, "-t", "--no-log-prefix")
		stamped(t, out, regexp.MustCompile(`^(\S+) (?:hello web|oops web|hello db)$`), from, to)
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		p := newProject(t, compose)
		code, out, errs := p.run("--log-format", "json", "--no-color", "-t")
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, errs)
		}
		got := map[string]string{}
		for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			obj := checkJSONLine(t, i, l, p.name)
			if obj == nil {
				continue
			}
			got[fmt.Sprintf("%v/%v/%v", obj["service"], obj["replica"], obj["stream"])] = fmt.Sprint(obj["line"])
		}
		want := map[string]string{"web/1/stdout": "hello web", "web/1/stderr": "oops web", "database/1/stdout": "hello db"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("json lines %v, want %v", got, want)
		}
		assertNothingLeft(t, p.name)
	})
	colour := regexp.MustCompile(`^\x1b\[[0-9;]+m(web-1     |database-1) \| \x1b\[0m(hello web|oops web|hello db)$`)
	t.Run("terminal colours", func(t *testing.T) {
		t.Parallel()
		p := newProject(t, compose)
		code, out, errs := runOnTerminal(t, p, nil)
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, errs)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		colours := map[string]string{}
		for _, l := range lines {
			if !colour.MatchString(l) {
				t.Errorf("line on a terminal %q is not a coloured prefix and the text", l)
				continue
			}
			name := colour.FindStringSubmatch(l)[1]
			code := l[:strings.IndexByte(l, 'm')]
			if c, ok := colours[name]; ok && c != code {
				t.Errorf("%s changes colour: %q then %q", name, c, code)
			}
			colours[name] = code
		}
		if len(lines) != 3 || len(colours) != 2 || colours["web-1     "] == colours["database-1"] {
			t.Errorf("want 3 lines and a colour per replica, got %q", out)
		}
		assertNothingLeft(t, p.name)
	})
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"terminal --no-color", nil, []string{"--no-color"}},
		{"terminal NO_COLOR", []string{"NO_COLOR=1"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, compose)
			code, out, errs := runOnTerminal(t, p, c.env, c.args...)
			if code != 0 {
				t.Fatalf("exit code %d:\n%s", code, errs)
			}
			if strings.Contains(out, "\x1b") {
				t.Errorf("colour codes: %q", out)
			}
			wantSet(t, out, "web-1      | hello web", "web-1      | oops web", "database-1 | hello db")
			assertNothingLeft(t, p.name)
		})
	}
}

// Package metrics declares every Prometheus metric sstack exports. The names
// and labels are a contract users build dashboards and alerts on: do not
// rename them. No label or value ever carries an environment or secret value.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sstack/internal/api"
)

// DefaultAddr is where `up` serves /metrics unless --metrics-addr says
// otherwise: loopback only, so a shared cluster node does not expose it.
const DefaultAddr = "127.0.0.1:9464"

var labels = []string{"project", "service", "replica"}

// Metrics holds the collectors of one project. A nil *Metrics is valid and
// records nothing, so tests and `sstack config` need no registry.
type Metrics struct {
	project  string
	nodeOf   func(service string, replica int) string // nil: no node label
	registry *prometheus.Registry

	restarts     *prometheus.CounterVec
	up           *prometheus.GaugeVec
	healthy      *prometheus.GaugeVec
	lastExit     *prometheus.GaugeVec
	startSeconds *prometheus.HistogramVec
	logLines     *prometheus.CounterVec
	oomKills     *prometheus.CounterVec
	gaveUp       *prometheus.GaugeVec
	labelNames   []string
	usageErrors  atomic.Int64
}

// New registers the sstack metrics plus the Go and process collectors in a
// registry of their own.
func New(project string) *Metrics { return NewPlaced(project, nil) }

// NewPlaced is New for a stack spread over nodes: every series also has a
// node label, nodeOf's answer for the replica.
func NewPlaced(project string, nodeOf func(service string, replica int) string) *Metrics {
	labels := labels
	if nodeOf != nil {
		labels = append(slices.Clone(labels), "node")
	}
	counterVec := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(slices.Clone(labels), extra...))
	}
	gaugeVec := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		project:  project,
		nodeOf:   nodeOf,
		registry: prometheus.NewRegistry(),
		restarts: counterVec("sstack_service_restarts_total",
			"Restarts of the service process done by the restart policy."),
		up: gaugeVec("sstack_service_up",
			"1 while the service process runs, else 0."),
		healthy: gaugeVec("sstack_service_healthy",
			"1 when the service's healthcheck passes, 0 when unhealthy or starting; absent without a healthcheck."),
		lastExit: gaugeVec("sstack_service_last_exit_code",
			"Exit code of the last run of the service process."),
		startSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sstack_service_start_seconds",
			Help:    "Time from the decision to start the service to its process running.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, labels),
		logLines: counterVec("sstack_log_lines_total",
			"Log lines received from the service, by stream.", "stream"),
		oomKills: counterVec("sstack_service_oom_kills_total",
			"Runs of the service process the kernel killed for exceeding the memory limit."),
		gaveUp: gaugeVec("sstack_service_restarts_exhausted",
			"1 once the restart policy gave up on the replica (max attempts reached), 0 when it runs again."),
		labelNames: labels,
	}
	for _, v := range m.series() {
		m.registry.MustRegister(v)
	}
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// vec is a collector with a series per replica.
type vec interface {
	prometheus.Collector
	DeletePartialMatch(prometheus.Labels) int
}

// series are the collectors labelled per replica.
func (m *Metrics) series() []vec {
	return []vec{m.restarts, m.up, m.healthy, m.lastExit, m.startSeconds, m.logLines, m.oomKills, m.gaveUp}
}

// Registry is the registry the metrics live in (for tests).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

func (m *Metrics) lv(service string, replica int) []string {
	if m.nodeOf != nil {
		return []string{m.project, service, strconv.Itoa(replica), m.nodeOf(service, replica)}
	}
	return []string{m.project, service, strconv.Itoa(replica)}
}

// Register makes a replica's series visible at their initial values before
// it starts, so dashboards see 0 rather than nothing.
func (m *Metrics) Register(service string, replica int, hasHealthcheck bool) {
	if m == nil {
		return
	}
	l := m.lv(service, replica)
	m.restarts.WithLabelValues(l...)
	m.up.WithLabelValues(l...).Set(0)
	m.lastExit.WithLabelValues(l...)
	m.oomKills.WithLabelValues(l...)
	m.gaveUp.WithLabelValues(l...).Set(0)
	if hasHealthcheck {
		m.healthy.WithLabelValues(l...).Set(0)
	}
	for _, s := range []string{"stdout", "stderr"} {
		m.logLines.WithLabelValues(append(l, s)...)
	}
}

// Restarted counts one restart done by the restart policy.
func (m *Metrics) Restarted(service string, replica int) {
	if m == nil {
		return
	}
	m.restarts.WithLabelValues(m.lv(service, replica)...).Inc()
}

// Up records whether the service process runs.
func (m *Metrics) Up(service string, replica int, up bool) {
	if m == nil {
		return
	}
	m.up.WithLabelValues(m.lv(service, replica)...).Set(gauge(up))
}

// Healthy records the healthcheck state.
func (m *Metrics) Healthy(service string, replica int, healthy bool) {
	if m == nil {
		return
	}
	m.healthy.WithLabelValues(m.lv(service, replica)...).Set(gauge(healthy))
}

// gauge is a boolean as Prometheus has it: 1 or 0.
func gauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Exited records the exit code of a run.
func (m *Metrics) Exited(service string, replica int, code int) {
	if m == nil {
		return
	}
	l := m.lv(service, replica)
	m.up.WithLabelValues(l...).Set(0)
	m.lastExit.WithLabelValues(l...).Set(float64(code))
}

// Started observes the time a start took.
func (m *Metrics) Started(service string, replica int, took time.Duration) {
	if m == nil {
		return
	}
	l := m.lv(service, replica)
	m.startSeconds.WithLabelValues(l...).Observe(took.Seconds())
	m.up.WithLabelValues(l...).Set(1)
	m.gaveUp.WithLabelValues(l...).Set(0)
}

// Died records what an exit was and what the restart policy made of it.
func (m *Metrics) Died(service string, replica int, code int, oomKilled, gaveUp bool) {
	if m == nil {
		return
	}
	m.Exited(service, replica, code)
	l := m.lv(service, replica)
	if oomKilled {
		m.oomKills.WithLabelValues(l...).Inc()
	}
	if gaveUp {
		m.gaveUp.WithLabelValues(l...).Set(1)
	}
}

// LogLines counts n lines of a stream ("stdout" or "stderr").
func (m *Metrics) LogLines(service string, replica int, stream string, n int) {
	if m == nil {
		return
	}
	m.logLines.WithLabelValues(append(m.lv(service, replica), stream)...).Add(float64(n))
}

// Listen binds addr before anything starts, so that a taken port is an
// error up front. An empty addr means no metrics endpoint (nil listener).
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w; choose another address with --metrics-addr HOST:PORT, or turn metrics off with --metrics-addr ''", addr, err)
	}
	return l, nil
}

// Serve serves /metrics on l until l is closed.
func (m *Metrics) Serve(l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	err := srv.Serve(l)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Observe updates the replica's series from one of its events: the
// metrics read the same typed events as the console, ps and `events`.
func (m *Metrics) Observe(ev api.Event) {
	if m == nil || ev.Service == "" {
		return
	}
	switch ev.Kind {
	case api.EventStarted:
		m.Started(ev.Service, ev.Replica, ev.Delay)
	case api.EventDied:
		m.Died(ev.Service, ev.Replica, ev.ExitCode, ev.OOMKilled, ev.GaveUp)
	case api.EventRestarting:
		if ev.Dependency == "" && !ev.User { // the restart policy's, not a user's
			m.Restarted(ev.Service, ev.Replica)
		}
	case api.EventHealth:
		switch ev.Health {
		case api.HealthHealthy:
			m.Healthy(ev.Service, ev.Replica, true)
		case api.HealthUnhealthy:
			m.Healthy(ev.Service, ev.Replica, false)
		}
	}
}

// Remove drops a replica's series (scaled down: it no longer exists).
func (m *Metrics) Remove(service string, replica int) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"project": m.project, "service": service, "replica": strconv.Itoa(replica)}
	for _, v := range m.series() {
		v.DeletePartialMatch(l)
	}
}

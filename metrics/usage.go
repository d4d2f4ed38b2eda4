package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sstack/internal/api"
	"sstack/internal/usage"
)

// UsageFunc reads what the active replicas use, at scrape time.
type UsageFunc func(ctx context.Context) ([]api.ReplicaStats, error)

// usageTimeout bounds a scrape's read (agents across a Slurm allocation
// answer over the network); Prometheus's own default timeout is 10 s.
const usageTimeout = 5 * time.Second

// usageCollector turns a UsageFunc into the sstack_container_* series,
// read when Prometheus scrapes: nothing is polled between scrapes. The
// names and meanings are cAdvisor's container_* ones.
type usageCollector struct {
	m    *Metrics
	read UsageFunc

	cpu, mem, workingSet, limit, procs, threads, reads, writes, oom, errors *prometheus.Desc
}

// CollectUsage adds the resource usage series, read by read at each
// scrape. A nil read, or a nil *Metrics, adds nothing.
func (m *Metrics) CollectUsage(read UsageFunc) {
	if m == nil || read == nil {
		return
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, m.labelNames, nil)
	}
	m.registry.MustRegister(&usageCollector{
		m:    m,
		read: read,
		cpu:  d("sstack_container_cpu_usage_seconds_total", "CPU time (user and system) used by the replica's instance."),
		mem: d("sstack_container_memory_usage_bytes",
			"Memory of the replica's instance: its cgroup's usage, page cache included; without a cgroup, the sum of its processes' resident sets."),
		workingSet: d("sstack_container_memory_working_set_bytes",
			"Memory usage less the inactive file cache (what the OOM killer looks at); without a cgroup, the resident sets."),
		limit: d("sstack_container_spec_memory_limit_bytes",
			"Memory limit of the replica's instance (mem_limit); absent without one."),
		procs:   d("sstack_container_processes", "Processes in the replica's instance."),
		threads: d("sstack_container_threads", "Threads in the replica's instance."),
		reads:   d("sstack_container_fs_reads_bytes_total", "Bytes read from block devices by the replica's instance."),
		writes:  d("sstack_container_fs_writes_bytes_total", "Bytes written to block devices by the replica's instance."),
		oom: d("sstack_container_oom_events_total",
			"Processes of the replica's instance killed by the kernel for exceeding its memory limit (the cgroup's oom_kill count); absent without a cgroup."),
		errors: prometheus.NewDesc("sstack_usage_read_errors_total",
			"Failed reads of the usage (wholly or for some nodes) or of the stack network, one per scrape each.", []string{"project"}, nil),
	})
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.mem, c.workingSet, c.limit, c.procs, c.threads, c.reads, c.writes, c.oom, c.errors} {
		ch <- d
	}
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), usageTimeout)
	defer cancel()
	stats, err := c.read(ctx)
	if err != nil {
		c.m.usageErrors.Add(1)
	}
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(c.m.usageErrors.Load()), c.m.project)
	for _, s := range stats {
		l := c.m.lv(s.Service, s.Replica)
		u := s.Usage
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
		}
		counter(c.cpu, u.CPUSeconds)
		gauge(c.mem, float64(u.MemoryBytes))
		gauge(c.workingSet, float64(u.WorkingSetBytes))
		if u.MemoryLimitBytes > 0 {
			gauge(c.limit, float64(u.MemoryLimitBytes))
		}
		gauge(c.procs, float64(u.Processes))
		gauge(c.threads, float64(u.Threads))
		counter(c.reads, float64(u.ReadBytes))
		counter(c.writes, float64(u.WriteBytes))
		if u.Cgroup() {
			counter(c.oom, float64(u.OOMKills))
		}
	}
}

// NetworkFunc reads the interfaces of the stack's network namespace.
type NetworkFunc func() ([]usage.Interface, error)

// networkCollector exports the stack network's counters, per interface:
// the replicas of a stack share one namespace, so there is no per-replica
// count (cAdvisor's container_network_* per container has no equivalent).
type networkCollector struct {
	m              *Metrics
	read           NetworkFunc
	receive, trans *prometheus.Desc
}

// CollectNetwork adds the stack network's byte counters, read by read at
// each scrape. A nil read adds nothing (no stack network: host network,
// or across a Slurm allocation).
func (m *Metrics) CollectNetwork(read NetworkFunc) {
	if m == nil || read == nil {
		return
	}
	l := []string{"project", "interface"}
	m.registry.MustRegister(&networkCollector{m: m, read: read,
		receive: prometheus.NewDesc("sstack_network_receive_bytes_total",
			"Bytes received on an interface of the stack's network namespace (lo: between its services; tap0: from outside, through slirp4netns).", l, nil),
		trans: prometheus.NewDesc("sstack_network_transmit_bytes_total",
			"Bytes sent on an interface of the stack's network namespace (lo: between its services; tap0: to outside, through slirp4netns).", l, nil),
	})
}

func (c *networkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.receive
	ch <- c.trans
}

func (c *networkCollector) Collect(ch chan<- prometheus.Metric) {
	ifaces, err := c.read()
	if err != nil {
		c.m.usageErrors.Add(1)
		return
	}
	for _, i := range ifaces {
		ch <- prometheus.MustNewConstMetric(c.receive, prometheus.CounterValue, float64(i.ReceiveBytes), c.m.project, i.Name)
		ch <- prometheus.MustNewConstMetric(c.trans, prometheus.CounterValue, float64(i.TransmitBytes), c.m.project, i.Name)
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
	"sstack/internal/control"
)

// scrapeRounds is how many rounds of scrapeBurst back-to-back scrapes each
// iteration times, each followed by an idle window as long as it.
const (
	scrapeRounds = 5
	scrapeBurst  = 20
)

// BenchmarkScrape times a scrape of /metrics of a detached stack of N
// running replicas (one service, deploy.replicas N), each scrape reading
// every replica's usage from its instance's cgroup: the latency of one
// scrape as Prometheus sees it, and the supervisor's CPU time per scrape
// (its threads' CPU time over a burst of scrapes, less their CPU over an
// idle window as long as the burst, per scrape). The same for the usage
// read alone, as `sstack stats` gets it over the control socket.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{10, 200} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchScrape(b, n) })
	}
}

func benchScrape(b *testing.B, n int) {
	e := newBenchEnv(b)
	composeFile := e.writeFile(fmt.Sprintf("scrape%d.yml", n), benchCompose(e.image, 1, n))
	project := benchName("benchscrape")
	addr := freeAddr(b)
	e.upDetached(composeFile, project, n, upDownTimeout(n)*2, "--metrics-addr", addr)
	e.awaitReady(project, n, time.Now())
	pid := benchSupervisor(b, filepath.Join(e.stateDir, project))
	text, err := scrape(addr)
	if err != nil {
		b.Fatal(err)
	}
	if got := strings.Count(text, "\nsstack_container_cpu_usage_seconds_total{"); got != n {
		b.Fatalf("%d replicas with a CPU series, want %d", got, n)
	}
	// The usage read alone, as `sstack stats` asks for it over the
	// control socket: the part of a scrape that reads the instances.
	client, err := control.Dial(filepath.Join(e.stateDir, project))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	stats := func() {
		rows, err := client.Stats(context.Background(), api.StatsOptions{})
		if err != nil || len(rows) != n {
			b.Fatalf("stats: %d rows, %v", len(rows), err)
		}
	}
	scrapeOnce := func() {
		if _, err := scrape(addr); err != nil {
			b.Fatal(err)
		}
	}
	// measure times burst calls of fn, then an idle window as long: the
	// latency of each call, and the supervisor's CPU per call.
	measure := func(fn func(), latency, cpu *[]float64) {
		cpu0, t0 := benchCPU(b, pid), time.Now()
		for k := 0; k < scrapeBurst; k++ {
			s := time.Now()
			fn()
			*latency = append(*latency, ms(time.Since(s)))
		}
		busy, wall := benchCPU(b, pid)-cpu0, time.Since(t0)
		cpu1 := benchCPU(b, pid)
		time.Sleep(wall)
		idle := benchCPU(b, pid) - cpu1
		*cpu = append(*cpu, ms(busy-idle)/scrapeBurst)
	}
	var latency, cpu, statsLatency, statsCPU []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < scrapeRounds; r++ {
			measure(scrapeOnce, &latency, &cpu)
			measure(stats, &statsLatency, &statsCPU)
		}
	}
	b.StopTimer()
	e.downDetached(project, n)
	b.Logf("%d replicas, %d bytes per scrape; latency %s ms; CPU per scrape %s ms; CPU per stats read %s ms", n, len(text),
		fmtSeries(latency[:min(len(latency), 20)]), fmtSeries(cpu), fmtSeries(statsCPU))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(latency), "scrape-ms")
	b.ReportMetric(median(cpu), "cpu-ms/scrape")
	b.ReportMetric(float64(len(text)), "bytes/scrape")
	b.ReportMetric(median(statsLatency), "stats-ms")
	b.ReportMetric(median(statsCPU), "cpu-ms/stats")
}

// benchSupervisor is the pid of the project's supervisor, as it says
// over its control socket.
func benchSupervisor(b *testing.B, stateDir string) int {
	b.Helper()
	c, err := control.Dial(stateDir)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(context.Background())
	if err != nil || info.Pid == 0 {
		b.Fatalf("the supervisor's info: %+v, %v", info, err)
	}
	return info.Pid
}

// benchCPU is the CPU time pid's threads have used (the first field of
// each /proc/PID/task/TID/schedstat, in ns; a Go program's threads live
// as long as it does).
func benchCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of %d: %v", pid, err)
	}
	var total time.Duration
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that just ended
		}
		fields := strings.Fields(string(data))
		if len(fields) > 0 {
			ns, _ := strconv.ParseInt(fields[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
)

// statsStack is an api.Stack whose Stats returns one prepared sample per
// call; every other verb is not used by stats.
type statsStack struct {
	api.Stack
	samples [][]api.ReplicaStats
	calls   int
	opts    []api.StatsOptions
	// gone: the stack stops after this many calls (0: never).
	gone int
}

func (s *statsStack) Stats(ctx context.Context, opts api.StatsOptions) ([]api.ReplicaStats, error) {
	s.opts = append(s.opts, opts)
	if s.gone > 0 && s.calls >= s.gone {
		return nil, fmt.Errorf("%w (no control socket)", api.ErrNotRunning)
	}
	i := min(s.calls, len(s.samples)-1)
	s.calls++
	return s.samples[i], nil
}

// The stream ends without an error when the stack stops.
func TestStatsStreamEndsWithTheStack(t *testing.T) {
	st := &statsStack{samples: statsSamples(), gone: 3}
	var out bytes.Buffer
	if err := streamStats(context.Background(), st, nil, false, "table", &out, false, time.Millisecond); err != nil {
		t.Fatalf("%v, want the end of the stream", err)
	}
	if n := strings.Count(out.String(), "NAME "); n != 2 {
		t.Errorf("%d tables before the stack stopped, want 2:\n%s", n, out.String())
	}
}

func statsSamples() [][]api.ReplicaStats {
	t0 := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	db := func(at time.Duration, cpu float64) api.ReplicaStats {
		return api.ReplicaStats{Name: "db-1", Service: "db", Replica: 1, Instance: "p.db.1", Time: t0.Add(at),
			Usage: api.Usage{Source: api.SourceCgroupV1, CPUSeconds: cpu, MemoryBytes: 40 << 20, WorkingSetBytes: 16 << 20,
				MemoryLimitBytes: 64 << 20, HostMemoryBytes: 8 << 30, Processes: 2, Threads: 5, ReadBytes: 1500, WriteBytes: 2 << 20}}
	}
	web := func(at time.Duration, cpu float64) api.ReplicaStats {
		return api.ReplicaStats{Name: "web-1", Service: "web", Replica: 1, Instance: "p.web.1", Time: t0.Add(at),
			Usage: api.Usage{Source: api.SourceProc, CPUSeconds: cpu, MemoryBytes: 1 << 30, WorkingSetBytes: 1 << 30,
				HostMemoryBytes: 8 << 30, Processes: 1, Threads: 1}}
	}
	return [][]api.ReplicaStats{
		{db(0, 10), web(0, 3)},
		{db(time.Second, 10.5), web(time.Second, 5)}, // db half a core, web two cores
	}
}

// --no-stream: two samples, one table with docker compose stats' columns;
// CPU % from the CPU time between them, memory against the limit or,
// without one, the node's memory.
func TestStatsTable(t *testing.T) {
	st := &statsStack{samples: statsSamples()}
	var out bytes.Buffer
	if err := streamStats(context.Background(), st, []string{"db", "web"}, true, "table", &out, true, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	want := `NAME    CPU %     MEM USAGE / LIMIT   MEM %    NET I/O   BLOCK I/O       PIDS
db-1    50.00%    16MiB / 64MiB       25.00%   --        1.5kB / 2.1MB   5
web-1   200.00%   1GiB / 8GiB         12.50%   --        0B / 0B         1
`
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(out.String(), "\033[") {
		t.Errorf("--no-stream cleared the terminal")
	}
	if st.calls != 2 || st.opts[0].Services[1] != "web" {
		t.Errorf("%d Stats calls with %v, want 2 with the services", st.calls, st.opts)
	}
}

// Streaming on a terminal redraws each table in place; JSON prints one
// object per replica and line, with docker's keys and the raw numbers.
func TestStatsStreamAndJSON(t *testing.T) {
	st := &statsStack{samples: statsSamples()}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	if err := streamStats(ctx, st, nil, false, "table", &out, true, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\033[2J\033[H"); n < 2 || n != strings.Count(out.String(), "NAME ") {
		t.Errorf("%d screen clears for %d tables:\n%q", n, strings.Count(out.String(), "NAME "), out.String())
	}

	st = &statsStack{samples: statsSamples()}
	out.Reset()
	if err := streamStats(context.Background(), st, nil, true, "json", &out, false, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("json: %d lines, want 2:\n%s", len(lines), out.String())
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"Name": "db-1", "CPUPerc": "50.00%", "MemUsage": "16MiB / 64MiB", "MemPerc": "25.00%",
		"NetIO": "--", "BlockIO": "1.5kB / 2.1MB", "PIDs": "5", "Service": "db"} {
		if row[k] != v {
			t.Errorf("json %s = %v, want %v", k, row[k], v)
		}
	}
	if u, _ := row["Usage"].(map[string]any); u["Source"] != api.SourceCgroupV1 || u["MemoryLimitBytes"] != float64(64<<20) {
		t.Errorf("json Usage = %v", row["Usage"])
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"sstack/internal/api"
)

// statsInterval is the time between two samples: CPU % is the CPU time
// used between them, as docker stats refreshes each second.
const statsInterval = time.Second

func newStats(o *options) *cobra.Command {
	var noStream bool
	var format string
	c := &cobra.Command{
		Use:               "stats [OPTIONS] [SERVICE...]",
		Short:             "Display a live stream of the replicas' resource usage (CPU, memory, block I/O, PIDs)",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStack(o, func(ctx context.Context, st api.Stack, _ string) error {
				return streamStats(ctx, st, args, noStream, format, o.stdout, isTerminal(o.stdout), statsInterval)
			})
		},
	}
	c.Flags().BoolVar(&noStream, "no-stream", false, "Print the first result and exit")
	formatFlag(c, &format, "Format the output: table or json (one object per replica and line)", "table", "json")
	return c
}

// streamStats samples every interval and prints a frame from each pair of
// samples, until ctx ends (Ctrl-C: not an error), the stack stops (not an
// error either) or, with noStream, after the first frame. On a terminal
// each table replaces the last.
func streamStats(ctx context.Context, st api.Stack, services []string, noStream bool, format string, w io.Writer, terminal bool, interval time.Duration) error {
	prev, err := st.Stats(ctx, api.StatsOptions{Services: services})
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		cur, err := st.Stats(ctx, api.StatsOptions{Services: services})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, api.ErrNotRunning) {
				return nil // Ctrl-C, or the stack stopped: the stream ends, as logs -f's
			}
			return err
		}
		rows := statsRows(prev, cur)
		if format == "json" {
			enc := json.NewEncoder(w)
			for _, r := range rows {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
		} else {
			if terminal && !noStream {
				fmt.Fprint(w, "\033[2J\033[H") // clear the screen, cursor home: docker's refresh
			}
			printStatsTable(w, rows)
		}
		if noStream {
			return nil
		}
		prev = cur
	}
}

// statsRow is one line of stats, with docker compose stats' columns (and
// its JSON keys), plus the raw numbers.
type statsRow struct {
	Name     string    `json:"Name"`
	Service  string    `json:"Service"`
	Replica  int       `json:"Replica"`
	Node     string    `json:"Node,omitempty"`
	Instance string    `json:"Instance"`
	CPUPerc  string    `json:"CPUPerc"`
	MemUsage string    `json:"MemUsage"`
	MemPerc  string    `json:"MemPerc"`
	NetIO    string    `json:"NetIO"`
	BlockIO  string    `json:"BlockIO"`
	PIDs     string    `json:"PIDs"`
	Time     time.Time `json:"Time"`
	Usage    api.Usage `json:"Usage"`
}

// statsRows computes the rows of cur; CPU % is the CPU time cur's replica
// used since the same replica in prev (100% is one core), 0 for a replica
// new in cur or whose counter went back (its instance was recreated).
func statsRows(prev, cur []api.ReplicaStats) []statsRow {
	before := map[string]api.ReplicaStats{}
	for _, p := range prev {
		before[p.Instance] = p
	}
	rows := make([]statsRow, 0, len(cur))
	for _, c := range cur {
		u := c.Usage
		cpu := 0.0
		if p, ok := before[c.Instance]; ok {
			if wall := c.Time.Sub(p.Time).Seconds(); wall > 0 && u.CPUSeconds >= p.Usage.CPUSeconds {
				cpu = (u.CPUSeconds - p.Usage.CPUSeconds) / wall * 100
			}
		}
		// Without a limit, the node's memory, as docker shows the host's.
		limit := u.MemoryLimitBytes
		if limit == 0 {
			limit = u.HostMemoryBytes
		}
		memPerc := 0.0
		if limit > 0 {
			memPerc = float64(u.WorkingSetBytes) / float64(limit) * 100
		}
		rows = append(rows, statsRow{
			Name: c.Name, Service: c.Service, Replica: c.Replica, Node: c.Node, Instance: c.Instance,
			CPUPerc:  fmt.Sprintf("%.2f%%", cpu),
			MemUsage: units.BytesSize(float64(u.WorkingSetBytes)) + " / " + units.BytesSize(float64(limit)),
			MemPerc:  fmt.Sprintf("%.2f%%", memPerc),
			// A stack's replicas share its network namespace: no per-replica count.
			NetIO:   "--",
			BlockIO: units.HumanSizeWithPrecision(float64(u.ReadBytes), 3) + " / " + units.HumanSizeWithPrecision(float64(u.WriteBytes), 3),
			PIDs:    strconv.Itoa(u.Threads),
			Time:    c.Time,
			Usage:   u,
		})
	}
	return rows
}

func printStatsTable(w io.Writer, rows []statsRow) {
	tw := newTable(w)
	nodes := slices.ContainsFunc(rows, func(r statsRow) bool { return r.Node != "" })
	if nodes {
		fmt.Fprintln(tw, "NAME\tNODE\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS")
	} else {
		fmt.Fprintln(tw, "NAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS")
	}
	for _, r := range rows {
		if nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Node, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs)
	}
	_ = tw.Flush()
}

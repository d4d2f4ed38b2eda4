package main

// Resource usage where the instance has no cgroup of its own: an
// unprivileged user on cgroups v1. The numbers come from /proc, summed
// over the processes of the instance's PID namespace; the stack network's
// from its holder, in the user's own user namespace. And `sstack stats`
// on a terminal. (With a cgroup, as root: prometheus_test.go.)

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestUsageFromProcForAnUnprivilegedUser(t *testing.T) {
	p := newUserProject(t, oneService("busy", `["sh", "-c", "while true; do i=0; while [ $$i -lt 3000 ]; do i=$$((i+1)); done; sleep 0.1; done"]`))
	t.Parallel()
	addr := freeAddr(t)
	p.upDetached("--metrics-addr", addr)
	defer p.down()
	busy := replicaLabels(p.name, "busy", 1)
	var why string
	eventually(t, time.Minute, "usage series of busy", func() bool {
		text, err := scrape(addr)
		if err != nil {
			why = err.Error()
			return false
		}
		s, err := parseScrape(text)
		if err != nil {
			t.Fatal(err)
		}
		cpu, ok1 := s.value("sstack_container_cpu_usage_seconds_total", busy)
		mem, ok2 := s.value("sstack_container_memory_working_set_bytes", busy)
		procs, ok3 := s.value("sstack_container_processes", busy)
		_, limit := s.value("sstack_container_spec_memory_limit_bytes", busy)
		_, oom := s.value("sstack_container_oom_events_total", busy)
		switch {
		case !ok1 || !ok2 || !ok3:
			why = "series missing"
		case cpu <= 0 || mem <= 0 || procs < 2:
			// appinit and the shell at least
			why = "cpu, memory, processes: " + strings.Join([]string{ftoa(cpu), ftoa(mem), ftoa(procs)}, ", ")
		case limit || oom:
			why = "a memory limit or an OOM count without a cgroup"
		case s.get("sstack_network_transmit_bytes_total", map[string]string{"project": p.name, "interface": "tap0"}) == nil:
			why = "no bytes of the stack network (read as the user, its holder in a user namespace)"
		default:
			return true
		}
		return false
	})
	if t.Failed() {
		t.Fatal(why)
	}
	rows := p.stats()
	if len(rows) != 1 {
		t.Fatalf("stats: %+v, want busy-1's row only", rows)
	}
	if row := rows[0]; row.Name != "busy-1" || row.Usage.Source != "proc" || row.Usage.CPUSeconds <= 0 || row.CPUPerc == "0.00%" || row.Usage.MemoryLimitBytes != 0 {
		t.Errorf("stats as an unprivileged user: %+v", row)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// On a terminal stats redraws its table in place each second, and ends
// (with 0) when the stack stops.
func TestStatsOnATerminal(t *testing.T) {
	p := newProject(t, oneService("web", `["sleep", "600"]`))
	t.Parallel()
	p.upDetached()
	down := p.command("down") // before runOnTerminal changes p.env
	go func() {
		time.Sleep(3500 * time.Millisecond)
		_ = down.Run()
	}()
	code, out, errs := runOnTerminal(t, p, nil, "stats")
	if code != 0 {
		t.Errorf("exit code %d after the stack stopped, want 0: %s", code, errs)
	}
	if n := strings.Count(out, "\033[2J\033[H"); n < 2 || n != strings.Count(out, "NAME ") {
		t.Errorf("%d redraws for %d tables, want one each and at least 2:\n%q", n, strings.Count(out, "NAME "), out)
	}
	if !strings.Contains(out, "\nweb-1 ") {
		t.Errorf("no row for web-1:\n%q", out)
	}
}

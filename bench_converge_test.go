package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// convergeServices is the size of BenchmarkConverge's stack.
const convergeServices = 50

// BenchmarkConverge times `up -d` on a running stack of 50 services: with
// the file unchanged (it should cost about a `ps`, not a restart), and
// with one service's command changed (against recreating that one
// instance by hand: instance stop, instance start, exec until the process
// runs). Each ratio is of medians measured in the same run.
func BenchmarkConverge(b *testing.B) {
	integration(b)
	e := newBenchEnv(b)
	project := benchName("benchconv")
	file := func(variant int) string {
		compose := benchCompose(e.image, convergeServices, 1)
		// svc0's command differs between the variants.
		return e.writeFile(fmt.Sprintf("converge%d.yml", variant), strings.Replace(compose, "echo ready", fmt.Sprintf("echo ready; : v%d", variant), 1))
	}
	files := []string{file(0), file(1)}
	e.upDetached(files[0], project, convergeServices, upDownTimeout(convergeServices))
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")
	floorName := benchName("benchconvfloor") + ".svc0.1"
	b.Cleanup(func() { _ = e.appt("-s", "instance", "stop", "-s", "KILL", floorName).Run() })
	floorClient := e.floorRecreate(floorName, hosts, nil)

	var ps, unchanged, changed, floor []float64
	current := 0
	timeout := upDownTimeout(convergeServices)
	for i := 0; i < b.N; i++ {
		d, out := e.runTimed(e.sstackCmd("ps", "-n", project, "--format", "json"), timeout)
		if err := benchCheckPsJSON(out, convergeServices); err != nil {
			b.Fatal(err)
		}
		ps = append(ps, ms(d))

		d, out = e.runTimed(e.sstackCmd("up", "-d", "-f", files[current], "-n", project, "--metrics-addr", ""), timeout)
		if strings.Contains(out, "Recreate") || strings.Count(out, "  Running\n") != convergeServices {
			b.Fatalf("up -d of the unchanged file: want %d Running lines and no Recreate:\n%s", convergeServices, out)
		}
		unchanged = append(unchanged, ms(d))

		current = 1 - current
		d, out = e.runTimed(e.sstackCmd("up", "-d", "-f", files[current], "-n", project, "--metrics-addr", ""), timeout)
		if strings.Count(out, "  Recreate\n") != 1 || !strings.Contains(out, project+".svc0.1  Started") {
			b.Fatalf("up -d with svc0 changed: want svc0 alone recreated and started:\n%s", out)
		}
		changed = append(changed, ms(d))

		t0 := time.Now()
		floorClient = e.floorRecreate(floorName, hosts, floorClient)
		floor = append(floor, ms(time.Since(t0)))
	}
	b.ReportMetric(0, "ns/op")
	reportVs(b, ps, "ps-ms", unchanged, "unchanged-up-ms", "unchanged/ps")
	reportVs(b, floor, "recreate-floor-ms", changed, "one-changed-up-ms", "one-changed/floor")
	b.Logf("ps %s; unchanged up -d %s; one changed %s; by hand %s", fmtSeries(ps), fmtSeries(unchanged), fmtSeries(changed), fmtSeries(floor))
}

// floorRecreate recreates instance name by hand, as sstack recreates a
// replica: stop the old process (SIGTERM through its exec client, which
// forwards it) and its instance, start the instance again and exec
// benchCmd until it prints "ready". It returns the new client.
func (e *benchEnv) floorRecreate(name, hosts string, client *os.Process) *os.Process {
	b := e.b
	if client != nil {
		_ = client.Signal(syscall.SIGTERM)
		_, _ = client.Wait()
		if out, err := e.appt("-s", "instance", "stop", "-s", "SIGTERM", "-t", "2", name).CombinedOutput(); err != nil {
			b.Fatalf("instance stop %s: %v: %s", name, err, out)
		}
	}
	if err := e.startInstance(name, hosts); err != nil {
		b.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	cmd := e.appt(execArgs(name, "sh", "-c", benchCmd)...)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		b.Fatal(err)
	}
	if line, err := bufio.NewReader(r).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("%s: got %q (%v), want ready", name, line, err)
	}
	return cmd.Process
}

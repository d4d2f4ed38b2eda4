package prepare

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sstack/compose"
	"sstack/internal/testutil"
	"sstack/singularity"
)

func TestCheckPorts(t *testing.T) {
	taken := testutil.HoldTCP(t, ":0").Port
	free, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()

	plan := &compose.Plan{Services: []compose.Service{
		{Name: "web", Network: compose.NetworkHost, Ports: []compose.Port{{Target: freePort, Protocol: "tcp"}, {Target: taken, Protocol: "tcp"}}},
		// The same port for a second service is reported once.
		{Name: "api", Network: compose.NetworkHost, Ports: []compose.Port{{Target: taken, Protocol: "tcp"}, {Target: freePort, Protocol: "udp"}}},
		// Published from the stack network: checked as it is published.
		{Name: "proxy", Network: compose.NetworkProject, Ports: []compose.Port{{Target: taken, Protocol: "tcp"}}},
	}}
	err = CheckPorts(plan)
	if err == nil {
		t.Fatal("a port in use is not reported")
	}
	want := `service "web": ports: port ` + strconv.Itoa(taken) + `/tcp is already in use on this host`
	if msg := err.Error(); !strings.HasPrefix(msg, want) || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "stop the program that holds it") {
		t.Errorf("got %q, want one problem starting %q and saying what to do", msg, want)
	}
	plan.Services[0].Ports = plan.Services[0].Ports[:1]
	plan.Services[1].Ports = plan.Services[1].Ports[1:]
	if err := CheckPorts(plan); err != nil {
		t.Errorf("free ports reported: %v", err)
	}
}

// Volumes are seeded through the runtime, for the instance they are made
// for: a runtime spread over nodes seeds on that instance's node. At up,
// a volume shared by the replicas is no instance's; one with
// {{.Task.Slot}} in its path is each replica's own (a replica added
// later seeds its own as it starts: actors' TestStartSeedsTheReplicasVolume).
func TestPlanSeedsThroughTheRuntime(t *testing.T) {
	state := t.TempDir()
	plan := &compose.Plan{Project: "p", StateDir: state, Services: []compose.Service{
		{Name: "shared", Image: "/i.sif", Replicas: 2, Mounts: []compose.Mount{
			{Kind: compose.MountVolume, Source: filepath.Join(state, "volumes", "p_a"), Target: "/a", Seed: true, Volume: "a"}}},
		{Name: "own", Image: "/i.sif", Replicas: 2, Mounts: []compose.Mount{
			{Kind: compose.MountVolume, Source: filepath.Join(state, "volumes", "p_b", "{{.Task.Slot}}"), Target: "/b", Seed: true, Volume: "b"},
			{Kind: compose.MountVolume, Source: filepath.Join(state, "volumes", "p_c"), Target: "/c", Volume: "c"}}},
	}}
	rt := &seedRuntime{}
	if _, err := Plan(context.Background(), plan, rt, func(*compose.Service) ([]compose.HostEntry, error) { return nil, nil }, plan.ServiceNames()); err != nil {
		t.Fatal(err)
	}
	want := []string{"seed  /a", "seed p.own.1 /b", "seed p.own.2 /b"}
	if got := rt.seeds; !slices.Equal(got, want) {
		t.Errorf("runtime calls %q, want %q (no seed for c: nocopy)", got, want)
	}
	for _, dir := range []string{"p_a", "p_b/1", "p_b/2"} {
		if _, err := os.Stat(filepath.Join(state, "volumes", dir, "seeded-from")); err != nil {
			t.Errorf("volume %s not seeded: %v", dir, err)
		}
	}
}

// seedRuntime records the volumes seeded; Plan calls nothing else.
type seedRuntime struct {
	singularity.Runtime
	seeds []string
}

func (r *seedRuntime) SeedVolume(ctx context.Context, spec singularity.SeedSpec) error {
	r.seeds = append(r.seeds, "seed "+spec.Instance+" "+spec.Path)
	return os.WriteFile(filepath.Join(spec.HostDir, "seeded-from"), []byte(spec.Image+":"+spec.Path), 0o644)
}

package actors

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sstack/compose"
	"sstack/singularity"
)

func TestCheckPorts(t *testing.T) {
	held, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
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
// {{.Task.Slot}} in its path is each replica's own.
func TestPrepareSeedsThroughTheRuntime(t *testing.T) {
	state := t.TempDir()
	plan := &compose.Plan{Project: "p", StateDir: state, Services: []compose.Service{
		{Name: "shared", Image: "/i.sif", Replicas: 2, Mounts: []compose.Mount{
			{Kind: compose.MountVolume, Source: filepath.Join(state, "volumes", "p_a"), Target: "/a", Seed: true, Volume: "a"}}},
		{Name: "own", Image: "/i.sif", Replicas: 2, Mounts: []compose.Mount{
			{Kind: compose.MountVolume, Source: filepath.Join(state, "volumes", "p_b", "{{.Task.Slot}}"), Target: "/b", Seed: true, Volume: "b"},
			{Kind: compose.MountVolume, Source: filepath.Join(state, "volumes", "p_c"), Target: "/c", Volume: "c"}}},
	}}
	rt := newFakeRuntime(nil)
	if _, err := Prepare(context.Background(), plan, rt, func(*compose.Service) ([]compose.HostEntry, error) { return nil, nil }, plan.ServiceNames()); err != nil {
		t.Fatal(err)
	}
	want := []string{"seed  /a", "seed p.own.1 /b", "seed p.own.2 /b"}
	if got := rt.Events(); !slices.Equal(got, want) {
		t.Errorf("runtime calls %q, want %q (no seed for c: nocopy)", got, want)
	}
	for _, dir := range []string{"p_a", "p_b/1", "p_b/2"} {
		if _, err := os.Stat(filepath.Join(state, "volumes", dir, "seeded-from")); err != nil {
			t.Errorf("volume %s not seeded: %v", dir, err)
		}
	}

	// A replica added later (scale) prepares its own when it starts,
	// before its instance: the same runtime call.
	rt = newFakeRuntime(nil)
	own := plan.Services[1].ForReplica(3)
	if err := startInstance(rt, singularity.InstanceSpec{Name: "p.own.3"}, own, true, "", nil); err != nil {
		t.Fatal(err)
	}
	if got, want := rt.Events(), []string{"seed p.own.3 /b", "start p.own.3"}; !slices.Equal(got, want) {
		t.Errorf("runtime calls %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(state, "volumes", "p_b", "3", "seeded-from")); err != nil || string(b) != "/i.sif:/b" {
		t.Errorf("replica 3's volume: %q %v", b, err)
	}

	// A seed that fails fails the start, saying which volume.
	failing := &failingSeed{newFakeRuntime(nil)}
	err := startInstance(failing, singularity.InstanceSpec{Name: "p.own.4"}, plan.Services[1].ForReplica(4), true, "", nil)
	if err == nil || !strings.Contains(err.Error(), `service "own": volume "b": filling it from the image at /b: no agent`) {
		t.Errorf("start with a failing seed: %v", err)
	}
	if got := failing.Events(); len(got) != 0 {
		t.Errorf("runtime calls after a failed seed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(state, "volumes", "p_b", "4")); !os.IsNotExist(err) {
		t.Errorf("a volume whose seed failed is left: %v", err)
	}
}

type failingSeed struct{ *fakeRuntime }

func (failingSeed) SeedVolume(context.Context, singularity.SeedSpec) error {
	return errors.New("no agent")
}

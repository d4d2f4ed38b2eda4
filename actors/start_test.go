package actors

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sstack/compose"
	"sstack/singularity"
)

// A replica with {{.Task.Slot}} in a volume's path, added later (scale),
// prepares its own volume when it starts, before its instance, through
// the runtime (on that instance's node).
func TestStartSeedsTheReplicasVolume(t *testing.T) {
	state := t.TempDir()
	plan := &compose.Plan{Project: "p", StateDir: state, Services: []compose.Service{
		{Name: "own", Image: "/i.sif", Replicas: 2, Mounts: []compose.Mount{
			{Kind: compose.MountVolume, Source: filepath.Join(state, "volumes", "p_b", "{{.Task.Slot}}"), Target: "/b", Seed: true, Volume: "b"}}},
	}}
	rt := newFakeRuntime(nil)
	own := plan.Services[0].ForReplica(3)
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
	err := startInstance(failing, singularity.InstanceSpec{Name: "p.own.4"}, plan.Services[0].ForReplica(4), true, "", nil)
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

package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sstack/compose"
)

func TestNoLimitsDropsAndWarns(t *testing.T) {
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "db", Resources: &compose.Resources{Memory: 1 << 30, PidsLimit: 9, Keys: []string{"mem_limit", "pids_limit"}}},
		{Name: "web"},
	}}
	var warn bytes.Buffer
	// With --no-limits the runtime is never asked (nil here).
	if err := checkLimits(context.Background(), plan, nil, true, linesTo(&warn)); err != nil {
		t.Fatal(err)
	}
	if plan.Services[0].Resources != nil {
		t.Error("limits kept despite --no-limits")
	}
	want := "WARN service \"db\": mem_limit, pids_limit: not applied (--no-limits): the service runs without cgroup limits\n"
	if warn.String() != want {
		t.Errorf("warnings %q, want %q", warn.String(), want)
	}
	// Nothing to check without limits: the runtime is not asked either.
	if err := checkLimits(context.Background(), &compose.Plan{Services: []compose.Service{{Name: "web"}}}, nil, false, linesTo(&warn)); err != nil {
		t.Error(err)
	}
}

// A host without block I/O weights drops blkio_config.weight with a
// warning and keeps the service's other limits.
func TestBlkioWeightDroppedWhereMissing(t *testing.T) {
	both := &compose.Service{Name: "db", Resources: &compose.Resources{Memory: 1 << 30, BlkioWeight: 300, Keys: []string{"mem_limit", "blkio_config.weight"}}}
	only := &compose.Service{Name: "web", Resources: &compose.Resources{BlkioWeight: 300, Keys: []string{"blkio_config.weight"}}}
	var warn bytes.Buffer
	dropBlkioWeight([]*compose.Service{both, only}, nil, linesTo(&warn))
	if warn.Len() != 0 || both.Resources.BlkioWeight != 300 {
		t.Fatalf("dropped where the host has weights: %q", warn.String())
	}
	dropBlkioWeight([]*compose.Service{both, only}, errors.New("no weights here"), linesTo(&warn))
	if r := both.Resources; r == nil || r.BlkioWeight != 0 || r.Memory != 1<<30 || len(r.Keys) != 1 || r.Keys[0] != "mem_limit" {
		t.Errorf("db's limits: %+v", r)
	}
	if only.Resources != nil {
		t.Errorf("web's limits: %+v, want none", only.Resources)
	}
	want := "WARN service \"db\": blkio_config.weight: not applied: no weights here; the service runs without it, as Docker discards it on such a host\n"
	if !strings.HasPrefix(warn.String(), want) || strings.Count(warn.String(), "WARN") != 2 {
		t.Errorf("warnings %q", warn.String())
	}
}

// What up runs is derived from the plan, not an edit of it: --scale and
// --no-limits change the copy only.
func TestCheckPlanLeavesThePlan(t *testing.T) {
	sif := filepath.Join(t.TempDir(), "db.sif")
	if err := os.WriteFile(sif, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	plan := &compose.Plan{Project: "p", StateDir: t.TempDir(), Services: []compose.Service{
		{Name: "db", Image: sif, Replicas: 1, StopSignal: "SIGTERM", Resources: &compose.Resources{Memory: 1 << 30, Keys: []string{"mem_limit"}}},
	}}
	var warn bytes.Buffer
	run, selected, err := checkPlan(context.Background(), plan, nil, nil, false, map[string]int{"db": 3}, true, linesTo(&warn))
	if err != nil {
		t.Fatal(err)
	}
	if got := run.Service("db"); got.Replicas != 3 || got.Resources != nil {
		t.Errorf("the run's db: %d replicas, limits %+v; want 3 and none", got.Replicas, got.Resources)
	}
	if db := plan.Service("db"); db.Replicas != 1 || db.Resources == nil || db.Resources.Memory != 1<<30 {
		t.Errorf("the plan was changed: %+v", db)
	}
	if len(selected) != 1 || selected[0] != "db" {
		t.Errorf("selected %v", selected)
	}
}

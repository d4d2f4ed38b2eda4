package engine

import (
	"bytes"
	"context"
	"errors"
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

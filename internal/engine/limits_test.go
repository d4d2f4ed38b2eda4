package engine

import (
	"bytes"
	"context"
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
	if err := checkLimits(context.Background(), plan, nil, true, &warn); err != nil {
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
	if err := checkLimits(context.Background(), &compose.Plan{Services: []compose.Service{{Name: "web"}}}, nil, false, &warn); err != nil {
		t.Error(err)
	}
}

package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
)

// ps's table shows each replica's own address last, when replicas have
// one (on the stack network), and no such column otherwise.
func TestPsTableAddressColumn(t *testing.T) {
	now := time.Now()
	rows := []api.Replica{
		{Name: "web-1", Service: "web", State: api.StateRunning, Since: now, Supervised: true, Address: "10.0.2.101"},
		{Name: "web-2", Service: "web", State: api.StateRunning, Since: now, Supervised: true, Address: "10.0.2.102"},
	}
	var out strings.Builder
	printPsTable(&out, rows, now)
	if !regexp.MustCompile(`^NAME +SERVICE +STATUS +SINCE +RESTARTS +PID +PORTS +ADDRESS\n`).MatchString(out.String()) ||
		!regexp.MustCompile(`(?m)^web-2 +web +running .* 10\.0\.2\.102$`).MatchString(out.String()) {
		t.Errorf("ps table:\n%s", out.String())
	}
	out.Reset()
	rows[0].Address, rows[1].Address = "", ""
	printPsTable(&out, rows, now)
	if strings.Contains(out.String(), "ADDRESS") {
		t.Errorf("an ADDRESS column with no address:\n%s", out.String())
	}
}

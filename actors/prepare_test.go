package actors

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"sstack/compose"
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

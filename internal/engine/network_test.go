package engine

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"sstack/compose"
	"sstack/singularity"
)

func TestChoosePort(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	p := compose.Port{Target: 80, Protocol: "tcp", Published: strconv.Itoa(taken), HostIP: "127.0.0.1"}
	if _, err := choosePort(p, 0); err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "publish another port") {
		t.Errorf("taken port: %v", err)
	}
	// A range skips the taken port.
	p.Published = strconv.Itoa(taken) + "-" + strconv.Itoa(taken+1)
	if pub, err := choosePort(p, 0); err != nil || pub.HostPort != taken+1 {
		t.Errorf("range: %+v, %v", pub, err)
	}
	// None written: one the kernel chooses, on all addresses.
	pub, err := choosePort(compose.Port{Target: 80, Protocol: "udp"}, 0)
	if err != nil || pub.HostPort == 0 || pub.HostIP != "0.0.0.0" || pub.Protocol != "udp" {
		t.Errorf("ephemeral: %+v, %v", pub, err)
	}
	if _, err := choosePort(compose.Port{Target: 80, Protocol: "sctp"}, 0); err == nil {
		t.Error("sctp published")
	}
}

func TestHostsPerNetwork(t *testing.T) {
	plan := &compose.Plan{Services: []compose.Service{
		{Name: "web", Network: compose.NetworkProject},
		{Name: "legacy", Network: compose.NetworkHost},
	}}
	entries := []compose.HostEntry{
		{Host: "web", IP: "127.0.0.1", Service: "web"},
		{Host: "legacy", IP: "127.0.0.1", Service: "legacy"},
		{Host: "host.docker.internal", IP: compose.HostGateway},
	}
	nw := &networks{of: map[string]singularity.Network{"web": {Holder: 42}}, gateway: "192.0.2.7"}
	got, err := nw.hosts(plan, &plan.Services[0], entries)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].IP != "127.0.0.1" || got[1].IP != "192.0.2.7" || got[2].IP != "192.0.2.7" {
		t.Errorf("on the stack network: %+v", got)
	}
	got, _ = nw.hosts(plan, &plan.Services[1], entries)
	if got[1].IP != "127.0.0.1" || got[2].IP != "127.0.0.1" {
		t.Errorf("on the host's network: %+v", got)
	}
	nw.gateway = ""
	if _, err := nw.hosts(plan, &plan.Services[0], entries); err == nil || !strings.Contains(err.Error(), "host-gateway") {
		t.Errorf("no host address: %v", err)
	}
}

func TestStackResolvConf(t *testing.T) {
	if _, ok := stackResolvConf("nameserver 10.1.2.3\nsearch example.org\n"); ok {
		t.Error("a resolver the namespace reaches is replaced")
	}
	got, ok := stackResolvConf("# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n")
	if !ok || !strings.Contains(got, "nameserver 10.0.2.3\n") || strings.Contains(got, "127.0.0.53") ||
		!strings.Contains(got, "options edns0 trust-ad") || !strings.Contains(got, "search example.org") {
		t.Errorf("resolver on loopback: %v\n%s", ok, got)
	}
}

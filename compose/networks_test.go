package compose

import (
	"slices"
	"strings"
	"testing"
)

func TestNetworks(t *testing.T) {
	p, _ := planOf(t, `services:
  proxy:
    image: redis:7
    networks: [front]
  api:
    image: redis:7
    networks:
      front:
      back:
        aliases: [backend]
        ipv4_address: 10.0.2.50
        mac_address: 02:42:ac:11:00:02
  db:
    image: redis:7
    ports: ["5432:5432"]
    networks:
      back:
        ipv4_address: 172.20.0.2
  plain:
    image: redis:7
  side:
    image: redis:7
    network_mode: service:api
networks:
  front:
    driver: overlay
    driver_opts: {com.docker.network.bridge.name: br-x}
  back:
    internal: true
    ipam:
      config: [{subnet: 172.20.0.0/24}]
`, nil)
	eq(t, p.Networks, []Network{{Name: "back", Internal: true}, {Name: "default"}, {Name: "front"}})
	eq(t, p.Service("proxy").Networks, []ServiceNetwork{{Name: "front"}})
	eq(t, p.Service("api").Networks, []ServiceNetwork{{Name: "back", Aliases: []string{"backend"}, IPv4Address: "10.0.2.50"}, {Name: "front"}})
	eq(t, p.Service("db").Networks, []ServiceNetwork{{Name: "back"}})
	eq(t, p.Service("plain").Networks, []ServiceNetwork{{Name: "default"}})
	if p.Service("side").Networks != nil || p.Service("side").NetworkShare != "api" {
		t.Errorf("side: networks %v, shares %q; want api's namespace", p.Service("side").Networks, p.Service("side").NetworkShare)
	}
	eq(t, p.Service("api").IPv4Address(), "10.0.2.50")
	var out strings.Builder
	if err := p.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"back": {aliases: ["backend"], ipv4_address: "10.0.2.50"}`, `network_share: "api"`, "networks:\n  \"back\": {internal: true}\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config lacks %q:\n%s", want, out.String())
		}
	}
	wantWarnings(t, p, []warning{
		{"", "networks.front.driver", `"overlay" is not used`},
		{"", "networks.front.driver_opts", "not used"},
		{"", "networks.back.ipam", "subnet 172.20.0.0/24 is not honoured"},
		{"db", "networks.back.ipv4_address", "172.20.0.2 is not honoured: outside 10.0.2.0/24"},
		{"api", "networks.back.mac_address", "not honoured"},
		{"db", "ports", "not reachable: the service is on internal networks only"},
	})
}

func TestNetworksRefused(t *testing.T) {
	for _, tc := range []struct{ name, compose, want string }{
		{"external", `services:
  web:
    image: redis:7
    networks: [outside]
networks:
  outside:
    external: true
`, "networks.outside.external: external networks cannot be joined"},
		{"same address", `services:
  a:
    image: redis:7
    networks: {n: {ipv4_address: 10.0.2.9}}
  b:
    image: redis:7
    networks: {n: {ipv4_address: 10.0.2.9}}
networks:
  n: {}
`, "10.0.2.9 is also a's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, map[string]string{"compose.yaml": tc.compose}, fixtureImages...)
			_, err := f.load(t, f.opts())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNetworkModes(t *testing.T) {
	p, _ := planOf(t, `services:
  web:
    image: redis:7
    ports: ["8080:80", "127.0.0.1::81/udp", "9000-9010:90"]
  alone:
    image: redis:7
    network_mode: none
    ports: ["7000:7000"]
  onhost:
    image: redis:7
    network_mode: host
    ports: ["6000:6001"]
  side:
    image: redis:7
    network_mode: service:web
  sidenone:
    image: redis:7
    network_mode: service:alone
  br:
    image: redis:7
    network_mode: bridge
`, nil)
	want := map[string]string{"web": NetworkProject, "alone": NetworkNone, "onhost": NetworkHost, "side": NetworkProject, "sidenone": NetworkNone, "br": NetworkProject}
	for name, mode := range want {
		if got := p.Service(name).Network; got != mode {
			t.Errorf("%s: network %q, want %q", name, got, mode)
		}
	}
	if got := p.Service("side").NetworkShare; got != "web" {
		t.Errorf("side shares %q's namespace, want web's", got)
	}
	if got := p.Service("web").NetworkShare + p.Service("sidenone").NetworkShare; got != "" {
		t.Errorf("web or sidenone share %q's namespace, want none", got)
	}
	if hasWarning(p, "web", "ports") {
		t.Errorf("ports on the project network warned about: %v", warningsOf(p, "web"))
	}
	wantWarnings(t, p, []warning{
		{"alone", "ports", "not published: with network_mode none"},
		{"onhost", "ports", "6000->6001 not remapped"},
		{"sidenone", "network_mode", "service:alone: alone has network_mode none"},
		{"br", "network_mode", "bridge: the service runs on the project's network"},
	})
	ports := p.Service("web").Ports
	if len(ports) != 3 {
		t.Fatalf("ports %+v", ports)
	}
	for i, want := range []struct {
		lo, hi  int
		addr    string
		written string
	}{{8080, 8080, "0.0.0.0", "8080:80/tcp"}, {0, 0, "127.0.0.1", "127.0.0.1::81/udp"}, {9000, 9010, "0.0.0.0", "9000-9010:90/tcp"}} {
		lo, hi := ports[i].HostPorts()
		if lo != want.lo || hi != want.hi || ports[i].HostAddr() != want.addr || ports[i].Written() != want.written {
			t.Errorf("port %d: %d-%d on %s, %q; want %+v", i, lo, hi, ports[i].HostAddr(), ports[i].Written(), want)
		}
	}
}

func TestNetworkHostForEveryService(t *testing.T) {
	const compose = `services:
  web:
    image: redis:7
    ports: ["8080:80"]
  alone:
    image: redis:7
    network_mode: none
`
	f := newFixture(t, map[string]string{"compose.yaml": compose}, fixtureImages...)
	o := f.opts()
	o.HostNetwork = true
	p := f.mustLoad(t, o)
	if p.Service("web").Network != NetworkHost || p.Service("alone").Network != NetworkNone {
		t.Errorf("--network host: web %q, alone %q", p.Service("web").Network, p.Service("alone").Network)
	}
	mustWarn(t, p, "web", "ports") // 8080->80 cannot be remapped on the host

	p, _ = planOf(t, "x-sstack:\n  network: host\n"+compose, nil)
	if p.Service("web").Network != NetworkHost {
		t.Errorf("x-sstack.network: host: web %q", p.Service("web").Network)
	}
}

func TestNetworkRefused(t *testing.T) {
	for _, tt := range []struct{ name, compose, want string }{
		{"host port twice", `services:
  a: {image: redis:7, ports: ["8080:80"]}
  b: {image: redis:7, ports: ["127.0.0.1:8080:81"]}
`, `service "b": ports: host port 127.0.0.1:8080/tcp is also published by service a`},
		{"container network", `services:
  a: {image: redis:7, network_mode: "container:x"}
`, `service "a": network_mode: "container:x": there are no containers outside the project`},
		{"x-sstack.network", "x-sstack: {network: bridge}\nservices:\n  a: {image: redis:7}\n", `x-sstack.network: bridge: give project`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, map[string]string{"compose.yaml": tt.compose}, fixtureImages...)
			_, err := f.load(t, f.opts())
			if err == nil || !slices.ContainsFunc(problems(err), func(s string) bool { return strings.Contains(s, tt.want) }) {
				t.Errorf("got %q, want a problem with %q", problems(err), tt.want)
			}
		})
	}
	// Different protocols or addresses do not clash.
	p, _ := planOf(t, `services:
  a: {image: redis:7, ports: ["127.0.0.1:8080:80", "8080:80/udp"]}
  b: {image: redis:7, ports: ["127.0.0.2:8080:80"]}
`, nil)
	if len(p.Service("a").Ports) != 2 {
		t.Errorf("ports %+v", p.Service("a").Ports)
	}
}

// warning is a warning that a plan must have: for service ("" for the
// whole file), about key, its reason holding text.
type warning struct{ service, key, text string }

// wantWarnings checks that p has every one of want.
func wantWarnings(t *testing.T, p *Plan, want []warning) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(warningsOf(p, w.service), func(x Warning) bool { return x.Key == w.key && strings.Contains(x.Reason, w.text) }) {
			t.Errorf("no %s warning %q for %q: %v", w.key, w.text, w.service, warningsOf(p, w.service))
		}
	}
}

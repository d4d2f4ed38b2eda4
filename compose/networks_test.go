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
	for _, w := range []struct{ service, key, text string }{
		{"", "networks.front.driver", `"overlay" is not used`},
		{"", "networks.front.driver_opts", "not used"},
		{"", "networks.back.ipam", "subnet 172.20.0.0/24 is not honoured"},
		{"db", "networks.back.ipv4_address", "172.20.0.2 is not honoured: outside 10.0.2.0/24"},
		{"api", "networks.back.mac_address", "not honoured"},
		{"db", "ports", "not reachable: the service is on internal networks only"},
	} {
		if !slices.ContainsFunc(warningsOf(p, w.service), func(x Warning) bool { return x.Key == w.key && strings.Contains(x.Reason, w.text) }) {
			t.Errorf("no %s warning %q for %q: %v", w.key, w.text, w.service, warningsOf(p, w.service))
		}
	}
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

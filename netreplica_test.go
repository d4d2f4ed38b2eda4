package main

// An address for every replica (issue 16): each replica on the stack
// network has a network namespace of its own on the stack's bridge, the
// stack's DNS server answers service names with every replica's
// address, and published ports go to replica 1. Root and unprivileged.

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Two services both listening on port 80 reach each other by name, each
// with an address of its own, which ps reports.
func TestReplicaNetSamePortByName(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, services(httpdService("a", "from-a"), httpdService("b", "from-b")))
		p.upDetached()
		try := func(from, url string) string {
			var out string
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
				if _, out, _ = p.sstack("exec", "-T", from, "wget", "-qO-", url); strings.Contains(out, "from-") {
					break
				}
			}
			return out
		}
		if out := try("a", "http://b/"); !strings.Contains(out, "from-b") {
			t.Errorf("a -> http://b/: %q", out)
		}
		if out := try("b", "http://a-1/"); !strings.Contains(out, "from-a") {
			t.Errorf("b -> http://a-1/: %q", out)
		}
		rows := p.psAddr()
		a, b := addressOf(t, rows, "a-1"), addressOf(t, rows, "b-1")
		if a == b || !strings.HasPrefix(a, "10.0.2.") || !strings.HasPrefix(b, "10.0.2.") {
			t.Errorf("addresses a-1 %q, b-1 %q: want two of the stack network", a, b)
		}
		out := p.must("exec", "-T", "a", "ip", "-4", "-o", "addr", "show", "eth0")
		contains(t, "a's eth0", out, a+"/24")
		p.downLeavesNothing()
	})
}

// addressOf is the address ps --format json gives replica name.
func addressOf(t *testing.T, rows []replicaRowAddr, name string) string {
	t.Helper()
	for _, r := range rows {
		if r.Name == name {
			return r.Address
		}
	}
	t.Fatalf("no replica %s in ps: %+v", name, rows)
	return ""
}

// replicaRowAddr is a row of ps --format json with the replica's address.
type replicaRowAddr struct {
	Name    string `json:"Name"`
	State   string `json:"State"`
	Address string `json:"Address"`
}

func (p *project) psAddr() []replicaRowAddr {
	p.t.Helper()
	var rows []replicaRowAddr
	out := p.must("ps", "--format", "json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		p.t.Fatalf("ps --format json: %v:\n%s", err, out)
	}
	return rows
}

// addrRE is an address of the stack network in a page or a lookup.
var addrRE = regexp.MustCompile(`10\.0\.2\.[0-9]+`)

// scale web=3 of a port-80 httpd whose page is its own address: a client
// resolving web gets the three addresses, in a different order over
// repeated lookups, and reaches all three; a published port reaches
// replica 1; after SIGKILL of the supervisor and down nothing is left.
func TestReplicaNetScaleRoundRobinPublished(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		port := freePort(t)
		p := newP(t, services(
			service("web", `["sh", "-c", "mkdir -p /tmp/www && ip -4 -o addr show eth0 > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www"]`, `ports: ["`+port+`:80"]`),
			service("client", `["sleep", "1000"]`),
		))
		p.upDetached()
		p.must("scale", "web=3")
		rows := p.waitPsAddr("three web replicas running with addresses", func(rows []replicaRowAddr) bool {
			n := 0
			for _, r := range rows {
				if strings.HasPrefix(r.Name, "web-") && r.State == "running" && r.Address != "" {
					n++
				}
			}
			return n == 3
		})
		var want []string
		for _, name := range []string{"web-1", "web-2", "web-3"} {
			want = append(want, addressOf(t, rows, name))
		}
		slices.Sort(want)
		if len(slices.Compact(slices.Clone(want))) != 3 {
			t.Fatalf("web's addresses %v: want three", want)
		}
		// Twenty lookups in one exec: each prints its answers after a mark.
		script := `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo MARK; nslookup -type=a web 2>&1; done`
		out := p.must("exec", "-T", "client", "sh", "-c", script)
		firsts := map[string]bool{}
		for _, answer := range strings.Split(out, "MARK")[1:] {
			var got []string
			for _, line := range strings.Split(answer, "\n") {
				// Not the server's lines (10.0.2.100, the bridge's).
				if a := addrRE.FindString(line); a != "" && a != "10.0.2.100" {
					got = append(got, a)
				}
			}
			if len(got) == 0 {
				t.Fatalf("a lookup of web answered nothing:\n%s", answer)
			}
			firsts[got[0]] = true
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("web resolved to %v, want %v", got, want)
			}
		}
		if len(firsts) < 2 {
			t.Errorf("twenty lookups of web all came first with %v: no round robin", firsts)
		}
		for _, a := range want {
			page := p.must("exec", "-T", "client", "wget", "-qO-", "http://"+a+"/")
			if !strings.Contains(page, "inet "+a+"/") {
				t.Errorf("http://%s/ answered %q", a, page)
			}
		}
		if got := get(t, "http://127.0.0.1:"+port+"/"); !strings.Contains(got, "inet "+addressOf(t, rows, "web-1")+"/") {
			t.Errorf("published port: %q, want web-1's page (%s)", got, addressOf(t, rows, "web-1"))
		}
		// Scaled down, the name follows.
		p.must("scale", "web=1")
		var last string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			_, last, _ = p.sstack("exec", "-T", "client", "nslookup", "-type=a", "web")
			got := slices.DeleteFunc(addrRE.FindAllString(last, -1), func(a string) bool { return a == "10.0.2.100" })
			if len(got) == 1 && got[0] == addressOf(t, rows, "web-1") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after scale web=1, web resolves to %v, want %s:\n%s", got, addressOf(t, rows, "web-1"), last)
			}
		}
		p.killSupervisor()
		if got := get(t, "http://127.0.0.1:"+port+"/"); !strings.Contains(got, "inet ") {
			t.Errorf("after SIGKILL: %q", got)
		}
		p.downLeavesNothing()
	})
}

// waitPsAddr polls ps until cond holds for its rows.
func (p *project) waitPsAddr(what string, cond func([]replicaRowAddr) bool) []replicaRowAddr {
	p.t.Helper()
	var rows []replicaRowAddr
	eventually(p.t, time.Minute, what, func() bool {
		rows = p.psAddr()
		return cond(rows)
	})
	return rows
}

// compose networks: the proxy (front) reaches the api (front and back),
// the api reaches the db (back), the proxy can neither resolve nor reach
// the db; back is internal, so the db has no way out while the api has.
func TestReplicaNetNetworksSplit(t *testing.T) {
	addr := requireHostAddr(t)
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		hostPort := hostServer(t, addr+":0", "host-server")
		p := newP(t, services(
			httpdService("proxy", "from-proxy", "networks: [front]"),
			httpdService("api", "from-api", "networks: [front, back]"),
			httpdService("db", "from-db", "networks: {back: {aliases: [database]}}"),
		)+`
networks:
  front: {}
  back:
    internal: true
`)
		p.upDetached()
		try := func(from, url string) string {
			// Not wget -T: this static busybox's wget crashes with it.
			_, out, _ := p.sstack("exec", "-T", from, "timeout", "5", "wget", "-qO-", url)
			return out
		}
		eventuallyGet := func(from, url, want string) {
			t.Helper()
			var out string
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
				if out = try(from, url); strings.Contains(out, want) {
					return
				}
			}
			t.Errorf("%s -> %s: %q, want %q", from, url, out, want)
		}
		eventuallyGet("proxy", "http://api/", "from-api")
		eventuallyGet("api", "http://database/", "from-db")
		// Names are answered per network, as Docker's: proxy gets no
		// address for db, api gets db's.
		rows := p.psAddr()
		_, out, _ := p.sstack("exec", "-T", "proxy", "nslookup", "-type=a", "db")
		if strings.Contains(out, addressOf(t, rows, "db-1")) {
			t.Errorf("proxy resolves db:\n%s", out)
		}
		if out := p.must("exec", "-T", "api", "nslookup", "-type=a", "db"); !strings.Contains(out, addressOf(t, rows, "db-1")) {
			t.Errorf("api does not resolve db:\n%s", out)
		}
		if out := try("proxy", "http://"+addressOf(t, rows, "db-1")+"/"); strings.Contains(out, "from-db") {
			t.Errorf("proxy reached db, on no network of proxy's: %q", out)
		}
		if out := try("db", "http://proxy/"); strings.Contains(out, "from-proxy") {
			t.Errorf("db reached proxy: %q", out)
		}
		if out := try("api", "http://"+addr+":"+hostPort+"/"); !strings.Contains(out, "host-server") {
			t.Errorf("api (front is not internal) cannot reach the host: %q", out)
		}
		if out := try("db", "http://"+addr+":"+hostPort+"/"); strings.Contains(out, "host-server") {
			t.Errorf("db, on an internal network only, reached the host: %q", out)
		}
		p.downLeavesNothing()
	})
}

package stacknet

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestAddressesStayAndRunOut(t *testing.T) {
	a := NewAddresses()
	first, err := a.Of("web/1")
	if err != nil || first != "10.0.2.101" {
		t.Fatalf("first address %q, %v; want 10.0.2.101", first, err)
	}
	second, _ := a.Of("web/2")
	if again, _ := a.Of("web/1"); again != first || second == first {
		t.Errorf("web/1 again %q (first %q), web/2 %q", again, first, second)
	}
	if err := a.Want("db/1", "10.0.2.102"); err == nil {
		t.Error("db/1 got web/2's address")
	}
	for _, bad := range []string{"10.0.2.100", "10.0.2.2", "10.0.3.7", "x"} {
		if err := a.Want("db/1", bad); err == nil {
			t.Errorf("Want %s: no error", bad)
		}
	}
	if err := a.Want("db/1", "10.0.2.50"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{first: true, second: true, "10.0.2.50": true}
	for i := 0; ; i++ {
		addr, err := a.Of("many/" + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
		if err != nil {
			if len(seen) != 250 {
				t.Errorf("ran out after %d addresses, want 250", len(seen))
			}
			if !strings.Contains(err.Error(), "no address left") {
				t.Errorf("error %q", err)
			}
			break
		}
		if seen[addr] || addr == "10.0.2.100" || addr == "10.0.2.3" || addr == "10.0.2.255" {
			t.Fatalf("address %s given twice or reserved", addr)
		}
		seen[addr] = true
	}
}

func query(name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	return q
}

func TestAnswers(t *testing.T) {
	names := Names{"web": {"10.0.2.101", "10.0.2.102", "10.0.2.103"}, "web-2": {"10.0.2.102"}}
	reverse := func(a []string) { slices.Reverse(a) }
	r := answer(names, nil, "10.0.2.9", query("Web", dns.TypeA), reverse)
	if r == nil || r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		t.Fatalf("web: %v", r)
	}
	var got []string
	for _, rr := range r.Answer {
		got = append(got, rr.(*dns.A).A.String())
	}
	if !slices.Equal(got, []string{"10.0.2.103", "10.0.2.102", "10.0.2.101"}) {
		t.Errorf("web: %v, want the shuffled order", got)
	}
	if names["web"][0] != "10.0.2.101" {
		t.Error("the table itself was shuffled")
	}
	if r := answer(names, nil, "10.0.2.9", query("web-2.", dns.TypeA), reverse); r == nil || len(r.Answer) != 1 {
		t.Errorf("web-2: %v", r)
	}
	if r := answer(names, nil, "10.0.2.9", query("web", dns.TypeAAAA), reverse); r == nil || len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Errorf("web AAAA: %v, want an empty answer", r)
	}
	if r := answer(names, nil, "10.0.2.9", query("example.org", dns.TypeA), reverse); r != nil {
		t.Errorf("a name outside the stack answered: %v", r)
	}
	// A service scaled to 0 is still the stack's: no address, no forward.
	if r := answer(Names{"web": nil}, nil, "10.0.2.9", query("web", dns.TypeA), reverse); r == nil || len(r.Answer) != 0 {
		t.Errorf("web with no replica: %v", r)
	}
}

// A name answers only the replicas that share a network with the asker.
func TestAnswersPerNetwork(t *testing.T) {
	names := Names{"web": {"10.0.2.101", "10.0.2.102"}, "db": {"10.0.2.103"}}
	nets := Networks{"10.0.2.101": {"front"}, "10.0.2.102": {"front", "back"}, "10.0.2.103": {"back"}}
	got := func(asker, name string) []string {
		r := answer(names, nets, asker, query(name, dns.TypeA), func([]string) {})
		if r == nil {
			t.Fatalf("%s asking %s: forwarded", asker, name)
		}
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.(*dns.A).A.String())
		}
		return out
	}
	if a := got("10.0.2.101", "db"); len(a) != 0 {
		t.Errorf("front-only 10.0.2.101 resolves db: %v", a)
	}
	if a := got("10.0.2.103", "web"); !slices.Equal(a, []string{"10.0.2.102"}) {
		t.Errorf("back-only db resolves web to %v, want the replica on back only", a)
	}
	if a := got("10.0.2.100", "web"); len(a) != 2 {
		t.Errorf("the stack's own address resolves web to %v, want both", a)
	}
}

func TestUpstreamsAndResolvConf(t *testing.T) {
	host := "nameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n"
	if got := upstreams(host); !slices.Equal(got, []string{"192.0.2.1:53", "10.0.2.3:53"}) {
		t.Errorf("upstreams %v", got)
	}
	conf := ResolvConf(host)
	for _, want := range []string{"nameserver 10.0.2.100\n", "search example.org\n", "options ndots:0\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "127.0.0.53") {
		t.Errorf("resolv.conf names the host's loopback resolver:\n%s", conf)
	}
}

package stacknet

// The stack's DNS server, as docker's embedded one (127.0.0.11) and
// podman's aardvark-dns: it runs in the stack's holder, listens on the
// stack's address (GuestAddr, port 53, UDP and TCP), answers the
// stack's names from a table sstack sends over holder.sock whenever a
// replica comes or goes (Names), and forwards every other question to the
// host's resolvers. Replicas' resolv.conf names it (ResolvConf).

import (
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Names is what the stack's DNS server answers: each name (lower case,
// no trailing dot) with the addresses of the replicas it stands for.
type Names map[string][]string

// Networks are the networks of each replica's address: a name answers
// only the addresses that share a network with the address asking (as
// Docker's DNS answers per network); an address not in it (the stack's
// own, a one-off run in the stack's namespace) is answered every one.
type Networks map[string][]string

// nameServer answers from the latest table.
type nameServer struct {
	mu        sync.RWMutex
	names     Names
	networks  Networks
	upstreams []string // host:port, tried in order
	shuffle   func([]string)
}

// ttl of the stack's answers: none, so that a client asks again and
// follows scale and restarts (docker's embedded DNS answers with 600,
// aardvark-dns with 60; nothing here is slower to ask).
const ttl = 0

func (s *nameServer) set(n Names, nets Networks) {
	s.mu.Lock()
	s.names, s.networks = n, nets
	s.mu.Unlock()
}

// reaches: from may be answered to's address.
func (nets Networks) reaches(from, to string) bool {
	mine, ok := nets[from]
	theirs, known := nets[to]
	return !ok || !known || shares(On{Networks: mine}, On{Networks: theirs})
}

// answer is the stack's reply to q from the address asker, or nil when
// the name is not the stack's (to be forwarded). A stack name gets the A
// records of the addresses asker shares a network with, in a new order
// each time (round robin, as docker's); any other type of question about
// it gets an empty answer, so that a client asking AAAA first does not
// wait on the host's resolvers.
func answer(names Names, nets Networks, asker string, q *dns.Msg, shuffle func([]string)) *dns.Msg {
	if len(q.Question) != 1 {
		return nil
	}
	question := q.Question[0]
	name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
	addrs, ok := names[name]
	if !ok || question.Qclass != dns.ClassINET {
		return nil
	}
	r := new(dns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	r.RecursionAvailable = true
	if question.Qtype != dns.TypeA && question.Qtype != dns.TypeANY {
		return r
	}
	addrs = slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return !nets.reaches(asker, a) })
	shuffle(addrs)
	for _, a := range addrs {
		ip := net.ParseIP(a).To4()
		if ip == nil {
			continue
		}
		r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip})
	}
	return r
}

func (s *nameServer) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	asker, _, _ := net.SplitHostPort(w.RemoteAddr().String())
	s.mu.RLock()
	r := answer(s.names, s.networks, asker, q, s.shuffle)
	s.mu.RUnlock()
	if r == nil {
		r = s.forward(q, w.LocalAddr().Network())
	}
	_ = w.WriteMsg(r)
}

// forward asks the host's resolvers (through slirp4netns), each in turn.
func (s *nameServer) forward(q *dns.Msg, network string) *dns.Msg {
	c := &dns.Client{Net: network, Timeout: 4 * time.Second}
	for _, up := range s.upstreams {
		r, _, err := c.Exchange(q, up)
		if err == nil && r != nil {
			if r.Truncated && network == "udp" {
				if tr, _, err := (&dns.Client{Net: "tcp", Timeout: 4 * time.Second}).Exchange(q, up); err == nil {
					r = tr
				}
			}
			return r
		}
	}
	r := new(dns.Msg)
	r.SetRcode(q, dns.RcodeServerFailure)
	return r
}

// upstreams are the host's resolvers the stack can reach: those of its
// resolv.conf, but loopback ones (unreachable from the namespace), then
// slirp4netns's forwarder, which asks the host's resolvers itself.
func upstreams(resolvConf string) []string {
	var out []string
	for _, line := range strings.Split(resolvConf, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip != nil && !ip.IsLoopback() && ip.To4() != nil {
				out = append(out, net.JoinHostPort(f[1], "53"))
			}
		}
	}
	return append(out, net.JoinHostPort(DNSAddr, "53"))
}

// serveNames starts the DNS server on the stack's address.
func serveNames() (*nameServer, error) {
	conf, _ := os.ReadFile("/etc/resolv.conf")
	s := &nameServer{names: Names{}, upstreams: upstreams(string(conf)),
		shuffle: func(a []string) { rand.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] }) }}
	addr := net.JoinHostPort(GuestAddr, "53")
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	go func() { _ = (&dns.Server{PacketConn: pc, Handler: s}).ActivateAndServe() }()
	go func() { _ = (&dns.Server{Listener: l, Handler: s}).ActivateAndServe() }()
	return s, nil
}

// ResolvConf is the resolv.conf of a replica with an address of its own:
// the stack's DNS server, with the host's search domains and options.
// ndots:0, as docker's: a bare service name is asked as it is first, not
// after every search domain.
func ResolvConf(host string) string {
	var keep []string
	for _, line := range strings.Split(host, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "search" || f[0] == "domain") {
			keep = append(keep, line)
		}
	}
	return "# generated by sstack: the stack's DNS server\nnameserver " + GuestAddr + "\n" + strings.Join(append(keep, "options ndots:0"), "\n") + "\n"
}

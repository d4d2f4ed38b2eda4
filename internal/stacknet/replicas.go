package stacknet

// Namespaces per replica inside the stack's (issue 16: up gives every
// replica on the stack network one, through internal/engine). The holder
// does this work itself, in process, because only it holds capabilities
// in the stack's user namespace: the `ip` and `unshare` binaries lose them
// on exec after nsenter (../shared/apptainer-facts.md, "Networks").
//
// Layout: routed, not bridged. Each replica's namespace has an eth0 with
// an address of slirp4netns's 10.0.2.0/24 and 10.0.2.2 as its gateway;
// its veth peer (vrN) stays in the stack's namespace, which routes between
// them (ip_forward) and answers their ARP for every address it routes
// (proxy_arp on each vrN and on tap0), so a replica talks to the others,
// to slirp4netns (outbound traffic, published ports: add_hostfwd's
// guest_addr) and to the stack's DNS server on 10.0.2.100 as if all were
// on one link, with no NAT rule anywhere. What a replica may reach is
// policy routing, no firewall: packets in from its vrN are routed by a
// table of its own (a rule "iif vrN"), which holds a route to each replica
// sharing one of its networks (compose networks:), a route out through
// slirp4netns unless all its networks are internal, and "prohibit" for
// everything else.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	holderSocket = "holder.sock"
	tapName      = "tap0"
	replicaArg   = "replica" // HolderArg TITLE replica: a replica's holder
	gatewayAddr  = "10.0.2.2"
	stackCIDR    = GuestAddr + "/24"
)

// holderRequest is one request to the holder's socket.
type holderRequest struct {
	Op    string   `json:"op"`              // "prepare", "add", "remove", "names"
	Name  string   `json:"name,omitempty"`  // a replica's name (add, remove)
	Addr  string   `json:"addr,omitempty"`  // its address, CIDR (add)
	Names Names    `json:"names,omitempty"` // the DNS server's table (names)
	Nets  Networks `json:"nets,omitempty"`  // and whom it answers (names)
	On    *On      `json:"on,omitempty"`    // the replica's networks (add)
}

// On says which networks a replica is on: it reaches the replicas that
// share one of them, and the outside (slirp4netns) when Outbound.
type On struct {
	Networks []string `json:"networks"`
	Outbound bool     `json:"outbound"`
}

// shares: the replicas a and b share a network.
func shares(a, b On) bool {
	for _, n := range a.Networks {
		if slices.Contains(b.Networks, n) {
			return true
		}
	}
	return false
}

type holderReply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// holderState is what the holder keeps of the replicas it holds.
type holderState struct {
	mu       sync.Mutex
	self     string
	next     int // for veth names
	replicas map[string]*replicaHolder
	dns      *nameServer // once prepared
}

type replicaHolder struct {
	cmd   *exec.Cmd
	keep  io.Closer // its stdin: closing it ends the replica's holder
	veth  string
	link  int // the veth's index
	addr  net.IP
	on    On
	table int // its routing table
}

const (
	tableBase    = 1000 // replica N's table: tableBase + N
	rulePriority = 100
)

// listenHolder makes holder.sock in the holder's working directory (the
// state directory) before the holder says it is ready, so that it is
// there when Start returns.
func listenHolder() (net.Listener, error) {
	_ = os.Remove(holderSocket)
	return net.Listen("unix", holderSocket)
}

// serveHolder answers requests on l until the holder ends.
func serveHolder(l net.Listener) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	st := &holderState{self: self, replicas: map[string]*replicaHolder{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var req holderRequest
				var reply holderReply
				if err := json.NewDecoder(c).Decode(&req); err != nil {
					reply.Error = err.Error()
				} else {
					pid, err := st.handle(req)
					reply.Pid = pid
					if err != nil {
						reply.Error = err.Error()
					}
				}
				_ = json.NewEncoder(c).Encode(reply)
			}()
		}
	}()
	return nil
}

func (st *holderState) handle(req holderRequest) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch req.Op {
	case "prepare":
		if st.dns != nil {
			return 0, nil
		}
		if err := prepareRouting(); err != nil {
			return 0, err
		}
		dns, err := serveNames()
		if err != nil {
			return 0, fmt.Errorf("the stack's DNS server: %w", err)
		}
		st.dns = dns
		return 0, nil
	case "names":
		if st.dns == nil {
			return 0, errors.New("no DNS server: the network is not prepared")
		}
		st.dns.set(req.Names, req.Nets)
		return 0, nil
	case "add":
		on := On{Networks: []string{"default"}, Outbound: true}
		if req.On != nil {
			on = *req.On
		}
		return st.add(req.Name, req.Addr, on)
	case "remove":
		r := st.replicas[req.Name]
		if r == nil {
			return 0, fmt.Errorf("no replica %q", req.Name)
		}
		delete(st.replicas, req.Name)
		st.drop(r)
		return 0, nil
	}
	return 0, fmt.Errorf("unknown request %q", req.Op)
}

// prepareRouting makes the stack's namespace the replicas' router:
// forwarding on, and tap0 answering slirp4netns's ARP for the replicas'
// addresses (measured: a forward from the host reaches a replica's
// address only then).
func prepareRouting() error {
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/" + tapName + "/proxy_arp"} {
		if err := os.WriteFile(f, []byte("1"), 0); err != nil {
			return err
		}
	}
	return nil
}

// add starts a replica's holder in a network namespace of its own (in the
// stack's user namespace), joins it to the stack's with a veth pair,
// gives its eth0 the address and the gateway, and routes it as its
// networks say (see the top of this file).
func (st *holderState) add(name, cidr string, on On) (int, error) {
	if st.replicas[name] != nil {
		return 0, fmt.Errorf("replica %q exists", name)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return 0, err
	}
	tap, err := netlink.LinkByName(tapName)
	if err != nil {
		return 0, err
	}
	project := strings.TrimSuffix(filepath.Base(mustGetwd()), " (deleted)")
	cmd := replicaHolderCmd(st.self, "["+project+"."+name+".network]")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	// The namespace exists once the child is cloned: the holder sets it
	// up itself (setUpNamespace) rather than wait for the child, a Go
	// program whose start takes tens of ms on a loaded machine, while
	// every replica's add waits on the one before it.
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	st.next++
	r := &replicaHolder{cmd: cmd, keep: in, veth: "vr" + strconv.Itoa(st.next), addr: addr.IP, on: on, table: tableBase + st.next}
	fail := func(err error) (int, error) {
		st.drop(r)
		return 0, fmt.Errorf("replica %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fail(fmt.Errorf("its namespace: %w", err))
	}
	defer ns.Close()
	if err := setUpNamespace(ns); err != nil {
		return fail(fmt.Errorf("its namespace: %w", err))
	}
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: r.veth, MTU: 65520},
		PeerName: "eth0", PeerMTU: 65520, PeerNamespace: netlink.NsPid(pid)}
	if err := netlink.LinkAdd(link); err != nil {
		return fail(fmt.Errorf("veth: %w", err))
	}
	r.link = link.Attrs().Index
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+r.veth+"/proxy_arp", []byte("1"), 0); err != nil {
		return fail(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail(err)
	}
	if err := configureEth0(ns, addr); err != nil {
		return fail(err)
	}
	// From the stack's namespace (the DNS server, slirp4netns's traffic
	// in through tap0), every replica is reached.
	if err := netlink.RouteAdd(hostRoute(r, 0)); err != nil {
		return fail(fmt.Errorf("route: %w", err))
	}
	// Its own table: the replicas it shares a network with (each of
	// them gets a route back to it in theirs), the outside or not, and
	// nothing else of the stack network.
	routes := []*netlink.Route{
		{Table: r.table, Type: unix.RTN_PROHIBIT, Dst: mustCIDR(stackCIDR)},
	}
	if on.Outbound {
		for _, a := range []string{gatewayAddr, DNSAddr} {
			routes = append(routes, &netlink.Route{Table: r.table, LinkIndex: tap.Attrs().Index, Dst: mustCIDR(a + "/32"), Scope: netlink.SCOPE_LINK})
		}
		routes = append(routes, &netlink.Route{Table: r.table, LinkIndex: tap.Attrs().Index, Dst: mustCIDR("0.0.0.0/0"), Gw: net.ParseIP(gatewayAddr)})
	} else {
		routes = append(routes, &netlink.Route{Table: r.table, Type: unix.RTN_PROHIBIT, Dst: mustCIDR("0.0.0.0/0")})
	}
	for _, other := range st.replicas {
		if shares(on, other.on) {
			routes = append(routes, hostRoute(other, r.table), hostRoute(r, other.table))
		}
	}
	for _, route := range routes {
		if err := netlink.RouteAdd(route); err != nil {
			return fail(fmt.Errorf("route %s: %w", route.Dst, err))
		}
	}
	if err := netlink.RuleAdd(replicaRule(r)); err != nil {
		return fail(fmt.Errorf("rule: %w", err))
	}
	st.replicas[name] = r
	return pid, nil
}

// replicaHolderCmd is the process that holds a replica's namespace
// (titled title in ps): it only lives until its stdin ends, since the
// stack's holder sets the namespace up. cat does that for a fraction of
// a millisecond of CPU, sstack re-executed (holdReplica, where there is
// no cat) for some 30 ms (Go's start and sstack's package initialisation;
// measured 0.3 s of CPU for the 10 replicas of an up on two cores). It
// keeps the signals the holder ignores ignored (SIGINT, SIGHUP, SIGQUIT,
// SIGPIPE: ignored dispositions survive exec), and its output goes to
// /dev/null.
func replicaHolderCmd(self, title string) *exec.Cmd {
	for _, cat := range []string{"/usr/bin/cat", "/bin/cat"} {
		if fi, err := os.Stat(cat); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return &exec.Cmd{Path: cat, Args: []string{title}}
		}
	}
	return exec.Command(self, HolderArg, title, replicaArg)
}

// hostRoute is the route to r's address through its veth, in table (0:
// the main table).
func hostRoute(r *replicaHolder, table int) *netlink.Route {
	return &netlink.Route{Table: table, LinkIndex: r.link, Dst: &net.IPNet{IP: r.addr.To4(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}
}

// replicaRule routes what comes in from r's veth by r's table.
func replicaRule(r *replicaHolder) *netlink.Rule {
	rule := netlink.NewRule()
	rule.IifName = r.veth
	rule.Table = r.table
	rule.Priority = rulePriority
	return rule
}

// drop ends r's holder and removes what add made of it in the stack's
// namespace: its veth (with it every route through it, in every table),
// its rule and its table.
func (st *holderState) drop(r *replicaHolder) {
	_ = r.keep.Close()
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
	if l, err := netlink.LinkByName(r.veth); err == nil {
		_ = netlink.LinkDel(l)
	}
	_ = netlink.RuleDel(replicaRule(r))
	routes, _ := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: r.table}, netlink.RT_FILTER_TABLE)
	for i := range routes {
		_ = netlink.RouteDel(&routes[i])
	}
}

// setUpNamespace does in a replica's namespace what Hold does in the
// stack's: loopback up, and ports below 1024 for everyone in it. The
// sysctl is written from a thread that has entered the namespace, since
// /proc/sys/net shows the namespace of the thread that opens it; the
// thread is given back to Go only once it is back in the holder's.
func setUpNamespace(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("entering it: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer home.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		err = os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0)
		if err != nil {
			err = fmt.Errorf("net.ipv4.ip_unprivileged_port_start: %w", err)
		}
		// A thread that cannot go home stays locked: Go ends it with
		// this goroutine.
		if netns.Set(home) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// configureEth0 gives the replica's eth0 its address and the gateway.
func configureEth0(ns netns.NsHandle, addr *netlink.Addr) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("entering its namespace: %w", err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := h.AddrAdd(eth, addr); err != nil {
		return err
	}
	if err := h.LinkSetUp(eth); err != nil {
		return err
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(gatewayAddr)}); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	return nil
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}

// holdReplica is a replica's holder where the host has no cat (see
// replicaHolderCmd): it only holds the namespace, which the stack's holder
// sets up (setUpNamespace), and lives until its stdin ends (the stack's
// holder closes it, or ends).
func holdReplica() {
	signalIgnoreAll()
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// holderCall sends one request to the holder's socket.
func (n *Net) holderCall(req holderRequest) (int, error) {
	var reply holderReply
	if err := n.request(holderSocket, 30*time.Second, req, &reply); err != nil {
		return 0, err
	}
	if reply.Error != "" {
		return 0, errors.New(reply.Error)
	}
	return reply.Pid, nil
}

// Prepare makes the stack's namespace ready for replicas of their own
// (Add) and starts the stack's DNS server on its address.
func (n *Net) Prepare() error {
	_, err := n.holderCall(holderRequest{Op: "prepare"})
	return err
}

// AddReplica gives a replica a network namespace of its own, with addr
// (an address of 10.0.2.0/24, without the prefix), on the networks on
// says, and returns how Apptainer clients enter it.
func (n *Net) AddReplica(name, addr string, on On) (Replica, error) {
	pid, err := n.holderCall(holderRequest{Op: "add", Name: name, Addr: addr + "/24", On: &on})
	if err != nil {
		return Replica{}, err
	}
	return Replica{Pid: pid, UserNS: n.rec.UserNS}, nil
}

// SetNames replaces the table the stack's DNS server answers from, and
// the networks of each address, which say whom it answers.
func (n *Net) SetNames(names Names, nets Networks) error {
	_, err := n.holderCall(holderRequest{Op: "names", Names: names, Nets: nets})
	return err
}

// RemoveReplica ends a replica's namespace (its veth goes with it).
func (n *Net) RemoveReplica(name string) error {
	_, err := n.holderCall(holderRequest{Op: "remove", Name: name})
	return err
}

// Replica is a replica's own namespace: entered like the stack's, through
// the process that holds it.
type Replica struct {
	Pid    int
	UserNS bool
}

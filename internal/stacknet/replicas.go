package stacknet

// Namespaces per replica inside the stack's (issue 16: up gives every
// replica on the stack network one, through internal/engine). The holder does this work
// itself, in process, because only it holds capabilities in the stack's
// user namespace: the `ip` and `unshare` binaries lose them on exec after
// nsenter (../shared/apptainer-facts.md, "Networks"). Layout, measured:
// slirp4netns's tap0 and one veth per replica on a bridge br0, which
// carries the stack's address 10.0.2.100; each replica gets an address of
// slirp4netns's 10.0.2.0/24 and its gateway 10.0.2.2, so slirp4netns
// routes its outbound traffic and forwards published ports to it
// (add_hostfwd's guest_addr) with no NAT rule anywhere.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	bridgeName   = "br0"
	tapName      = "tap0"
	replicaArg   = "replica" // HolderArg TITLE replica: a replica's holder
	gatewayAddr  = "10.0.2.2"
	stackCIDR    = GuestAddr + "/24"
)

// holderRequest is one request to the holder's socket.
type holderRequest struct {
	Op    string `json:"op"`              // "bridge", "add", "remove", "names"
	Name  string `json:"name,omitempty"`  // a replica's name (add, remove)
	Addr  string `json:"addr,omitempty"`  // its address, CIDR (add)
	Names Names  `json:"names,omitempty"` // the DNS server's table (names)
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
	dns      *nameServer // once the bridge is made
}

type replicaHolder struct {
	cmd  *exec.Cmd
	keep io.Closer // its stdin: closing it ends the replica's holder
	veth string
}

// serveHolder answers requests on holder.sock in the holder's working
// directory (the state directory) until the holder ends.
func serveHolder() error {
	_ = os.Remove(holderSocket)
	l, err := net.Listen("unix", holderSocket)
	if err != nil {
		return err
	}
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
	case "bridge":
		if st.dns != nil {
			return 0, nil
		}
		if err := makeBridge(); err != nil {
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
			return 0, errors.New("no DNS server: the bridge is not made")
		}
		st.dns.set(req.Names)
		return 0, nil
	case "add":
		return st.add(req.Name, req.Addr)
	case "remove":
		r := st.replicas[req.Name]
		if r == nil {
			return 0, fmt.Errorf("no replica %q", req.Name)
		}
		delete(st.replicas, req.Name)
		_ = r.keep.Close()
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		return 0, nil
	}
	return 0, fmt.Errorf("unknown request %q", req.Op)
}

// makeBridge puts tap0 on a new bridge br0 and moves the stack's address
// and default route to br0. The bridge gets tap0's MAC address, set, not
// inherited: a bridge left to choose takes its ports' lowest, which
// changes as replicas' veths come and go, and the replicas' ARP caches
// would then send the DNS server's packets nowhere.
func makeBridge() error {
	tap, err := netlink.LinkByName(tapName)
	if err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName, MTU: 65520}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if err := netlink.LinkSetHardwareAddr(br, tap.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("bridge's address: %w", err)
	}
	addr, err := netlink.ParseAddr(stackCIDR)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(tap, addr); err != nil {
		return fmt.Errorf("%s: %w", tapName, err)
	}
	if err := netlink.LinkSetMaster(tap, br); err != nil {
		return fmt.Errorf("%s on %s: %w", tapName, bridgeName, err)
	}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return err
	}
	return netlink.RouteReplace(&netlink.Route{LinkIndex: br.Attrs().Index, Gw: net.ParseIP(gatewayAddr)})
}

// add starts a replica's holder in a network namespace of its own (in the
// stack's user namespace), joins it to br0 with a veth pair, and gives
// its eth0 addr and the gateway.
func (st *holderState) add(name, cidr string) (int, error) {
	if st.replicas[name] != nil {
		return 0, fmt.Errorf("replica %q exists", name)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return 0, err
	}
	br, err := netlink.LinkByName(bridgeName)
	if err != nil {
		return 0, fmt.Errorf("no bridge: %w", err)
	}
	project := strings.TrimSuffix(filepath.Base(mustGetwd()), " (deleted)")
	cmd := exec.Command(st.self, HolderArg, "["+project+"."+name+".network]", replicaArg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Setpgid: true}
	if os.Getuid() != 0 {
		cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	fail := func(err error) (int, error) {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("replica %s: %w", name, err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		return fail(fmt.Errorf("its namespace: %s", strings.TrimSpace(line)))
	}
	pid := cmd.Process.Pid
	st.next++
	veth := "vr" + strconv.Itoa(st.next)
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: veth, MTU: 65520, MasterIndex: br.Attrs().Index},
		PeerName: "eth0", PeerMTU: 65520, PeerNamespace: netlink.NsPid(pid)}
	if err := netlink.LinkAdd(link); err != nil {
		return fail(fmt.Errorf("veth: %w", err))
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail(err)
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fail(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fail(fmt.Errorf("entering its namespace: %w", err))
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fail(err)
	}
	if err := h.AddrAdd(eth, addr); err != nil {
		return fail(err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fail(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(gatewayAddr)}); err != nil {
		return fail(fmt.Errorf("route: %w", err))
	}
	st.replicas[name] = &replicaHolder{cmd: cmd, keep: in, veth: veth}
	return pid, nil
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}

// holdReplica is a replica's holder: loopback up, low ports for everyone
// in its namespace, "ready", then it lives until its stdin ends (the
// stack's holder closes it, or ends).
func holdReplica() {
	if err := loopbackUp(); err != nil {
		fmt.Printf("loopback: %v\n", err)
		os.Exit(1)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0); err != nil {
		fmt.Printf("net.ipv4.ip_unprivileged_port_start: %v\n", err)
		os.Exit(1)
	}
	signalIgnoreAll()
	fmt.Println("ready")
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

// Bridge moves the stack's address onto a bridge, for replicas to join,
// and starts the stack's DNS server there.
func (n *Net) Bridge() error {
	_, err := n.holderCall(holderRequest{Op: "bridge"})
	return err
}

// AddReplica gives a replica a network namespace of its own on the
// bridge, with addr (an address of 10.0.2.0/24, without the prefix), and
// returns how Apptainer clients enter it.
func (n *Net) AddReplica(name, addr string) (Replica, error) {
	pid, err := n.holderCall(holderRequest{Op: "add", Name: name, Addr: addr + "/24"})
	if err != nil {
		return Replica{}, err
	}
	return Replica{Pid: pid, UserNS: n.rec.UserNS}, nil
}

// SetNames replaces the table the stack's DNS server answers from.
func (n *Net) SetNames(names Names) error {
	_, err := n.holderCall(holderRequest{Op: "names", Names: names})
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

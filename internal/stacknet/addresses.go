package stacknet

import (
	"fmt"
	"net"
	"net/netip"
)

// Addresses hands out the replicas' addresses on the stack network,
// slirp4netns's 10.0.2.0/24: every address but the network's own, the
// gateway (.2), the DNS forwarder (.3), the stack's (.100, tap0's,
// where the stack's DNS server listens) and broadcast; .101 upwards
// first, so the first replicas' addresses read as the stack's. A key (a
// replica, "SERVICE/N") keeps its address for the stack's life: a
// replica restarted or scaled away and back gets the one it had, and a
// port published to it stays its. Not safe for concurrent use.
type Addresses struct {
	of   map[string]netip.Addr
	used map[netip.Addr]string
}

// NewAddresses returns an empty allocation.
func NewAddresses() *Addresses {
	return &Addresses{of: map[string]netip.Addr{}, used: map[netip.Addr]string{}}
}

// reserved are the addresses of 10.0.2.0/24 no replica gets.
var reserved = map[byte]bool{0: true, 1: true, 2: true, 3: true, 100: true, 255: true}

// order is the order addresses are handed out in: .101-.254, then .4-.99.
func order() []netip.Addr {
	var out []netip.Addr
	for _, span := range [][2]int{{101, 254}, {1, 99}} {
		for i := span[0]; i <= span[1]; i++ {
			if !reserved[byte(i)] {
				out = append(out, netip.AddrFrom4([4]byte{10, 0, 2, byte(i)}))
			}
		}
	}
	return out
}

// Of is key's address, given it now if it has none.
func (a *Addresses) Of(key string) (string, error) {
	if addr, ok := a.of[key]; ok {
		return addr.String(), nil
	}
	for _, addr := range order() {
		if _, taken := a.used[addr]; !taken {
			a.of[key], a.used[addr] = addr, key
			return addr.String(), nil
		}
	}
	return "", fmt.Errorf("no address left on the stack network for %s: its %d addresses are all given to replicas", key, len(a.used))
}

// Want gives key the address addr (ipv4_address): an error when addr is
// not one of the network's replica addresses or another key has it.
func (a *Addresses) Want(key, addr string) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is4() || ip.As4()[0] != 10 || ip.As4()[1] != 0 || ip.As4()[2] != 2 || reserved[ip.As4()[3]] {
		return fmt.Errorf("%s is not an address replicas can have on the stack network (10.0.2.4 to 10.0.2.254, but 10.0.2.100)", addr)
	}
	if owner, taken := a.used[ip]; taken && owner != key {
		return fmt.Errorf("%s is already %s's", addr, owner)
	}
	if old, ok := a.of[key]; ok && old != ip {
		delete(a.used, old)
	}
	a.of[key], a.used[ip] = ip, key
	return nil
}

// HostAddress is the host's first IPv4 address other than loopback: the
// stack network reaches the host there (its 127.0.0.1 is slirp4netns's
// own), as podman's host.containers.internal does.
func HostAddress() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	return ""
}

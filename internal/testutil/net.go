package testutil

import (
	"net"
	"testing"
)

// HostAddr is an IPv4 address of this host other than loopback, or "".
func HostAddr() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	return ""
}

// HoldTCP listens on addr (host:0 for a free port) until the end of the
// test, so that the port is taken, and returns the listener's address.
func HoldTCP(t testing.TB, addr string) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr)
}

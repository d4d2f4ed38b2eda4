package testutil

import (
	"net"
	"testing"
)

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

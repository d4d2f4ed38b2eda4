package singularity

import (
	"testing"
)

// The terminal passes lines as written: no "\r\n" for "\n".
func TestOpenPty(t *testing.T) {
	master, slave, err := openPty()
	if err != nil {
		t.Skip(err) // no /dev/ptmx here
	}
	defer master.Close()
	if _, err := slave.Write([]byte("line\n")); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	buf := make([]byte, 16)
	n, _ := master.Read(buf)
	if got := string(buf[:n]); got != "line\n" {
		t.Errorf("read %q, want %q", got, "line\n")
	}
}

package stacknet

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
)

func TestMain(m *testing.M) {
	if len(os.Args) >= 2 && os.Args[1] == HolderArg {
		Hold()
	}
	os.Exit(m.Run())
}

func TestStartTimeNamesOneProcess(t *testing.T) {
	me := procOf(os.Getpid())
	if me.Start == 0 || !me.alive() {
		t.Fatalf("own process %+v not alive", me)
	}
	if (proc{Pid: os.Getpid(), Start: me.Start + 1}).alive() {
		t.Error("a recycled pid (another start time) counts as alive")
	}
}

// A real namespace: its own network, loopback up, a forward from the
// host reaching a listener inside, and nothing left after Close.
func TestNamespaceForwardAndClose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts slirp4netns")
	}
	if lack := Missing(); lack != "" {
		testimg.Unavailable(t, "stack network: %s", lack)
	}
	dir := t.TempDir()
	n, err := Start(context.Background(), dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	holder := n.Network().Holder
	mine, _ := os.Readlink("/proc/self/ns/net")
	theirs, err := os.Readlink("/proc/" + strconv.Itoa(holder) + "/ns/net")
	if err != nil || theirs == mine {
		t.Fatalf("holder's network namespace %q (%v), ours %q", theirs, err, mine)
	}
	// A listener on port 80 inside (below 1024, as any user), through the
	// same nsenter the instances use.
	argv := []string{"nsenter", "--target", strconv.Itoa(holder), "--net"}
	if n.Network().UserNS {
		argv = append(argv, "--user", "--preserve-credentials")
	}
	server := exec.Command(argv[0], append(argv[1:], "busybox", "nc", "-l", "-p", "80", "-e", "echo", "inside")...)
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer server.Process.Kill()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := n.Publish(Published{Service: "s", HostIP: "127.0.0.1", HostPort: port, Target: 80, Protocol: "tcp"}); err != nil {
		t.Fatal(err)
	}
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !strings.Contains(got, "inside"); time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			b := make([]byte, 64)
			k, _ := c.Read(b)
			got = string(b[:k])
			c.Close()
		}
	}
	if !strings.Contains(got, "inside") {
		t.Fatalf("through the forward: %q", got)
	}
	loaded, err := Load(dir)
	if err != nil || len(loaded.Ports()) != 1 || loaded.Ports()[0].HostPort != port {
		t.Fatalf("record: %+v, %v", loaded, err)
	}
	n.Close()
	if n.rec.Holder.alive() || n.rec.Forwarder.alive() {
		t.Error("holder or forwarder still running after Close")
	}
	if _, err := os.Stat(dir + "/" + recordFile); !os.IsNotExist(err) {
		t.Errorf("record left: %v", err)
	}
}

// The forwarder ends with the holder, however the holder ends (its
// --exit-fd is a pipe only the holder writes to).
func TestForwarderEndsWithHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts slirp4netns")
	}
	if lack := Missing(); lack != "" {
		testimg.Unavailable(t, "stack network: %s", lack)
	}
	n, err := Start(context.Background(), t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !n.rec.Forwarder.alive() {
		t.Fatal("forwarder not running")
	}
	n.rec.Holder.kill()
	for deadline := time.Now().Add(10 * time.Second); n.rec.Forwarder.alive() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n.rec.Forwarder.alive() {
		t.Error("forwarder still running after its holder ended")
	}
}

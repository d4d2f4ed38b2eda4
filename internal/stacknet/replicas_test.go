package stacknet

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
	"sstack/internal/testutil"
)

// asTestUser runs this test again as an unprivileged user (made with
// useradd, as the integration tests do) when it runs as root, and fails
// if that run fails: the replica namespaces must work for both.
func asTestUser(t *testing.T) {
	if os.Geteuid() != 0 || os.Getenv("STACKNET_AS_USER") != "" {
		return
	}
	const name = "sstack-it"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v: %s", err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "stacknet-user-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "stacknet.test")
	self, _ := os.Executable()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir, "STACKNET_AS_USER=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Errorf("as %s: %v\n%s", name, err, out)
	}
}

// Replicas with namespaces of their own, routed by the stack's: each
// serves port 80, they reach each other by address, a published port
// reaches one of them, outbound traffic leaves through slirp4netns, and a
// removed replica's holder is gone. As root and as an unprivileged user.
func TestReplicaNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("starts slirp4netns")
	}
	if lack := Missing(); lack != "" {
		testimg.Unavailable(t, "stack network: %s", lack)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		testimg.Unavailable(t, "busybox: %v", err)
	}
	asTestUser(t)
	dir := t.TempDir()
	n, err := Start(context.Background(), dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Prepare(); err != nil {
		t.Fatal(err)
	}
	enter := func(r Replica, args ...string) *exec.Cmd {
		argv := []string{"nsenter", "--target", strconv.Itoa(r.Pid), "--net"}
		if r.UserNS {
			argv = append(argv, "--user", "--preserve-credentials")
		}
		return exec.Command(argv[0], append(argv[1:], args...)...)
	}
	replicas := map[string]Replica{}
	// a and b share the default network; c is alone on an internal one.
	on := map[string]On{"a": {Networks: []string{"default"}, Outbound: true}, "b": {Networks: []string{"default", "back"}, Outbound: true}, "c": {Networks: []string{"other"}}}
	for i, name := range []string{"a", "b", "c"} {
		r, err := n.AddReplica(name, "10.0.2."+strconv.Itoa(101+i), on[name])
		if err != nil {
			t.Fatal(err)
		}
		replicas[name] = r
		www := filepath.Join(dir, "www-"+name)
		if err := os.MkdirAll(www, 0o755); err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, filepath.Join(www, "index.html"), "replica-"+name+"\n", 0o644)
		httpd := enter(r, busybox, "httpd", "-f", "-p", "80", "-h", www)
		if err := httpd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = httpd.Process.Kill(); _ = httpd.Wait() }()
	}
	fetch := func(cmd *exec.Cmd) string {
		cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
		out, _ := cmd.Output()
		return string(out)
	}
	var got string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(got, "replica-b") && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = fetch(enter(replicas["a"], busybox, "nc", "-w", "2", "10.0.2.102", "80"))
	}
	if !strings.Contains(got, "replica-b") {
		t.Errorf("a -> 10.0.2.102:80: %q", got)
	}
	// The DNS server on the stack's address answers what it is told.
	if err := n.SetNames(Names{"web": {"10.0.2.102"}}, nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := enter(replicas["a"], busybox, "nslookup", "-type=a", "web", GuestAddr).CombinedOutput(); !strings.Contains(string(out), "10.0.2.102") {
		t.Errorf("a: nslookup web: %s", out)
	}
	// No network shared: c and a do not reach each other.
	if got := fetch(enter(replicas["a"], busybox, "nc", "-w", "1", "10.0.2.103", "80")); strings.Contains(got, "replica-c") {
		t.Errorf("a reached c: %q", got)
	}
	if got := fetch(enter(replicas["c"], busybox, "nc", "-w", "1", "10.0.2.102", "80")); strings.Contains(got, "replica-b") {
		t.Errorf("c reached b: %q", got)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := n.Publish(Published{Service: "b", HostIP: "127.0.0.1", HostPort: port, Target: 80, Protocol: "tcp", GuestAddr: "10.0.2.102"}); err != nil {
		t.Fatal(err)
	}
	if got := fetch(exec.Command(busybox, "nc", "-w", "2", "127.0.0.1", strconv.Itoa(port))); !strings.Contains(got, "replica-b") {
		t.Errorf("published port to b: %q", got)
	}
	// Outbound: a server of the host on an address other than loopback.
	if addr := HostAddress(); addr != "" {
		out, err := net.Listen("tcp", addr+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		go func() {
			if c, err := out.Accept(); err == nil {
				_, _ = c.Write([]byte("host-says-hi\n"))
				c.Close()
			}
		}()
		_, p, _ := net.SplitHostPort(out.Addr().String())
		if got := fetch(enter(replicas["c"], busybox, "nc", "-w", "1", addr, p)); strings.Contains(got, "host-says-hi") {
			t.Errorf("c, on an internal network only, reached %s:%s", addr, p)
		}
		if got := fetch(enter(replicas["a"], busybox, "nc", "-w", "2", addr, p)); !strings.Contains(got, "host-says-hi") {
			t.Errorf("outbound from a to %s:%s: %q", addr, p, got)
		}
	}
	a := procOf(replicas["a"].Pid)
	if err := n.RemoveReplica("a"); err != nil {
		t.Fatal(err)
	}
	if a.alive() {
		t.Error("a's holder still runs after RemoveReplica")
	}
	b := procOf(replicas["b"].Pid)
	n.Close()
	for deadline := time.Now().Add(5 * time.Second); b.alive() && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	if b.alive() {
		t.Error("b's holder still runs after the stack's holder ended")
	}
}

package main

// The stack network (issue 15): every stack in a network namespace of its
// own, ports published as docker compose reads them, for root and for an
// unprivileged user alike.

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sstack/internal/stacknet"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort is a TCP port nobody listens on now.
func freePort(t *testing.T) string {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	return port
}

// get fetches url, retrying for a while (a service may still be starting).
func get(t *testing.T, url string) string {
	t.Helper()
	var last error
	client := &http.Client{Timeout: 3 * time.Second}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		last = err
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}

// unreachable: nothing answers at addr (a connection is refused or
// times out).
func unreachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// requireHostAddr is stacknet.HostAddress; it skips the test on a host that has
// none.
func requireHostAddr(t *testing.T) string {
	t.Helper()
	addr := stacknet.HostAddress()
	if addr == "" {
		t.Skip("this host has no address but loopback")
	}
	return addr
}

// httpd is a compose file of one service that serves text on port 80
// inside (below 1024, for any user), with the keys given.
func httpd(name, text string, keys ...string) string {
	return services(httpdService(name, text, keys...))
}

// httpdService is httpd's service, for services.
func httpdService(name, text string, keys ...string) string {
	return httpdOn(name, "80", text, keys...)
}

// httpdOn is a service that serves text on addr (port, or host:port)
// inside, for services.
func httpdOn(name, addr, text string, keys ...string) string {
	cmd := `["sh", "-c", "mkdir -p /tmp/www && echo ` + text + ` > /tmp/www/index.html && exec httpd -f -p ` + addr + ` -h /tmp/www"]`
	return service(name, cmd, keys...)
}

// hostServer serves text over HTTP on addr (host:0 for a free port) of
// the host until the end of the test, and returns its port.
func hostServer(t *testing.T, addr, text string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, text) }))
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// Two stacks at once, each with a service on container port 80, published
// on two host ports: both answer, each with its own page; down leaves no
// holder or forwarder.
func TestNetworkTwoStacksOnOnePort(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		portA, portB := freePort(t), freePort(t)
		a := newP(t, httpd("web", "stack-a", `ports: ["`+portA+`:80"]`))
		b := newP(t, httpd("web", "stack-b", `ports: ["`+portB+`:80"]`))
		a.upDetached()
		b.upDetached()
		if got := get(t, "http://127.0.0.1:"+portA+"/"); !strings.Contains(got, "stack-a") {
			t.Errorf("stack a's port: %q", got)
		}
		if got := get(t, "http://127.0.0.1:"+portB+"/"); !strings.Contains(got, "stack-b") {
			t.Errorf("stack b's port: %q", got)
		}
		// Nothing of a stack listens on the host but what it publishes.
		if !unreachable("127.0.0.1:80") && os.Geteuid() != 0 {
			t.Error("port 80 answers on the host")
		}
		ps := a.must("ps")
		contains(t, "ps", ps, "PORTS", "0.0.0.0:"+portA+"->80/tcp")
		a.downLeavesNothing()
		b.downLeavesNothing()
	})
}

// host_ip binds a published port on that address only; a port without a
// host port gets one chosen, which `port` and ps report; exec and a
// healthcheck run inside the namespace (both reach 127.0.0.1:80 there).
func TestNetworkHostIPEphemeralExecHealth(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		port := freePort(t)
		p := newP(t, httpd("web", "inside", `ports: ["127.0.0.1:`+port+`:80"]`,
			`healthcheck: {test: ["CMD", "wget", "-qO-", "http://127.0.0.1:80/"], interval: 1s, retries: 30}`)+`
  other:
    image: busybox
    command: ["sh", "-c", "mkdir -p /tmp/w && echo chosen > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
    ports: ["8080"]
`)
		p.upDetached("--wait")
		if got := get(t, "http://127.0.0.1:"+port+"/"); !strings.Contains(got, "inside") {
			t.Errorf("127.0.0.1:%s: %q", port, got)
		}
		if addr := stacknet.HostAddress(); addr != "" && !unreachable(addr+":"+port) {
			t.Errorf("published on 127.0.0.1 only, but %s:%s answers", addr, port)
		}
		if got := strings.TrimSpace(p.must("port", "web", "80")); got != "127.0.0.1:"+port {
			t.Errorf("port web 80 = %q, want 127.0.0.1:%s", got, port)
		}
		chosen := strings.TrimSpace(p.must("port", "other", "8080"))
		_, eph, _ := net.SplitHostPort(chosen)
		if !strings.HasPrefix(chosen, "0.0.0.0:") || eph == "8080" || eph == "" {
			t.Fatalf("port other 8080 = %q, want 0.0.0.0:<a port chosen>", chosen)
		}
		if got := get(t, "http://127.0.0.1:"+eph+"/"); !strings.Contains(got, "chosen") {
			t.Errorf("chosen port %s: %q", eph, got)
		}
		contains(t, "ps", p.must("ps"), "running (healthy)", "127.0.0.1:"+port+"->80/tcp", chosen+"->8080/tcp")
		// In the replica's own namespace (issue 16), at its address.
		out := p.must("exec", "-T", "web", "sh", "-c", "wget -qO- http://127.0.0.1:80/ && ip -4 addr show eth0")
		contains(t, "exec", out, "inside", "inet 10.0.2.10")
		if code, _, _ := p.sstack("port", "web", "81"); code != 1 {
			t.Errorf("port of an unpublished port: exit code %d, want 1", code)
		}
		p.downLeavesNothing()
	})
}

// network_mode: none has loopback only; host is the host's network (the
// service listens on a host port itself); service:NAME shares NAME's.
func TestNetworkModes(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		hostPort := freePort(t)
		p := newP(t, services(
			service("alone", `["sh", "-c", "ip -o link | cut -d: -f2; sleep 1000"]`, "network_mode: none"),
			httpdOn("onhost", "127.0.0.1:"+hostPort, "on-host", "network_mode: host"),
			httpdService("web", "web"),
			service("sidecar", `["sleep", "1000"]`, "network_mode: service:web"),
		))
		p.upDetached()
		if got := get(t, "http://127.0.0.1:"+hostPort+"/"); !strings.Contains(got, "on-host") {
			t.Errorf("network_mode host: %q", got)
		}
		logs := p.waitLogs("alone-1 | ")
		if l := lines(logs, "alone-1"); len(l) != 1 || strings.TrimSpace(l[0]) != "lo" {
			t.Errorf("network_mode none: interfaces %q, want lo only", l)
		}
		if out := p.must("exec", "-T", "sidecar", "wget", "-qO-", "http://127.0.0.1:80/"); !strings.Contains(out, "web") {
			t.Errorf("service:web does not share web's network: %q", out)
		}
		contains(t, "config", p.must("config"), "network_mode: none", "network_mode: host", "network_mode: project")
		p.downLeavesNothing()
	})
}

// A service of one stack cannot reach another stack's ports except what
// that stack publishes; outbound connections reach the host's own
// addresses (host-gateway), never its loopback.
func TestNetworkIsolationAndOutbound(t *testing.T) {
	addr := requireHostAddr(t)
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		// A server of the host, on its own address and on loopback.
		hostPort := hostServer(t, addr+":0", "host-server")
		loopPort := hostServer(t, "127.0.0.1:0", "loopback")

		published := freePort(t)
		b := newP(t, services(
			httpdOn("secret", "9999", "unpublished"),
			httpdService("open", "published", `ports: ["`+published+`:80"]`),
		))
		b.upDetached()
		get(t, "http://127.0.0.1:"+published+"/")
		a := newP(t, oneService("client", `["sleep", "1000"]`, `extra_hosts: ["host.docker.internal:host-gateway"]`))
		a.upDetached()
		// nc, not busybox's wget: Debian's static busybox wget crashed
		// (SIGSEGV) here connecting to the address /etc/hosts gives
		// host.docker.internal, even by number (its reverse lookup?).
		try := func(host, port string) string {
			_, out, _ := a.sstack("exec", "-T", "client", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 `+host+" "+port)
			return out
		}
		if out := try("host.docker.internal", hostPort); !strings.Contains(out, "host-server") {
			t.Errorf("host-gateway does not reach the host's server: %q", out)
		}
		if out := try("host.docker.internal", published); !strings.Contains(out, "published") {
			t.Errorf("another stack's published port: %q", out)
		}
		// Names outside resolve inside as on the host (where the host can).
		if addrs, err := net.LookupHost("deb.debian.org"); err == nil && len(addrs) > 0 {
			_, out, _ := a.sstack("exec", "-T", "client", "nslookup", "deb.debian.org")
			if !strings.Contains(out, addrs[0]) {
				t.Errorf("deb.debian.org resolves to %v on the host, inside:\n%s", addrs, out)
			}
		}
		for _, hp := range [][2]string{{"127.0.0.1", "9999"}, {addr, "9999"}, {"10.0.2.2", loopPort}, {"127.0.0.1", loopPort}} {
			if out := try(hp[0], hp[1]); strings.Contains(out, "unpublished") || strings.Contains(out, "loopback") {
				t.Errorf("%s:%s reached from another stack: %q", hp[0], hp[1], out)
			}
		}
		a.downLeavesNothing()
		b.downLeavesNothing()
	})
}

// SIGKILL of the supervisor leaves the instances and their network
// running (as Docker's containers outlive a killed client); down then
// ends all of it.
func TestNetworkKilledSupervisorThenDown(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		port := freePort(t)
		p := newP(t, httpd("web", "still-here", `ports: ["`+port+`:80"]`))
		p.upDetached()
		get(t, "http://127.0.0.1:"+port+"/")
		p.killSupervisor()
		if got := get(t, "http://127.0.0.1:"+port+"/"); !strings.Contains(got, "still-here") {
			t.Errorf("after SIGKILL: %q", got)
		}
		// up again is refused (the instances run on), and the network
		// they still use, left by the killed supervisor, is not touched.
		code, _, errs := p.sstack("up", "-d")
		if code == 0 || !strings.Contains(errs, "already running") {
			t.Errorf("up -d beside the killed supervisor's instances: exit code %d\n%s", code, errs)
		}
		if got := get(t, "http://127.0.0.1:"+port+"/"); !strings.Contains(got, "still-here") {
			t.Errorf("after the refused up: %q", got)
		}
		p.downLeavesNothing()
		if !unreachable("127.0.0.1:" + port) {
			t.Error("the published port still answers after down")
		}
	})
}

// A host that lacks what the stack network needs is told before anything
// starts, with the remedy and the way to run on the host's network; with
// --network host the same stack runs.
func TestNetworkMissingForwarder(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	for _, tool := range []string{"apptainer", "nsenter"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Skip(err)
		}
		if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	p := newProject(t, oneService("web", `["echo", "ran"]`))
	for i, kv := range p.env {
		if strings.HasPrefix(kv, "PATH=") {
			p.env[i] = "PATH=" + bin
		}
	}
	out, _ := p.refusedBeforeStart(1, nil, "slirp4netns is not on PATH", "install the slirp4netns package", "sstack up --network host")
	if strings.Contains(out, "Creating") {
		t.Errorf("something started:\n%s", out)
	}
	code, out, _ := p.run("--network", "host")
	if code != 0 || !strings.Contains(out, "ran") {
		t.Errorf("--network host: exit code %d, output %q", code, out)
	}
}

// A real compose file (awesome-compose's nginx-golang-postgres: a proxy in
// front of a backend in front of a database) with busybox stand-ins for
// its images, in an override file, as an unprivileged user: the proxy
// listens on port 80 inside and is reached through its published port.
func TestNetworkCorpusProxy(t *testing.T) {
	t.Parallel()
	corpus := filepath.Join("..", "shared", "corpus", "awesome-compose", "nginx-golang-postgres")
	original, err := os.ReadFile(filepath.Join(corpus, "compose.yaml"))
	if err != nil {
		t.Skip(err)
	}
	p := newUserProject(t, string(original))
	p.writeSecret("db/password.txt", "corpus-secret\n")
	p.write("proxy/nginx.conf", "# the stand-in does not read it\n")
	cgi := p.write("proxy/www/cgi-bin/index.cgi", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"proxied: $(wget -qO- http://backend:8000/)\"\n")
	if err := os.Chmod(cgi, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	override := p.write("override.yaml", p.withImages(`
services:
  backend:
    build: !reset null
    image: busybox
    command: ["sh", "-c", "mkdir -p /tmp/www && wget -qO /tmp/www/index.html http://db:5432/ && exec httpd -f -p 8000 -h /tmp/www"]
  db:
    image: busybox
    command: ["sh", "-c", "mkdir -p /tmp/db && cat /run/secrets/db-password > /tmp/db/index.html && exec httpd -f -p 5432 -h /tmp/db"]
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:5432/"]
      interval: 1s
  proxy:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    volumes:
      - ./proxy/www:/www:ro
    ports: !override ["`+port+`:80"]
`))
	p.must("-f", override, "up", "-d")
	if got := get(t, "http://127.0.0.1:"+port+"/cgi-bin/index.cgi"); !strings.Contains(got, "proxied: corpus-secret") {
		t.Errorf("through the proxy's published port: %q", got)
	}
	p.must("-f", override, "down")
	p.assertNothingLeft()
}

// A foreground up publishes its ports as a detached one does, and Ctrl-C
// leaves nothing of its network.
func TestNetworkForegroundCtrlC(t *testing.T) {
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		port := freePort(t)
		p := newP(t, httpd("web", "foreground", `ports: ["127.0.0.1:`+port+`:80"]`))
		r := p.up()
		if got := get(t, "http://127.0.0.1:"+port+"/"); !strings.Contains(got, "foreground") {
			t.Errorf("published port: %q", got)
		}
		p.ctrlCLeavesNothing(r)
		if !unreachable("127.0.0.1:" + port) {
			t.Error("the published port still answers after Ctrl-C")
		}
	})
}

// A published UDP port, from a host range whose first port is taken: the
// next one is published, and a datagram sent to it reaches the service.
func TestNetworkUDPRange(t *testing.T) {
	t.Parallel()
	held, err := net.ListenPacket("udp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	first := held.LocalAddr().(*net.UDPAddr).Port
	rng := strconv.Itoa(first) + "-" + strconv.Itoa(first+1)
	p := newProject(t, oneService("dns", `["/udpecho", "53"]`, `ports: ["`+rng+`:53/udp"]`, `volumes: ["./udpecho:/udpecho:ro"]`))
	// busybox has no UDP server: a static one of ours, bound in.
	build := exec.Command("go", "build", "-o", filepath.Join(p.dir, "udpecho"), "./internal/testimg/udpecho")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building udpecho: %v\n%s", err, out)
	}
	r := p.up()
	chosen := ""
	eventually(t, 20*time.Second, "the udp port published", func() bool {
		_, out, _ := p.sstack("port", "--protocol", "udp", "dns", "53")
		chosen = strings.TrimSpace(out)
		return chosen != ""
	})
	if chosen != "0.0.0.0:"+strconv.Itoa(first+1) {
		t.Fatalf("port --protocol udp dns 53 = %q, want the range's second port %d", chosen, first+1)
	}
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(first+1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(r.stdout.String(), "datagram-in"); {
		if time.Now().After(deadline) {
			t.Fatalf("no datagram reached the service; stdout:\n%s", r.stdout)
		}
		_, _ = c.Write([]byte("datagram-in\n"))
		time.Sleep(200 * time.Millisecond)
	}
	p.ctrlCLeavesNothing(r)
}

// Package stacknet owns a stack's network namespace on one host: the
// process that holds it (sstack itself, re-executed with HolderArg), the
// slirp4netns forwarder that gives it outbound traffic and published
// ports, and the record of both in the state directory, from which `down`
// ends them after a killed supervisor. It needs no root and no help from
// the site: an unprivileged user gets a user namespace of their own (uid
// mapped to itself) around the network namespace; root gets the network
// namespace alone. The engine starts one per stack; inside it the holder
// gives every replica a namespace and address of its own, routed as the
// compose networks say, and answers the stack's names (replicas.go,
// dns.go). Package singularity enters a replica's namespace (nsenter) for
// every Apptainer client of its instance.
//
// Measured design notes: ../shared/apptainer-facts.md, "Networks".
package stacknet

import (
	"bufio"
	"context"
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

	"golang.org/x/sys/unix"

	"sstack/singularity"
)

// HolderArg, as the first argument of sstack, makes it the holder of a
// new namespace (Hold): main checks it before anything else. (The holder
// must be a fresh process: a multithreaded Go program cannot enter a user
// namespace, and the namespaces are made by clone for it.)
const HolderArg = "__sstack-network-holder"

// Addresses slirp4netns gives the namespace (its defaults with
// --configure): the stack's own address, the gateway (the host, unless
// host loopback is disabled) and its DNS forwarder.
const (
	GuestAddr = "10.0.2.100"
	DNSAddr   = "10.0.2.3"
	// MTU 65520: measured 286 MiB/s through a forward vs 64 at 1500.
	mtu = "65520"
)

// startWithin bounds the holder's and the forwarder's start.
const startWithin = 20 * time.Second

// Net is a stack's running network.
type Net struct {
	// mu guards rec.Published: ps reads it while up publishes.
	mu  sync.Mutex
	rec record
	dir string
}

// record is what the state directory keeps of a network: enough to end
// its processes (never a recycled pid: the start time must match) and to
// answer `port` and ps.
type record struct {
	Holder    proc        `json:"holder"`
	Forwarder proc        `json:"forwarder"`
	UserNS    bool        `json:"userns"`
	Published []Published `json:"published,omitempty"`
}

type proc struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"` // field 22 of /proc/PID/stat
}

// Published is one port forwarded from the host into the namespace.
type Published struct {
	Service  string `json:"service"`
	HostIP   string `json:"host_ip"`
	HostPort int    `json:"host_port"`
	Target   int    `json:"target"`
	Protocol string `json:"protocol"`
	// ID is slirp4netns's number for the forward (remove_hostfwd).
	ID int `json:"id,omitempty"`
	// GuestAddr is the address in the namespace ("": the stack's own).
	GuestAddr string `json:"guest_addr,omitempty"`
}

const (
	recordFile = "network.json"
	apiSocket  = "slirp.sock"
	logFile    = "network.log"
)

// Network is how Apptainer clients enter the namespace.
func (n *Net) Network() singularity.Network {
	return singularity.Network{Holder: n.rec.Holder.Pid, UserNS: n.rec.UserNS}
}

// Ports are the forwards published so far.
func (n *Net) Ports() []Published {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Published(nil), n.rec.Published...)
}

// Missing says what this host lacks for a stack network, or "" when it
// has all of it; it starts nothing. The message names the remedy and the
// way to run on the host's network instead.
func Missing() string {
	var lacks []string
	for _, tool := range []string{"slirp4netns", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := map[string]string{"slirp4netns": "slirp4netns", "nsenter": "util-linux"}[tool]
			lacks = append(lacks, fmt.Sprintf("%s is not on PATH (install the %s package; scripts/install-apptainer.sh does)", tool, pkg))
		}
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		mode := ""
		if fi, serr := os.Stat("/dev/net/tun"); serr == nil {
			mode = fmt.Sprintf(" (mode %04o)", fi.Mode().Perm())
		}
		lacks = append(lacks, fmt.Sprintf("/dev/net/tun cannot be opened by uid %d%s: %v; it is 0666 on most distributions: ask the administrator for chmod 0666 /dev/net/tun", os.Getuid(), mode, errors.Unwrap(err)))
	} else {
		f.Close()
	}
	if os.Getuid() != 0 {
		if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
			lacks = append(lacks, "user namespaces are disabled (user.max_user_namespaces = 0)")
		}
		if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
			lacks = append(lacks, "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)")
		}
	}
	return strings.Join(lacks, "; ")
}

// Start creates the namespace and its forwarder for the stack whose state
// directory is dir, and records both there. Both run in process groups
// of their own, so a Ctrl-C reaches neither, and outlive a killed sstack
// as its instances do; Close or Cleanup ends them.
//
// name names the network in the holder's process title ("[NAME.network]",
// as Apptainer's titles name instances): the project, or PROJECT.RUN.
func Start(ctx context.Context, dir, name string) (n *Net, err error) {
	if lack := Missing(); lack != "" {
		return nil, errors.New(lack)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n = &Net{dir: dir, rec: record{UserNS: os.Getuid() != 0}}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	// A pipe whose write end only the holder keeps: slirp4netns's
	// --exit-fd, so the forwarder ends with the holder, however that ends.
	exitR, exitW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer exitR.Close()
	holder, keep, err := startHolder(self, dir, name, n.rec.UserNS, exitW)
	exitW.Close()
	if err != nil {
		return nil, err
	}
	n.rec.Holder = holder
	// Recorded before the holder is told to stay: an sstack killed
	// before that leaves a holder that ends by itself, one killed after
	// leaves down a record.
	if err := n.save(); err != nil {
		return nil, err
	}
	if err := keep(); err != nil {
		return nil, fmt.Errorf("the stack network's holder: %w", err)
	}
	if n.rec.Forwarder, err = startForwarder(ctx, dir, n.rec.Holder.Pid, exitR); err != nil {
		return nil, err
	}
	return n, n.save()
}

// startHolder re-executes sstack as the holder in new namespaces and
// waits for its word that loopback is up. Its second argument names the
// network for ps, as Apptainer's process titles do ("[NAME.network]");
// it runs in the state directory, as the forwarder does, which tells
// whose both are.
//
// It stays only once keep is called (it reads "keep" on its stdin; an
// end of input before that ends it), and holds exit, the write end of the
// forwarder's exit pipe, as its descriptor 3.
func startHolder(self, dir, name string, userNS bool, exit *os.File) (_ proc, keep func() error, _ error) {
	cmd := exec.Command(self, HolderArg, "["+name+".network]")
	cmd.Dir = dir
	cmd.ExtraFiles = []*os.File{exit}
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Setpgid: true}
	if userNS {
		uid, gid := os.Getuid(), os.Getgid()
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		// The holder is not uid 0 in its namespace: without ambient
		// capabilities exec would drop those it needs there.
		attr.AmbientCaps = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN}
	}
	cmd.SysProcAttr = attr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return proc{}, nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return proc{}, nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return proc{}, nil, fmt.Errorf("creating the stack's network namespace: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	word := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		word <- strings.TrimSpace(line)
	}()
	select {
	case w := <-word:
		if w != "ready" {
			_ = cmd.Process.Kill()
			msg := strings.TrimSpace(w + " " + stderr.String())
			return proc{}, nil, fmt.Errorf("creating the stack's network namespace: %s", msg)
		}
	case <-time.After(startWithin):
		_ = cmd.Process.Kill()
		return proc{}, nil, fmt.Errorf("creating the stack's network namespace: no answer within %s", startWithin)
	}
	keep = func() error {
		_, err := io.WriteString(in, "keep\n")
		return errors.Join(err, in.Close())
	}
	return procOf(cmd.Process.Pid), keep, nil
}

// Hold is the holder's whole life: bring loopback up, let every user bind
// ports below 1024 in this namespace only (the host's own setting is never
// touched; root needs it too, since Apptainer drops root's capabilities
// by default), say "ready", and wait to be killed.
func Hold() {
	if len(os.Args) > 3 && os.Args[3] == replicaArg {
		holdReplica()
	}
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	if err := loopbackUp(); err != nil {
		say("bringing loopback up: %v", err)
		os.Exit(1)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0); err != nil {
		say("net.ipv4.ip_unprivileged_port_start: %v", err)
		os.Exit(1)
	}
	l, err := listenHolder()
	if err != nil {
		say("%s: %v", holderSocket, err)
		os.Exit(1)
	}
	signal := make(chan os.Signal, 1)
	ignoreInterrupts(signal)
	say("ready")
	// Stay only if sstack recorded us (see startHolder).
	if line, _ := bufio.NewReader(os.Stdin).ReadString('\n'); line != "keep\n" {
		_ = os.Remove(holderSocket)
		os.Exit(0)
	}
	if err := serveHolder(l); err != nil {
		os.Exit(1)
	}
	// Nothing more to say or hear: a closed pipe must not end the holder.
	if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup2(int(devnull.Fd()), fd)
		}
	}
	<-signal
	os.Exit(0)
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// startForwarder attaches slirp4netns to the holder's namespace and waits
// until it has configured tap0. --disable-host-loopback: the stack cannot
// reach the host's 127.0.0.1 (other stacks' and users' local services);
// the host's other addresses stay reachable (host-gateway). The API
// socket's path is relative to dir (its working directory), since a state
// directory's full path may exceed a socket address's 108 bytes.
func startForwarder(ctx context.Context, dir string, holder int, exit *os.File) (proc, error) {
	_ = os.Remove(filepath.Join(dir, apiSocket))
	log, err := os.OpenFile(filepath.Join(dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return proc{}, err
	}
	defer log.Close()
	ready, readyW, err := os.Pipe()
	if err != nil {
		return proc{}, err
	}
	defer ready.Close()
	args := []string{"--configure", "--mtu=" + mtu, "--disable-host-loopback", "--ready-fd=3", "--exit-fd=4", "--api-socket", apiSocket}
	if os.Getuid() != 0 {
		args = append(args, "--userns-path=/proc/"+strconv.Itoa(holder)+"/ns/user")
	}
	cmd := exec.Command("slirp4netns", append(args, "--netns-type=path", "/proc/"+strconv.Itoa(holder)+"/ns/net", "tap0")...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{readyW, exit}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return proc{}, fmt.Errorf("starting slirp4netns: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	got := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := io.ReadFull(ready, b)
		got <- err
	}()
	fail := func(why string) (proc, error) {
		_ = cmd.Process.Kill()
		out, _ := os.ReadFile(filepath.Join(dir, logFile))
		return proc{}, fmt.Errorf("slirp4netns %s: %s", why, summarize(out))
	}
	select {
	case err := <-got:
		if err != nil {
			return fail("ended before it was ready")
		}
	case <-exited:
		return fail("ended before it was ready")
	case <-time.After(startWithin):
		return fail("was not ready within " + startWithin.String())
	case <-ctx.Done():
		return fail("was interrupted")
	}
	return procOf(cmd.Process.Pid), nil
}

func summarize(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	s := strings.Join(lines, "; ")
	if s == "" {
		return "no output"
	}
	return s
}

// Publish forwards host_ip:host_port on the host to the port in the
// namespace, through slirp4netns's API.
func (n *Net) Publish(p Published) error {
	args := map[string]any{"proto": p.Protocol, "host_addr": p.HostIP, "host_port": p.HostPort, "guest_port": p.Target}
	if p.GuestAddr != "" {
		args["guest_addr"] = p.GuestAddr
	}
	var resp apiResponse
	if err := n.call(map[string]any{"execute": "add_hostfwd", "arguments": args}, &resp); err != nil {
		return fmt.Errorf("publishing host port %d: %w", p.HostPort, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("publishing host port %d: slirp4netns: %s", p.HostPort, resp.Error.Desc)
	}
	p.ID = resp.Return.ID
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rec.Published = append(n.rec.Published, p)
	return n.save()
}

// apiResponse is slirp4netns's answer to an API request.
type apiResponse struct {
	Return struct {
		ID int `json:"id"`
	} `json:"return"`
	Error *struct {
		Desc string `json:"desc"`
	} `json:"error"`
}

// Unpublish stops forwarding the ports published for service (up
// replacing it with other ports, or removing it).
func (n *Net) Unpublish(service string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var keep []Published
	var errs []error
	for _, p := range n.rec.Published {
		if p.Service != service {
			keep = append(keep, p)
			continue
		}
		var resp apiResponse
		err := n.call(map[string]any{"execute": "remove_hostfwd", "arguments": map[string]any{"id": p.ID}}, &resp)
		if err == nil && resp.Error != nil {
			err = errors.New(resp.Error.Desc)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("host port %d: slirp4netns: %w", p.HostPort, err))
		}
	}
	n.rec.Published = keep
	return errors.Join(append(errs, n.save())...)
}

// call sends one request to the API socket and decodes the answer.
func (n *Net) call(req, resp any) error {
	return n.request(apiSocket, 10*time.Second, req, resp)
}

// request sends req as JSON to socket, a socket in the state directory
// (reached through /proc/self/fd: the directory's path may be too long for
// a socket address), and decodes one JSON answer into resp.
func (n *Net) request(socket string, within time.Duration, req, resp any) error {
	dirfd, err := unix.Open(n.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	conn, err := net.DialTimeout("unix", "/proc/self/fd/"+strconv.Itoa(dirfd)+"/"+socket, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(within))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return err
	}
	if c, ok := conn.(*net.UnixConn); ok {
		_ = c.CloseWrite()
	}
	return json.NewDecoder(conn).Decode(resp)
}

// Close ends the forwarder and the holder and removes the record. The
// namespace itself goes with its last process.
func (n *Net) Close() {
	for _, p := range []proc{n.rec.Forwarder, n.rec.Holder} {
		p.kill()
	}
	for _, f := range []string{recordFile, apiSocket, holderSocket} {
		_ = os.Remove(filepath.Join(n.dir, f))
	}
}

// Cleanup ends what a network recorded in dir left running (a killed
// supervisor), and removes the record. It reports whether there was one.
func Cleanup(dir string) bool {
	n, err := Load(dir)
	if err != nil {
		return false
	}
	n.Close()
	return true
}

// Recorded tells whether dir holds a network's record (a running stack's,
// or one a killed supervisor left).
func Recorded(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, recordFile))
	return err == nil
}

// Load reads the record of dir's network; its processes may be gone.
func Load(dir string) (*Net, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	n := &Net{dir: dir}
	if err := json.Unmarshal(b, &n.rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordFile), err)
	}
	return n, nil
}

// Alive reports whether the holder still runs.
func (n *Net) Alive() bool { return n.rec.Holder.alive() }

func (n *Net) save() error {
	b, err := json.Marshal(n.rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(n.dir, recordFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("recording the stack network in %s: %w", n.dir, err)
	}
	return os.Rename(tmp, filepath.Join(n.dir, recordFile))
}

func procOf(pid int) proc {
	start, _ := stat(pid)
	return proc{Pid: pid, Start: start}
}

// stat reads /proc/PID/stat: field 22, the start time (0 when the process
// is gone), which with the pid names one process, never a recycled pid;
// and whether it is a zombie.
func stat(pid int) (start uint64, zombie bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 20 {
		return 0, false
	}
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return start, f[0] == "Z"
}

// alive: p still runs (a zombie holds nothing: it only waits for its
// parent).
func (p proc) alive() bool {
	if p.Pid <= 0 || p.Start == 0 {
		return false
	}
	start, zombie := stat(p.Pid)
	return start == p.Start && !zombie
}

// kill SIGKILLs p if it is still the process recorded, and waits a
// moment for it to be gone: neither holds anything worth a graceful end.
func (p proc) kill() {
	if !p.alive() {
		return
	}
	_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	for i := 0; i < 100 && p.alive(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

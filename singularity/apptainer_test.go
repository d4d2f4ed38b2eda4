package singularity_test

// Integration tests against the real Apptainer. They skip without one
// (fail when CI=true); see internal/testimg.

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
	"sstack/internal/testutil"
	"sstack/singularity"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startBusybox starts an instance of the busybox image with extra settings.
func startBusybox(t *testing.T, rt *singularity.Apptainer, spec singularity.InstanceSpec) string {
	t.Helper()
	if spec.Image == "" {
		spec.Image = testimg.Busybox(t)
	}
	return testimg.StartInstance(t, rt, spec)
}

// exec runs args in the instance and fails the test on runtime errors.
func exec(t *testing.T, rt *singularity.Apptainer, inst string, env []string, args ...string) (int, string) {
	t.Helper()
	code, out, err := rt.Exec(ctxT(t), singularity.ProcessSpec{Instance: inst, Args: args, Env: env})
	if err != nil {
		t.Fatalf("exec %q: %v (output %q)", args, err, out)
	}
	return code, string(out)
}

// mustExec runs args and requires exit code 0.
func mustExec(t *testing.T, rt *singularity.Apptainer, inst string, args ...string) string {
	t.Helper()
	code, out := exec(t, rt, inst, nil, args...)
	if code != 0 {
		t.Fatalf("exec %q: exit %d, output %q", args, code, out)
	}
	return out
}

// started is a process with its combined output on a pipe.
type started struct {
	proc singularity.Process
	out  chan string // the whole output, once the pipe is closed
	r    *os.File
}

func startProcess(t *testing.T, rt *singularity.Apptainer, spec singularity.ProcessSpec) *started {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	spec.Stdout, spec.Stderr = w, w
	proc, err := rt.StartProcess(ctxT(t), spec)
	w.Close()
	if err != nil {
		r.Close()
		t.Fatalf("StartProcess: %v", err)
	}
	s := &started{proc: proc, out: make(chan string, 1), r: r}
	t.Cleanup(func() { _ = proc.Kill(); _, _ = proc.Wait() })
	return s
}

// collect reads all output (after a first part already read by readLine).
func (s *started) collect(t *testing.T, prefix string) string {
	t.Helper()
	go func() {
		b, _ := io.ReadAll(s.r)
		s.r.Close()
		s.out <- prefix + string(b)
	}()
	select {
	case out := <-s.out:
		return out
	case <-time.After(30 * time.Second):
		t.Fatal("output pipe not closed after 30s")
		return ""
	}
}

// readLine reads one line from the process output.
func (s *started) readLine(t *testing.T) string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		var line []byte
		b := make([]byte, 1)
		for {
			n, err := s.r.Read(b)
			if n == 1 {
				if b[0] == '\n' {
					break
				}
				line = append(line, b[0])
			}
			if err != nil {
				break
			}
		}
		done <- string(line)
	}()
	select {
	case l := <-done:
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no output line after 30s")
		return ""
	}
}

func waitCode(t *testing.T, p singularity.Process) int {
	t.Helper()
	type res struct {
		code int
		err  error
	}
	ch := make(chan res, 1)
	go func() { c, err := p.Wait(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Wait: %v", r.err)
		}
		return r.code
	case <-time.After(30 * time.Second):
		t.Fatal("process did not exit within 30s")
		return 0
	}
}

// run starts a process and returns its exit code and output.
func run(t *testing.T, rt *singularity.Apptainer, spec singularity.ProcessSpec) (int, string) {
	t.Helper()
	s := startProcess(t, rt, spec)
	out := s.collect(t, "")
	return waitCode(t, s.proc), out
}

func TestDetect(t *testing.T) {
	rt := testimg.RequireRuntime(t)
	if !filepath.IsAbs(rt.Binary) || !strings.Contains(rt.Version, "version") {
		t.Errorf("Detect: Binary %q Version %q", rt.Binary, rt.Version)
	}
	again, err := singularity.Detect(rt.Binary)
	if err != nil || again.Binary != rt.Binary {
		t.Errorf("Detect(%q) = %v, %v", rt.Binary, again, err)
	}
	if _, err := singularity.Detect("/nonexistent/apptainer"); err == nil || !strings.Contains(err.Error(), "/nonexistent/apptainer") {
		t.Errorf("Detect of a missing binary: err = %v", err)
	}
	// A binary that exists but fails --version.
	if _, err := singularity.Detect("false"); err == nil || !strings.Contains(err.Error(), "--version") {
		t.Errorf("Detect(false): err = %v", err)
	}
}

func TestInstanceLifecycle(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	ctx := ctxT(t)
	name := testimg.InstanceName(t, "life")
	if err := rt.StartInstance(ctx, singularity.InstanceSpec{Name: name, Image: testimg.Busybox(t)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testimg.StopInstance(t, rt, name) })

	infos, err := rt.ListInstances(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Name != name || infos[0].Pid <= 0 {
		t.Fatalf("ListInstances(%q) = %+v", name, infos)
	}
	prefix := strings.SplitN(name, ".", 2)[0]
	if infos, err := rt.ListInstances(ctx, prefix+".*"); err != nil || len(infos) != 1 {
		t.Errorf("ListInstances(glob) = %+v, %v", infos, err)
	}
	// A second instance of the same name is refused with the reason.
	err = rt.StartInstance(ctx, singularity.InstanceSpec{Name: name, Image: testimg.Busybox(t)})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second start: err = %v, want 'already exists'", err)
	}

	start := time.Now()
	if err := rt.StopInstance(ctx, name, "TERM", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %v", time.Since(start))
	if infos, err := rt.ListInstances(ctx, name); err != nil || len(infos) != 0 {
		t.Errorf("after stop: ListInstances = %+v, %v", infos, err)
	}
	err = rt.StopInstance(ctx, name, "SIGTERM", time.Second)
	if !errors.Is(err, singularity.ErrNoInstance) {
		t.Errorf("stopping a stopped instance: err = %v, want ErrNoInstance", err)
	}
	if infos, err := rt.ListInstances(ctx, "sstacktest-nomatch-*"); err != nil || len(infos) != 0 {
		t.Errorf("ListInstances(no match) = %+v, %v", infos, err)
	}
}

func TestStartInstanceFailures(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	bb := testimg.Busybox(t)
	missing := filepath.Join(t.TempDir(), "missing.sif")
	cases := []struct {
		name string
		spec singularity.InstanceSpec
		want string
	}{
		{"missing image", singularity.InstanceSpec{Image: missing}, "no such file or directory"},
		{"missing bind source", singularity.InstanceSpec{Image: bb, Binds: []singularity.Bind{{Source: "/nonexistent/src", Target: "/x"}}}, "/nonexistent/src"},
		{"invalid name", singularity.InstanceSpec{Name: "bad name", Image: bb}, "not allowed"},
		{"relative bind", singularity.InstanceSpec{Image: bb, Binds: []singularity.Bind{{Source: "rel", Target: "/x"}}}, "absolute"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.spec.Name == "" {
				c.spec.Name = testimg.InstanceName(t, "fail")
			}
			err := rt.StartInstance(ctxT(t), c.spec)
			if err == nil {
				testimg.StopInstance(t, rt, c.spec.Name)
				t.Fatal("StartInstance succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
			if c.name == "missing image" && !strings.Contains(err.Error(), "FATAL") {
				t.Errorf("err = %v, want the FATAL line", err)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	// Host variables must not leak, Apptainer's own injection channel
	// included.
	t.Setenv("SSTACK_TEST_LEAK", "leaked")
	t.Setenv("APPTAINERENV_SSTACK_TEST_INJECT", "injected")
	t.Setenv("SINGULARITYENV_SSTACK_TEST_INJECT2", "injected")
	env := []string{"GIVEN=yes", "PATH=/usr/sbin:/usr/bin:/sbin:/bin:/custom"}
	code, out := run(t, rt, singularity.ProcessSpec{Instance: inst, Args: []string{"env"}, Env: env})
	if code != 0 {
		t.Fatalf("env: exit %d: %s", code, out)
	}
	for _, want := range []string{"GIVEN=yes\n", "PATH=/usr/sbin:/usr/bin:/sbin:/bin:/custom\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("process env lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"SSTACK_TEST_LEAK", "SSTACK_TEST_INJECT", "leaked", "injected"} {
		if strings.Contains(out, bad) {
			t.Errorf("process env contains host variable %q:\n%s", bad, out)
		}
	}
	// Exec (healthchecks) gets the same treatment.
	_, out = exec(t, rt, inst, []string{"HC=1"}, "env")
	if !strings.Contains(out, "HC=1") || strings.Contains(out, "leaked") || strings.Contains(out, "injected") {
		t.Errorf("exec env:\n%s", out)
	}
	// A key no shell accepts is refused with a clear error.
	_, err := rt.StartProcess(ctxT(t), singularity.ProcessSpec{Instance: inst, Args: []string{"true"}, Env: []string{"a.b=1"}})
	if err == nil || !strings.Contains(err.Error(), `"a.b"`) {
		t.Errorf("invalid env key: err = %v", err)
	}
}

func TestTrickyEnvValues(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	values := map[string]string{
		"COMMA":     "a,B=b",
		"EQUALS":    "x=y=z",
		"SPACES":    "  lead and trail  ",
		"QUOTES":    `q"uo'te`,
		"NEWLINE":   "line1\nline2",
		"DOLLAR":    "$HOME ${PATH}",
		"BACKTICK":  "`id`",
		"BACKSLASH": `back\slash\`,
		"EMPTY":     "",
		"UNICODE":   "ünï ☃",
		"SEMICOLON": "a; exit 1",
	}
	var env, keys []string
	for k, v := range values {
		env = append(env, k+"="+v)
		keys = append(keys, k)
	}
	// Each value followed by a NUL, in keys order.
	script := `for k in "$@"; do eval "v=\"\${$k}\""; printf '%s\n\000' "$v"; done`
	code, out := run(t, rt, singularity.ProcessSpec{Instance: inst, Args: append([]string{"sh", "-c", script, "sh"}, keys...), Env: env})
	if code != 0 {
		t.Fatalf("exit %d: %q", code, out)
	}
	got := strings.Split(out, "\x00")
	if len(got) != len(keys)+1 {
		t.Fatalf("got %d values, want %d: %q", len(got)-1, len(keys), out)
	}
	for i, k := range keys {
		if want := values[k] + "\n"; got[i] != want {
			t.Errorf("%s = %q, want %q", k, got[i], want)
		}
	}
}

func TestWorkingDirectory(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	for pwd, want := range map[string]string{"": "/", "/etc": "/etc", "/srv/seed/sub": "/srv/seed/sub"} {
		code, out := run(t, rt, singularity.ProcessSpec{Instance: inst, Args: []string{"pwd"}, Pwd: pwd})
		if code != 0 || out != want+"\n" {
			t.Errorf("Pwd %q: exit %d, output %q, want %q", pwd, code, out, want)
		}
	}
	// Unlike Docker, Apptainer does not create a missing directory.
	code, out := run(t, rt, singularity.ProcessSpec{Instance: inst, Args: []string{"pwd"}, Pwd: "/nonexistent"})
	if code != 255 || !strings.Contains(out, "/nonexistent") {
		t.Errorf("missing Pwd: exit %d, output %q", code, out)
	}
	if _, out := exec(t, rt, inst, nil, "pwd"); out != "/\n" {
		t.Errorf("Exec pwd = %q, want /", out)
	}
}

func TestBindsAndHosts(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	dir := t.TempDir()
	rw := filepath.Join(dir, "rw")
	ro := filepath.Join(dir, "ro, with:odd chars")
	testutil.MkdirAll(t, rw)
	testutil.WriteFile(t, filepath.Join(ro, "f"), "ro content", 0o644) // makes ro
	secret := filepath.Join(dir, "pw.txt")
	hosts, resolv := filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	hostsContent := "127.0.0.1\tlocalhost\n127.0.0.1\tdb\n10.1.2.3\textra\n"
	testutil.WriteFile(t, resolv, "nameserver 10.0.2.3\n", 0o644)
	testutil.WriteFile(t, secret, "s3cret", 0o600)
	testutil.WriteFile(t, hosts, hostsContent, 0o644)
	inst := startBusybox(t, rt, singularity.InstanceSpec{
		Binds: []singularity.Bind{
			{Source: rw, Target: "/data"},
			{Source: ro, Target: "/config, odd", ReadOnly: true},
			{Source: secret, Target: "/run/secrets/db_pw", ReadOnly: true},
		},
		HostsFile:  hosts,
		ResolvConf: resolv,
	})

	mustExec(t, rt, inst, "sh", "-c", "echo from-container > /data/new")
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "from-container\n" {
		t.Errorf("rw bind: host sees %q, %v", b, err)
	}
	if out := mustExec(t, rt, inst, "cat", "/config, odd/f"); out != "ro content" {
		t.Errorf("ro bind content = %q", out)
	}
	if code, out := exec(t, rt, inst, nil, "sh", "-c", "echo x > '/config, odd/g'"); code == 0 || !strings.Contains(out, "Read-only") {
		t.Errorf("write to ro bind: exit %d, %q", code, out)
	}
	if out := mustExec(t, rt, inst, "cat", "/run/secrets/db_pw"); out != "s3cret" {
		t.Errorf("secret file = %q", out)
	}
	if code, _ := exec(t, rt, inst, nil, "sh", "-c", "echo x > /run/secrets/db_pw"); code == 0 {
		t.Error("write to ro file bind succeeded")
	}
	if out := mustExec(t, rt, inst, "cat", "/etc/resolv.conf"); out != "nameserver 10.0.2.3\n" {
		t.Errorf("/etc/resolv.conf = %q", out)
	}
	if out := mustExec(t, rt, inst, "cat", "/etc/hosts"); out != hostsContent {
		t.Errorf("/etc/hosts = %q, want %q", out, hostsContent)
	}
	if code, _ := exec(t, rt, inst, nil, "sh", "-c", "echo x >> /etc/hosts"); code == 0 {
		t.Error("/etc/hosts is writable")
	}

	// A user bind onto /etc/hosts wins over the generated file, as in Docker.
	own := filepath.Join(dir, "own-hosts")
	testutil.WriteFile(t, own, "10.9.9.9\town\n", 0o644)
	inst = startBusybox(t, rt, singularity.InstanceSpec{
		Binds:     []singularity.Bind{{Source: own, Target: "/etc/hosts", ReadOnly: true}},
		HostsFile: hosts,
	})
	if out := mustExec(t, rt, inst, "cat", "/etc/hosts"); out != "10.9.9.9\town\n" {
		t.Errorf("/etc/hosts with a user bind = %q", out)
	}
}

func TestTmpfs(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	secret := filepath.Join(t.TempDir(), "pw")
	testutil.WriteFile(t, secret, "pw", 0o600)
	// The bind lands inside the tmpfs: Apptainer mounts scratch first.
	inst := startBusybox(t, rt, singularity.InstanceSpec{
		Tmpfs: []string{"/run/cache", testimg.SeedDir},
		Binds: []singularity.Bind{{Source: secret, Target: "/run/cache/secrets/pw", ReadOnly: true}},
	})
	mounts := mustExec(t, rt, inst, "cat", "/proc/mounts")
	for _, p := range []string{"/run/cache", testimg.SeedDir} {
		if !strings.Contains(mounts, "tmpfs "+p+" tmpfs") {
			t.Errorf("%s is not a tmpfs:\n%s", p, mounts)
		}
	}
	// Like a Docker tmpfs, it hides the image's content and is writable.
	if out := mustExec(t, rt, inst, "ls", "-A", testimg.SeedDir); out != "" {
		t.Errorf("tmpfs over image content is not empty: %q", out)
	}
	mustExec(t, rt, inst, "sh", "-c", "echo x > /run/cache/f && cat /run/cache/f")
	if out := mustExec(t, rt, inst, "cat", "/run/cache/secrets/pw"); out != "pw" {
		t.Errorf("bind inside a tmpfs: %q", out)
	}
}

// TestTmpfsTmpWithBindsBelow: compose's `tmpfs: /tmp` (and /var/tmp) with
// a file bind, a directory bind and a secret below it.
func TestTmpfsTmpWithBindsBelow(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "s.sh")
	sub := filepath.Join(dir, "d")
	testutil.WriteFile(t, script, "echo hi\n", 0o644)
	testutil.WriteFile(t, filepath.Join(sub, "f"), "in d", 0o644)
	for _, readOnly := range []bool{false, true} {
		inst := startBusybox(t, rt, singularity.InstanceSpec{
			Tmpfs:        []string{"/tmp", "/var/tmp"},
			ReadOnlyRoot: readOnly,
			Binds: []singularity.Bind{
				{Source: script, Target: "/tmp/s.sh", ReadOnly: true},
				{Source: sub, Target: "/tmp/d"},
				{Source: script, Target: "/var/tmp/run/secrets/pw", ReadOnly: true},
			},
		})
		if out := mustExec(t, rt, inst, "sh", "/tmp/s.sh"); out != "hi\n" {
			t.Errorf("read-only root %v: /tmp/s.sh ran: %q", readOnly, out)
		}
		if out := mustExec(t, rt, inst, "cat", "/tmp/d/f", "/var/tmp/run/secrets/pw"); out != "in decho hi\n" {
			t.Errorf("read-only root %v: binds below /tmp and /var/tmp: %q", readOnly, out)
		}
		// Still a private, writable tmpfs, as Docker's (mode 1777).
		mustExec(t, rt, inst, "sh", "-c", "echo x > /tmp/new && echo y > /var/tmp/new")
		if out := mustExec(t, rt, inst, "stat", "-c", "%a", "/tmp", "/var/tmp"); out != "1777\n1777\n" {
			t.Errorf("read-only root %v: modes of /tmp, /var/tmp: %q", readOnly, out)
		}
	}
}

// TestWorkDirCreated: a working directory the image lacks is created (an
// empty tmpfs), as Docker creates a missing working_dir; one the image has
// is left as it is.
func TestWorkDirCreated(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	for _, readOnly := range []bool{false, true} {
		inst := startBusybox(t, rt, singularity.InstanceSpec{WorkDir: "/srv/app/work", ReadOnlyRoot: readOnly})
		p := startProcess(t, rt, singularity.ProcessSpec{Instance: inst, Pwd: "/srv/app/work", Args: []string{"sh", "-c", "pwd; ls -A; touch f && echo writable"}})
		if out := p.collect(t, ""); out != "/srv/app/work\nwritable\n" {
			t.Errorf("read-only root %v: process in a missing working dir: %q", readOnly, out)
		}
		if code, _ := p.proc.Wait(); code != 0 {
			t.Errorf("read-only root %v: exit code %d", readOnly, code)
		}
	}
	// The image's own directory is not hidden by a tmpfs.
	inst := startBusybox(t, rt, singularity.InstanceSpec{WorkDir: testimg.SeedDir})
	if mounts := mustExec(t, rt, inst, "cat", "/proc/mounts"); strings.Contains(mounts, " "+testimg.SeedDir+" ") {
		t.Errorf("a tmpfs hides the image's %s:\n%s", testimg.SeedDir, mounts)
	}
	if out := mustExec(t, rt, inst, "ls", "-A", testimg.SeedDir); out == "" {
		t.Errorf("the image's %s looks empty", testimg.SeedDir)
	}
}

func TestContainment(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	marker, err := os.CreateTemp("", "sstack-host-marker-")
	if err != nil {
		t.Fatal(err)
	}
	marker.Close()
	t.Cleanup(func() { os.Remove(marker.Name()) })
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	if out := mustExec(t, rt, inst, "ls", "-A", "/tmp"); out != "" {
		t.Errorf("container /tmp is not empty (host /tmp shared?): %q", out)
	}
	inside := "sstack-inside-" + strconv.Itoa(os.Getpid())
	mustExec(t, rt, inst, "touch", "/tmp/"+inside)
	if _, err := os.Stat(filepath.Join(os.TempDir(), inside)); err == nil {
		os.Remove(filepath.Join(os.TempDir(), inside))
		t.Error("a file written to /tmp in the container appeared on the host")
	}
	if out := mustExec(t, rt, inst, "sh", "-c", "ls -A $HOME"); out != "" {
		t.Errorf("container $HOME is not empty: %q", out)
	}
	// Own PID namespace: the process list holds only the instance.
	if out := mustExec(t, rt, inst, "ps", "-o", "pid,comm"); strings.Count(out, "\n") > 4 {
		t.Errorf("container sees host processes:\n%s", out)
	}
}

func TestRootfsWritableButThrowaway(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	bb := testimg.Busybox(t)
	name := testimg.InstanceName(t, "throwaway")
	spec := singularity.InstanceSpec{Name: name, Image: bb}
	testimg.StartInstance(t, rt, spec)
	mustExec(t, rt, name, "sh", "-c", "echo x > /etc/foo && cat /etc/foo")
	testimg.StopInstance(t, rt, name)
	testimg.StartInstance(t, rt, spec)
	if code, out := exec(t, rt, name, nil, "cat", "/etc/foo"); code == 0 {
		t.Errorf("/etc/foo survived a restart: %q", out)
	}
}

func TestSignalReachesRealProcess(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	s := startProcess(t, rt, singularity.ProcessSpec{Instance: inst, Args: []string{"sh", "-c",
		`trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done`}})
	if l := s.readLine(t); l != "ready" {
		t.Fatalf("first line %q", l)
	}
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	out := s.collect(t, "")
	if code := waitCode(t, s.proc); code != 3 {
		t.Errorf("exit code %d, want 3 (the trap's; 143 or 137 mean the signal hit the client)", code)
	}
	if !strings.Contains(out, "got TERM") {
		t.Errorf("output %q lacks the trap's message", out)
	}
	if err := s.proc.Signal(syscall.SIGTERM); err != os.ErrProcessDone {
		t.Errorf("Signal after exit: %v, want os.ErrProcessDone", err)
	}
	if err := s.proc.Kill(); err != os.ErrProcessDone {
		t.Errorf("Kill after exit: %v, want os.ErrProcessDone", err)
	}
}

// Signal right after start waits for the real process instead of killing
// the client.
func TestSignalRightAfterStart(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	s := startProcess(t, rt, singularity.ProcessSpec{Instance: inst, Args: []string{"sleep", "30"}})
	if err := s.proc.Signal(syscall.SIGUSR1); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	s.collect(t, "")
	if code := waitCode(t, s.proc); code != 128+int(syscall.SIGUSR1) {
		t.Errorf("exit code %d, want %d (sleep killed by SIGUSR1)", code, 128+int(syscall.SIGUSR1))
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "kill -KILL $$"}, 137},
		{[]string{"/no/such/command"}, 255},
	}
	for _, c := range cases {
		code, out := run(t, rt, singularity.ProcessSpec{Instance: inst, Args: c.args})
		if code != c.want {
			t.Errorf("%q: exit %d, want %d (output %q)", c.args, code, c.want, out)
		}
	}
	// A missing instance is Apptainer's failure: 255 with the reason.
	code, out := run(t, rt, singularity.ProcessSpec{Instance: "sstacktest-no-such-instance", Args: []string{"true"}})
	if code != 255 || !strings.Contains(out, "no instance found") {
		t.Errorf("missing instance: exit %d, output %q", code, out)
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	s := startProcess(t, rt, singularity.ProcessSpec{Instance: inst, Args: []string{"sh", "-c", `trap '' TERM INT; echo ready; sleep 1000`}})
	if l := s.readLine(t); l != "ready" {
		t.Fatalf("first line %q", l)
	}
	// The client has its own process group: a Ctrl-C at the terminal
	// reaches sstack only.
	if pgid, err := syscall.Getpgid(s.proc.Pid()); err != nil || pgid != s.proc.Pid() {
		t.Errorf("client process group %d, %v; want its own (%d)", pgid, err, s.proc.Pid())
	}
	// Wait runs concurrently with Signal and Kill.
	waited := make(chan int, 1)
	go func() { code, _ := s.proc.Wait(); waited <- code }()
	// TERM is ignored by the process: it keeps running.
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if out := mustExec(t, rt, inst, "ps", "-o", "comm"); !strings.Contains(out, "sleep") {
		t.Fatalf("process gone after an ignored TERM:\n%s", out)
	}
	start := time.Now()
	if err := s.proc.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	s.collect(t, "")
	select {
	case code := <-waited:
		if code != 137 {
			t.Errorf("exit code after Kill %d, want 137", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after Kill")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Kill took %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := mustExec(t, rt, inst, "ps", "-o", "comm")
		if !strings.Contains(out, "sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inner processes survive Kill:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Output written by a background child that outlives the process must not
// block Wait when the caller passes a non-file writer.
func TestWaitWithOrphanHoldingOutput(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	var buf lockedBuffer
	proc, err := rt.StartProcess(ctxT(t), singularity.ProcessSpec{Instance: inst, Stdout: &buf, Stderr: &buf,
		Args: []string{"sh", "-c", "echo hi; sleep 60 & exit 4"}})
	if err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, proc); code != 4 {
		t.Errorf("exit %d, want 4", code)
	}
	if !strings.Contains(buf.String(), "hi") {
		t.Errorf("output %q", buf.String())
	}
}

type lockedBuffer = testutil.Buffer

func TestExecHealthcheck(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	inst := startBusybox(t, rt, singularity.InstanceSpec{})
	code, out := exec(t, rt, inst, nil, "sh", "-c", "echo out; echo err >&2; exit 2")
	if code != 2 || !strings.Contains(out, "out") || !strings.Contains(out, "err") {
		t.Errorf("exit %d, output %q", code, out)
	}
	_, out = exec(t, rt, inst, nil, "sh", "-c", "yes | head -c 100000")
	if len(out) != 4096 {
		t.Errorf("output length %d, want it capped at 4096", len(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	code, _, err := rt.Exec(ctx, singularity.ProcessSpec{Instance: inst, Args: []string{"sleep", "30"}})
	if !errors.Is(err, context.DeadlineExceeded) || code != -1 {
		t.Errorf("timeout: code %d, err %v", code, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Exec returned %v after the deadline", d)
	}
}

func TestRunVersusExec(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	img := testimg.BusyboxWithRunscript(t, `echo "runscript: $# args: $*"`)
	ctx := ctxT(t)
	if has, err := rt.HasRunscript(ctx, img); err != nil || !has {
		t.Errorf("HasRunscript(runscript image) = %v, %v", has, err)
	}
	if has, err := rt.HasRunscript(ctx, testimg.Busybox(t)); err != nil || has {
		t.Errorf("HasRunscript(plain busybox) = %v, %v", has, err)
	}
	if _, err := rt.HasRunscript(ctx, "/nonexistent.sif"); err == nil {
		t.Error("HasRunscript of a missing image: no error")
	}
	inst := startBusybox(t, rt, singularity.InstanceSpec{Image: img})
	code, out := run(t, rt, singularity.ProcessSpec{Instance: inst, Run: true, Args: []string{"a", "b c", "$HOME"}})
	if code != 0 || out != "runscript: 3 args: a b c $HOME\n" {
		t.Errorf("run: exit %d, output %q", code, out)
	}
	code, out = run(t, rt, singularity.ProcessSpec{Instance: inst, Args: []string{"echo", "exec", "$HOME"}})
	if code != 0 || out != "exec $HOME\n" {
		t.Errorf("exec: exit %d, output %q", code, out)
	}
}

func TestSeedVolume(t *testing.T) {
	t.Parallel()
	rt := testimg.RequireRuntime(t)
	images := map[string]string{"sif": testimg.Busybox(t), "sandbox": testimg.BusyboxRootfs(t)}
	for kind, img := range images {
		for _, p := range []string{testimg.SeedDir, testimg.SeedAbsLink, testimg.SeedRelLink, "/srv/../srv/./seed/"} {
			t.Run(kind+p, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "vol")
				if err := rt.SeedVolume(ctxT(t), singularity.SeedSpec{Image: img, Path: p, HostDir: dir}); err != nil {
					t.Fatal(err)
				}
				checkSeeded(t, dir)
			})
		}
		t.Run(kind+"/nested-through-link", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "vol")
			if err := rt.SeedVolume(ctxT(t), singularity.SeedSpec{Image: img, Path: testimg.SeedRelLink + "/sub", HostDir: dir}); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "nested.txt")); err != nil || string(b) != "nested\n" {
				t.Errorf("nested.txt = %q, %v", b, err)
			}
		})
		t.Run(kind+"/missing-path", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "vol")
			if err := rt.SeedVolume(ctxT(t), singularity.SeedSpec{Image: img, Path: "/no/such/dir", HostDir: dir}); err != nil {
				t.Fatal(err)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Errorf("volume for a missing path: %v, %v", entries, err)
			}
		})
		t.Run(kind+"/file", func(t *testing.T) {
			err := rt.SeedVolume(ctxT(t), singularity.SeedSpec{Image: img, Path: testimg.SeedDir + "/" + testimg.SeedFile, HostDir: filepath.Join(t.TempDir(), "vol")})
			if err == nil || !strings.Contains(err.Error(), "not a directory") && !strings.Contains(err.Error(), "is a file") {
				t.Errorf("seeding from a file: err = %v", err)
			}
		})
	}
	// Nothing is left next to the volume.
	parent := t.TempDir()
	if err := rt.SeedVolume(ctxT(t), singularity.SeedSpec{Image: images["sif"], Path: testimg.SeedDir, HostDir: filepath.Join(parent, "vol")}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("left behind next to the volume: %v", entries)
	}
}

func checkSeeded(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, testimg.SeedFile))
	if err != nil || string(b) != testimg.SeedContent {
		t.Fatalf("%s = %q, %v", testimg.SeedFile, b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, testimg.SeedNested)); err != nil || string(b) != "nested\n" {
		t.Errorf("%s = %q, %v", testimg.SeedNested, b, err)
	}
	fi, err := os.Stat(filepath.Join(dir, testimg.SeedFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o664 {
		t.Errorf("file mode %v, want 0664", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o775 {
		t.Errorf("volume mode %v, want the image directory's 0775", di.Mode().Perm())
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{dir, filepath.Join(dir, testimg.SeedFile)} {
			st, _ := os.Stat(p)
			if uid := st.Sys().(*syscall.Stat_t).Uid; uid != testimg.SeedUID {
				t.Errorf("%s owned by %d, want %d", p, uid, testimg.SeedUID)
			}
		}
	}
}

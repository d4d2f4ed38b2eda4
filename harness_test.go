package main

// The harness of the integration tests: they build the sstack binary and
// run it, as a user would, against the real Apptainer with images built
// offline. Each test is a project (a directory with a compose file, its
// own state directory and a unique name) and checks at its end that no
// instance or process of it is left. Compose files say `image: busybox`
// for the busybox test image.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"sstack/internal/statedir"
	"sstack/internal/testimg"
	"sstack/internal/testutil"
)

var sstackBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Unit tests only: integration tests skip (integration), so no
		// binary is built.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "sstack-bin")
	if err != nil {
		panic(err)
	}
	// Readable by the unprivileged test user (asUser) too.
	_ = os.Chmod(dir, 0o755)
	sstackBin = filepath.Join(dir, "sstack")
	build := exec.Command("go", "build", "-race", "-o", sstackBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sstack:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type lockedBuffer = testutil.Buffer

// integration skips t under -short: it runs the sstack binary (and
// usually Apptainer), which `go test -short` does not build.
func integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: not with -short")
	}
}

// Compose fixtures.

// busyboxImage is the image line that newProject replaces with the path
// of the busybox test image, so that compose files read as they would
// for docker compose; sstack itself never sees "busybox".
const busyboxImage = "image: busybox\n"

// oneService is a compose file of a single service, name, that runs
// command (a YAML flow sequence) in the busybox image; keys are further
// lines of the service, such as "restart: always".
func oneService(name, command string, keys ...string) string {
	return services(service(name, command, keys...))
}

// service is one service of a compose file, as oneService's, for services.
func service(name, command string, keys ...string) string {
	s := "  " + name + ":\n    " + busyboxImage + "    command: " + command + "\n"
	for _, k := range keys {
		s += "    " + k + "\n"
	}
	return s
}

// services is a compose file of the services given (service).
func services(each ...string) string {
	return "\nservices:\n" + strings.Join(each, "")
}

// The project.

// project is one test stack: a directory with a compose file, its own
// state directory and a unique project name.
type project struct {
	t        *testing.T
	name     string
	dir      string
	stateDir string
	env      []string
	// user, when set, is the unprivileged user sstack runs as (asUser).
	user *syscall.Credential
	// busybox is the busybox test image as this project's user reads it.
	busybox string
	// job, when set, is the Slurm allocation the project runs in
	// (inAllocation): nothing of the project may be left in it either.
	job string
}

// newProject writes compose, with every `image: busybox` naming the busybox
// test image, into a new project directory.
func newProject(t *testing.T, compose string) *project {
	t.Helper()
	integration(t)
	testimg.RequireRuntime(t)
	p := &project{
		t:        t,
		name:     fmt.Sprintf("it%d", rand.Int63()%1_000_000_000),
		dir:      t.TempDir(),
		stateDir: t.TempDir(),
		busybox:  testimg.Busybox(t),
	}
	compose = p.withImages(compose)
	p.env = append(os.Environ(), "SSTACK_STATE_DIR="+p.stateDir, "SSTACK_IMAGE_DIR="+filepath.Join(p.dir, "images"))
	p.write("docker-compose.yml", compose)
	t.Cleanup(p.cleanup)
	return p
}

// write writes a file of the project, readable by all, and returns its
// path.
func (p *project) write(name, content string) string {
	p.t.Helper()
	return p.writeMode(name, content, 0o644)
}

// writeSecret writes a file readable by its owner only, as secrets must be.
func (p *project) writeSecret(name, content string) {
	p.t.Helper()
	p.writeMode(name, content, 0o600)
}

// writeMode writes a file of the project, with its directories, owned by
// the user sstack runs as.
func (p *project) writeMode(name, content string, mode os.FileMode) string {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	testutil.WriteFile(p.t, path, content, mode)
	p.own(path)
	return path
}

// withImages is compose with every `image: busybox` naming the busybox
// test image.
func (p *project) withImages(compose string) string {
	return strings.ReplaceAll(compose, busyboxImage, "image: "+p.busybox+"\n")
}

// own gives path to the user sstack runs as.
func (p *project) own(path string) {
	if p.user != nil {
		if err := os.Chown(path, int(p.user.Uid), int(p.user.Gid)); err != nil {
			p.t.Fatal(err)
		}
	}
}

// An unprivileged user.

// testUser is the unprivileged user the tests create (useradd) to run
// sstack as, when they run as root.
const testUser = "sstack-it"

var (
	userOnce sync.Once
	userCred *syscall.Credential
	userErr  error
	// usersOf: the projects run as the test user, whose instances only
	// that user can list.
	usersOf sync.Map // project name -> *project
)

func testUserCred() (*syscall.Credential, error) {
	userOnce.Do(func() {
		if _, err := user.Lookup(testUser); err != nil {
			if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/bin/sh", testUser).CombinedOutput(); err != nil {
				userErr = fmt.Errorf("useradd %s: %v: %s", testUser, err, out)
				return
			}
		}
		u, err := user.Lookup(testUser)
		if err != nil {
			userErr = err
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		userCred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	})
	return userCred, userErr
}

// users runs f as root and as an unprivileged user, in parallel: the
// behaviours that can differ between them. unprivileged(t) tells f which.
func users(t *testing.T, f func(t *testing.T, newP func(*testing.T, string) *project)) {
	t.Run("root", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("not root")
		}
		t.Parallel()
		f(t, newProject)
	})
	t.Run("unprivileged", func(t *testing.T) {
		t.Parallel()
		f(t, newUserProject)
	})
}

// unprivileged reports whether t is the unprivileged run of users.
func unprivileged(t *testing.T) bool { return strings.HasSuffix(t.Name(), "/unprivileged") }

// newUserProject is newProject run as an unprivileged user: as root, the
// user the tests create (its project and state directories its own, the
// binary and the image readable by it); otherwise the current user, who
// is unprivileged already.
func newUserProject(t *testing.T, compose string) *project {
	t.Helper()
	if os.Geteuid() != 0 {
		return newProject(t, compose)
	}
	integration(t)
	cred, err := testUserCred()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp("", "sstack-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	p := &project{t: t, user: cred, name: fmt.Sprintf("it%d", rand.Int63()%1_000_000_000),
		dir: filepath.Join(base, "project"), stateDir: filepath.Join(base, "state")}
	home := filepath.Join(base, "home")
	for _, d := range []string{p.dir, p.stateDir, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		p.own(d)
	}
	_ = os.Chmod(base, 0o755)
	p.busybox = filepath.Join(base, "busybox.sif")
	copyExecutable(t, testimg.Busybox(t), p.busybox, 0o644)
	compose = p.withImages(compose)
	p.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "SSTACK_STATE_DIR=" + p.stateDir, "SSTACK_IMAGE_DIR=" + filepath.Join(p.dir, "images")}
	usersOf.Store(p.name, p)
	p.write("docker-compose.yml", compose)
	t.Cleanup(p.cleanup)
	return p
}

// asUserOf makes cmd run as the user of project's stack (with its
// environment, unless cmd has one), if that is not root.
func asUserOf(name string, cmd *exec.Cmd) *exec.Cmd {
	if v, ok := usersOf.Load(name); ok {
		p := v.(*project)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = p.user
		if cmd.Env == nil {
			cmd.Env = p.env
		}
	}
	return cmd
}

// cleanup removes whatever a failing test left behind, so one failure does
// not cascade; the tests themselves assert that nothing is left.
func (p *project) cleanup() {
	// A detached supervisor (up -d) outlives its test unless taken down.
	if _, err := os.Stat(statedir.Socket(filepath.Join(p.stateDir, p.name))); err == nil {
		if code, _, errs := runCommand(p.t, p.command("down"), time.Minute); code != 0 {
			p.t.Logf("cleanup: sstack down: exit code %d: %s", code, errs)
		}
	}
	for _, name := range instances(p.t, p.name) {
		_ = asUserOf(p.name, exec.Command("apptainer", "-s", "instance", "stop", "-s", "KILL", name)).Run()
	}
}

// command is sstack with args, given the project's compose file and name
// and no metrics endpoint, run in the project directory.
func (p *project) command(args ...string) *exec.Cmd {
	cmd := exec.Command(sstackBin, append([]string{"-f", filepath.Join(p.dir, "docker-compose.yml"), "-n", p.name, "--metrics-addr", ""}, args...)...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	return asUserOf(p.name, cmd)
}

// A running sstack.

type running struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer // empty when stdout was given to launch
	stderr *lockedBuffer
	done   chan struct{}
	code   int
}

// launch starts `sstack args...` (up when args name no command) in the
// background: bin, or the race-built sstack when bin is empty, with its stdout on stdout, or on
// r.stdout when stdout is nil. It is killed at the end of the test if it
// still runs.
func (p *project) launch(bin string, stdout io.Writer, args ...string) *running {
	p.t.Helper()
	cmd := p.command(args...)
	if bin != "" {
		cmd.Path, cmd.Args[0] = bin, bin
	}
	r := &running{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	var out io.Writer = r.stdout
	if stdout != nil {
		out = stdout
	}
	p.t.Cleanup(func() { // after the kill: cleanups run last first
		if p.t.Failed() {
			p.t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		}
	})
	start(p.t, r, cmd, out, r.stderr)
	return r
}

// start is the one launcher of sstack for tests and benchmarks: it starts
// cmd with its output on stdout and stderr, notes its exit code in r when
// it ends, and kills it at the end of the test or benchmark if it still
// runs.
func start(tb testing.TB, r *running, cmd *exec.Cmd, stdout, stderr io.Writer) {
	tb.Helper()
	r.cmd, r.done = cmd, make(chan struct{})
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		r.code = cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = cmd.Process.Kill()
			<-r.done
		}
	})
}

// up starts `sstack up` in the background.
func (p *project) up(args ...string) *running {
	p.t.Helper()
	return p.launch("", nil, args...)
}

// run runs sstack to completion and returns its exit code and output.
func (p *project) run(args ...string) (int, string, string) {
	p.t.Helper()
	r := p.up(args...)
	code := r.wait(p.t, 2*time.Minute)
	return code, r.stdout.String(), r.stderr.String()
}

// upPiped starts `sstack up` (bin, or the race-built binary when empty)
// with its stdout on a pipe the test reads at its own pace.
func upPiped(t *testing.T, p *project, bin string, args ...string) (*running, *os.File) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	r := p.launch(bin, pw, args...)
	pw.Close()
	return r, pr
}

// stillRunning fails the test if sstack has exited; when says at what point of
// the test.
func (r *running) stillRunning(tb testing.TB, when string) {
	tb.Helper()
	select {
	case <-r.done:
		tb.Fatalf("sstack exited (code %d) %s", r.code, when)
	default:
	}
}

// wait waits for sstack to exit by itself and returns its exit code.
func (r *running) wait(tb testing.TB, timeout time.Duration) int {
	tb.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		tb.Fatalf("sstack did not exit within %v; stderr:\n%s", timeout, r.stderr)
	}
	return r.code
}

// waitUntil polls cond until it holds; it fails the test, saying what it
// waited for, when sstack exits first or after timeout.
func (r *running) waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-r.done:
			if cond() {
				return
			}
			t.Fatalf("sstack exited (code %d) while waiting for %s", r.code, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *running) waitFor(t *testing.T, what func() string, substr string, timeout time.Duration) {
	t.Helper()
	r.waitUntil(t, timeout, fmt.Sprintf("%q", substr), func() bool { return strings.Contains(what(), substr) })
}

func (r *running) waitStdout(t *testing.T, substr string) {
	t.Helper()
	r.waitFor(t, r.stdout.String, substr, 60*time.Second)
}

func (r *running) waitStderr(t *testing.T, substr string) {
	t.Helper()
	r.waitFor(t, r.stderr.String, substr, 60*time.Second)
}

// interrupt sends SIGINT as Ctrl-C would and waits for the exit code.
func (r *running) interrupt(t *testing.T) int {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatal("sstack did not exit after SIGINT")
	}
	return r.code
}

// ctrlC interrupts sstack and checks that it exits with 0, as it must
// after Ctrl-C.
func (r *running) ctrlC(t *testing.T) {
	t.Helper()
	if code := r.interrupt(t); code != 0 {
		t.Errorf("exit code %d after Ctrl-C, want 0", code)
	}
}

// Commands that talk to a running stack.

// runCommand runs cmd to completion and returns its exit code and output;
// after timeout it kills cmd and returns -1, the reason at the end of
// stderr.
func runCommand(t *testing.T, cmd *exec.Cmd, timeout time.Duration) (int, string, string) {
	t.Helper()
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return -1, "", err.Error()
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return -1, stdout.String(), stderr.String() + fmt.Sprintf("\n(%s did not end within %v)", strings.Join(cmd.Args, " "), timeout)
	}
}

// sstack runs a command of sstack other than a foreground up (ps, exec,
// stop, up -d, down...) to completion and returns its exit code and
// output; it fails the test if the command hangs.
func (p *project) sstack(args ...string) (int, string, string) {
	p.t.Helper()
	code, out, errs := runCommand(p.t, p.command(args...), 2*time.Minute)
	if code == -1 {
		p.t.Fatalf("sstack %s: %s", strings.Join(args, " "), errs)
	}
	return code, out, errs
}

// must runs an sstack command that must succeed and returns its stdout.
func (p *project) must(args ...string) string {
	p.t.Helper()
	code, out, errs := p.sstack(args...)
	if code != 0 {
		p.t.Fatalf("sstack %s: exit code %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// upDetached runs `sstack up -d args...`, which must succeed, and returns
// what it printed on stderr.
func (p *project) upDetached(args ...string) string {
	p.t.Helper()
	code, out, errs := p.sstack(append([]string{"up", "-d"}, args...)...)
	if code != 0 {
		p.t.Fatalf("up -d: exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	return errs
}

// down runs `sstack down`, which must succeed.
func (p *project) down() {
	p.t.Helper()
	p.must("down")
}

// replicaRow is one replica of `sstack ps --format json`.
type replicaRow struct {
	Name       string `json:"Name"`
	Service    string `json:"Service"`
	Replica    int    `json:"Replica"`
	Instance   string `json:"Instance"`
	State      string `json:"State"`
	Health     string `json:"Health"`
	Status     string `json:"Status"`
	ExitCode   int    `json:"ExitCode"`
	Restarts   int    `json:"Restarts"`
	Pid        int    `json:"Pid"`
	Supervised bool   `json:"Supervised"`
	Node       string `json:"Node"`
}

// ps returns the rows of `sstack ps --format json args...`.
func (p *project) ps(args ...string) []replicaRow {
	p.t.Helper()
	out := p.must(append([]string{"ps", "--format", "json"}, args...)...)
	var rows []replicaRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		p.t.Fatalf("ps --format json: %v:\n%s", err, out)
	}
	return rows
}

// stats returns the rows of `sstack stats --no-stream --format json`, one
// line of JSON each.
func (p *project) stats() []statsRow {
	p.t.Helper()
	out := p.must("stats", "--no-stream", "--format", "json")
	var rows []statsRow
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var row statsRow
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			p.t.Fatalf("stats --format json: %v: %q", err, line)
		}
		rows = append(rows, row)
	}
	return rows
}

// row is the replica named name (web-1) in rows, or nil.
func row(rows []replicaRow, name string) *replicaRow {
	for i := range rows {
		if rows[i].Name == name {
			return &rows[i]
		}
	}
	return nil
}

// statuses maps each replica of rows to its status, as ps shows it.
func statuses(rows []replicaRow) map[string]string {
	m := map[string]string{}
	for _, r := range rows {
		m[r.Name] = r.Status
	}
	return m
}

// waitPs polls `ps -a` until cond holds for its rows and returns them; it
// fails the test, saying what it waited for and the last rows, after a
// minute.
func (p *project) waitPs(what string, cond func([]replicaRow) bool) []replicaRow {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		rows := p.ps("-a")
		if cond(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s; ps -a: %v", what, statuses(rows))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStatus waits until ps -a shows every replica of want with its
// status ("running", "exited (3)"...).
func (p *project) waitStatus(want map[string]string) []replicaRow {
	p.t.Helper()
	return p.waitPs(fmt.Sprintf("statuses %v", want), func(rows []replicaRow) bool {
		got := statuses(rows)
		for name, st := range want {
			if got[name] != st {
				return false
			}
		}
		return true
	})
}

// waitRunning waits until ps -a shows every one of replicas running and
// returns its rows.
func (p *project) waitRunning(replicas ...string) []replicaRow {
	p.t.Helper()
	want := map[string]string{}
	for _, r := range replicas {
		want[r] = "running"
	}
	return p.waitStatus(want)
}

// waitLogs polls `sstack logs` until it holds every one of want (lines as
// logs prints them, "web-1 | ready"). A service that has started may not
// have run a line yet: wait for what it prints once ready (its signal
// traps set) before sending it signals.
func (p *project) waitLogs(want ...string) string {
	p.t.Helper()
	var out string
	eventually(p.t, time.Minute, fmt.Sprintf("logs to show %q", want), func() bool {
		_, out, _ = p.sstack("logs")
		for _, w := range want {
			if !strings.Contains(out, w) {
				return false
			}
		}
		return true
	})
	return out
}

// eventually polls cond until it holds; it fails the test, saying what it
// waited for, after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// What is left behind.

// listedInstance is an instance as `apptainer instance list --json`
// shows it.
type listedInstance struct {
	Instance   string `json:"instance"`
	Pid        int    `json:"pid"`
	LogOutPath string `json:"logOutPath"`
}

// instanceList lists the Apptainer instances that pattern matches (a name
// or NAME.*), as the user of project's stack sees them.
func instanceList(t *testing.T, project, pattern string) []listedInstance {
	t.Helper()
	out, err := asUserOf(project, exec.Command("apptainer", "instance", "list", "--json", pattern)).Output()
	if err != nil {
		t.Fatalf("instance list: %v", err)
	}
	var listed struct {
		Instances []listedInstance `json:"instances"`
	}
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatalf("instance list: %v: %s", err, out)
	}
	return listed.Instances
}

// instances lists the Apptainer instances of a project.
func instances(t *testing.T, project string) []string {
	var names []string
	for _, i := range instanceList(t, project, project+".*") {
		names = append(names, i.Instance)
	}
	return names
}

// leftovers lists processes that belong to a project's instances or to
// its network (the holder's title names the project; holder and forwarder
// run in the project's state directory).
func leftovers(project string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		cwd, _ := os.Readlink(filepath.Join(filepath.Dir(f), "cwd"))
		if strings.Contains(cmd, "instance://"+project+".") || strings.Contains(cmd, "["+project+".") || strings.TrimSuffix(filepath.Base(cwd), " (deleted)") == project {
			found = append(found, strings.TrimSpace(cmd))
		}
	}
	return found
}

func assertNothingLeft(t *testing.T, project string) {
	t.Helper()
	if names := instances(t, project); len(names) > 0 {
		t.Errorf("instances left behind: %v", names)
	}
	if procs := leftovers(project); len(procs) > 0 {
		t.Errorf("processes left behind: %v", procs)
	}
}

// assertNothingLeft asserts that no instance and no process of the
// project is left and, in an allocation, no step of its job and no agent.
func (p *project) assertNothingLeft() {
	p.t.Helper()
	assertNothingLeft(p.t, p.name)
	if p.job != "" {
		assertNothingLeftInJob(p.t, p.job)
	}
}

// downLeavesNothing runs `sstack down`, which must succeed, and asserts
// that nothing of the project is left.
func (p *project) downLeavesNothing() {
	p.t.Helper()
	p.down()
	p.assertNothingLeft()
}

// ctrlCLeavesNothing interrupts a foreground up as Ctrl-C would, which
// must exit 0, and asserts that nothing of the project is left.
func (p *project) ctrlCLeavesNothing(r *running) {
	p.t.Helper()
	r.ctrlC(p.t)
	p.assertNothingLeft()
}

// refusedBeforeStart runs sstack args (up in the foreground, or config...)
// and asserts that it fails, with exit code code (any but 0 when code is
// -1), before anything starts: stderr holds every one of want, no
// instance was created or started, and nothing is left. It returns stdout
// and stderr.
func (p *project) refusedBeforeStart(code int, args []string, want ...string) (string, string) {
	p.t.Helper()
	cmd := "sstack " + strings.Join(args, " ")
	got, stdout, stderr := p.run(args...)
	if got == 0 || (code != -1 && got != code) {
		p.t.Errorf("%s: exit code %d, want %d (-1: any failure)\nstderr:\n%.2000s", cmd, got, code, stderr)
	}
	contains(p.t, cmd+": stderr", stderr, want...)
	for _, started := range []string{"Creating", "Created", "Started"} {
		if strings.Contains(stderr, started) {
			p.t.Errorf("%s: something was started:\n%.2000s", cmd, stderr)
		}
	}
	p.assertNothingLeft()
	return stdout, stderr
}

// killSupervisor kills the project's detached supervisor with SIGKILL, as
// a crash would, and waits until it is gone; what it started runs on.
func (p *project) killSupervisor() {
	p.t.Helper()
	pid, err := os.ReadFile(statedir.Lock(filepath.Join(p.stateDir, p.name)))
	if err != nil {
		p.t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
	if n <= 0 {
		p.t.Fatalf("supervisor pid %q", pid)
	}
	if err := exec.Command("kill", "-KILL", strconv.Itoa(n)).Run(); err != nil {
		p.t.Fatal(err)
	}
	eventually(p.t, 10*time.Second, "the supervisor gone", func() bool { return exec.Command("kill", "-0", strconv.Itoa(n)).Run() != nil })
}

// Output.

// lines returns the stdout lines of a replica, without their prefix.
func lines(stdout, replica string) []string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(replica) + ` *\| (.*)$`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(stdout, -1) {
		out = append(out, m[1])
	}
	return out
}

func countLines(stdout, replica, text string) int {
	n := 0
	for _, l := range lines(stdout, replica) {
		if l == text {
			n++
		}
	}
	return n
}

// contains asserts that s, named what ("stdout", "stderr"), holds every
// one of want.
func contains(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// before asserts that a occurs in s, and before b.
func before(t *testing.T, s, a, b string) {
	t.Helper()
	i, j := strings.Index(s, a), strings.Index(s, b)
	if i < 0 || j < 0 || i > j {
		t.Errorf("want %q before %q in:\n%s", a, b, s)
	}
}

// Images.

// sandboxImage builds a busybox sandbox directory image with a file at
// /seed/hello.txt, for named volume seeding.
func sandboxImage(t *testing.T) string {
	t.Helper()
	testimg.RequireRuntime(t)
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "root", "seed", "proc", "sys", "dev", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox-static is needed: ", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "echo", "sleep", "env", "ls", "printf", "seq", "touch", "id", "hostname", "grep", "tr", "pwd"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\n"), 0o644)
	testutil.WriteFile(t, filepath.Join(root, "seed", "hello.txt"), "seeded from image\n", 0o644)
	sandbox := filepath.Join(t.TempDir(), "sandbox")
	if out, err := exec.Command("apptainer", "-s", "build", "--sandbox", sandbox, root).CombinedOutput(); err != nil {
		t.Fatalf("building a sandbox image: %v: %s", err, out)
	}
	return sandbox
}

// Metrics.

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

func scrape(addr string) (string, error) {
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

type scraped map[string]*dto.MetricFamily

func parseScrape(text string) (scraped, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(text))
}

// get finds the series of family name whose labels are exactly want.
func (s scraped) get(name string, want map[string]string) *dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		same := true
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				same = false
			}
		}
		if same {
			return m
		}
	}
	return nil
}

// value of a counter or gauge series; ok is false when it does not exist.
func (s scraped) value(name string, want map[string]string) (float64, bool) {
	m := s.get(name, want)
	if m == nil {
		return 0, false
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue(), true
	}
	return m.GetGauge().GetValue(), true
}

func replicaLabels(project, service string, replica int, extra ...string) map[string]string {
	l := map[string]string{"project": project, "service": service, "replica": strconv.Itoa(replica)}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

// waitScrape polls addr until check (given a parsed scrape) returns "",
// and returns that scrape; it fails with check's last complaint.
func waitScrape(t *testing.T, r *running, addr string, timeout time.Duration, check func(scraped) string) (scraped, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	why := "no scrape yet"
	for {
		text, err := scrape(addr)
		if err == nil {
			fams, perr := parseScrape(text)
			if perr != nil {
				t.Fatalf("/metrics is not in the Prometheus text format: %v\n%s", perr, text)
			}
			if why = check(fams); why == "" {
				return fams, text
			}
		} else {
			why = err.Error()
		}
		r.stillRunning(t, "while waiting for metrics: "+why)
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for metrics: %s\n%s", why, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Terminals.

// openPty returns the master and slave ends of a new pseudo-terminal.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		t.Skipf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		t.Skipf("ptsname: %v", e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("opening the pty slave: %v", err)
	}
	return m, s
}

// runOnTerminal runs sstack to completion with its stdout on a terminal
// and returns what the terminal showed (CR LF turned back into LF).
func runOnTerminal(t *testing.T, p *project, env []string, args ...string) (int, string, string) {
	t.Helper()
	master, slave := openPty(t)
	defer master.Close()
	t.Cleanup(func() { slave.Close() })
	p.env = append(p.env[:len(p.env):len(p.env)], env...)
	r := p.launch("", slave, args...)
	slave.Close()
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&out, master) // ends with EIO once the slave is closed by all
	}()
	code := r.wait(t, 2*time.Minute)
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("terminal output did not end")
	}
	return code, strings.ReplaceAll(out.String(), "\r\n", "\n"), r.stderr.String()
}

package main

// Integration tests: they build the sstack binary and run it, as a user
// would, against the real Apptainer with images built offline.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sstack/internal/testimg"
)

var sstackBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sstack-bin")
	if err != nil {
		panic(err)
	}
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

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// project is one test stack: a directory with a compose file, its own
// state directory and a unique project name.
type project struct {
	t        *testing.T
	name     string
	dir      string
	stateDir string
	env      []string
}

func newProject(t *testing.T, compose string) *project {
	t.Helper()
	testimg.RequireRuntime(t)
	p := &project{
		t:        t,
		name:     fmt.Sprintf("it%d", rand.Int63()%1_000_000_000),
		dir:      t.TempDir(),
		stateDir: t.TempDir(),
	}
	p.env = append(os.Environ(), "SSTACK_STATE_DIR="+p.stateDir, "SSTACK_IMAGE_DIR="+filepath.Join(p.dir, "images"))
	p.write("docker-compose.yml", compose)
	t.Cleanup(p.cleanup)
	return p
}

func (p *project) write(name, content string) string {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// cleanup removes whatever a failing test left behind, so one failure does
// not cascade; the tests themselves assert that nothing is left.
func (p *project) cleanup() {
	for _, name := range instances(p.t, p.name) {
		_ = exec.Command("apptainer", "-s", "instance", "stop", "-s", "KILL", name).Run()
	}
}

type running struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
	code   int
}

func (p *project) command(args ...string) *exec.Cmd {
	cmd := exec.Command(sstackBin, append([]string{"-f", filepath.Join(p.dir, "docker-compose.yml"), "-n", p.name, "--metrics-addr", ""}, args...)...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	return cmd
}

// up starts `sstack up` in the background.
func (p *project) up(args ...string) *running {
	p.t.Helper()
	r := &running{cmd: p.command(args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		_ = r.cmd.Wait()
		r.code = r.cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	p.t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		if p.t.Failed() {
			p.t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		}
	})
	return r
}

// run runs sstack to completion and returns its exit code and output.
func (p *project) run(args ...string) (int, string, string) {
	p.t.Helper()
	r := p.up(args...)
	select {
	case <-r.done:
	case <-time.After(2 * time.Minute):
		p.t.Fatalf("sstack %v did not finish", args)
	}
	return r.code, r.stdout.String(), r.stderr.String()
}

func (r *running) waitFor(t *testing.T, what func() string, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(what(), substr) {
		select {
		case <-r.done:
			if strings.Contains(what(), substr) {
				return
			}
			t.Fatalf("sstack exited (code %d) before printing %q", r.code, substr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q", substr)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// instances lists the Apptainer instances of a project.
func instances(t *testing.T, project string) []string {
	out, err := exec.Command("apptainer", "instance", "list", "--json", project+".*").Output()
	if err != nil {
		t.Fatalf("instance list: %v", err)
	}
	var list struct {
		Instances []struct {
			Instance string `json:"instance"`
		} `json:"instances"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("instance list: %v: %s", err, out)
	}
	var names []string
	for _, i := range list.Instances {
		names = append(names, i.Instance)
	}
	return names
}

// leftovers lists processes that belong to a project's instances.
func leftovers(project string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "instance://"+project+".") || strings.Contains(cmd, "["+project+".") {
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

package actors

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"sstack/internal/api"
	"sstack/singularity"
)

// fakeRuntime records what the actors ask of Apptainer; each started
// process runs a behaviour function chosen by the test.
type fakeRuntime struct {
	mu        sync.Mutex
	events    []string // "start web.1", "exec web.1", "signal web.1 terminated", "stop web.1"
	instances map[string]bool
	behave    func(instance string, run int, p *fakeProc)
	runs      map[string]int
	failStart map[string]error
}

func newFakeRuntime(behave func(instance string, run int, p *fakeProc)) *fakeRuntime {
	return &fakeRuntime{instances: map[string]bool{}, runs: map[string]int{}, behave: behave, failStart: map[string]error{}}
}

func (f *fakeRuntime) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fmt.Sprintf(format, args...))
}

func (f *fakeRuntime) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *fakeRuntime) StartInstance(ctx context.Context, spec singularity.InstanceSpec) error {
	f.mu.Lock()
	err := f.failStart[spec.Name]
	f.mu.Unlock()
	if err != nil {
		f.record("startfail %s", spec.Name)
		return err
	}
	time.Sleep(5 * time.Millisecond)
	f.mu.Lock()
	f.instances[spec.Name] = true
	f.mu.Unlock()
	f.record("start %s", spec.Name)
	return nil
}

func (f *fakeRuntime) StopInstance(ctx context.Context, name, sig string, timeout time.Duration) error {
	f.mu.Lock()
	delete(f.instances, name)
	f.mu.Unlock()
	f.record("stop %s", name)
	return nil
}

func (f *fakeRuntime) ListInstances(ctx context.Context, glob string) ([]singularity.InstanceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.instances[glob] {
		return []singularity.InstanceInfo{{Name: glob}}, nil
	}
	return nil, nil
}

func (f *fakeRuntime) Exec(ctx context.Context, spec singularity.ProcessSpec) (int, []byte, error) {
	return 0, nil, nil
}

func (f *fakeRuntime) EndRun(ctx context.Context, instance string) (int, error) { return 0, nil }

func (f *fakeRuntime) Usage(ctx context.Context, instances []string) (map[string]api.Usage, error) {
	return nil, nil
}

// SeedVolume records the seed and writes the image's path into the volume.
func (f *fakeRuntime) SeedVolume(ctx context.Context, spec singularity.SeedSpec) error {
	f.record("seed %s %s", spec.Instance, spec.Path)
	return os.WriteFile(filepath.Join(spec.HostDir, "seeded-from"), []byte(spec.Image+":"+spec.Path), 0o644)
}

func (f *fakeRuntime) StartProcess(ctx context.Context, spec singularity.ProcessSpec) (singularity.Process, error) {
	f.mu.Lock()
	f.runs[spec.Instance]++
	run := f.runs[spec.Instance]
	f.mu.Unlock()
	f.record("exec %s", spec.Instance)
	p := &fakeProc{f: f, name: spec.Instance, exit: make(chan int, 1), signals: make(chan os.Signal, 4)}
	out, _ := spec.Stdout.(*os.File)
	errw, _ := spec.Stderr.(*os.File)
	// The real client holds its own copies of the pipe ends.
	p.stdout, _ = dupFile(out)
	p.stderr, _ = dupFile(errw)
	go func() {
		f.behave(spec.Instance, run, p)
	}()
	return p, nil
}

func dupFile(f *os.File) (*os.File, error) {
	if f == nil {
		return nil, nil
	}
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

type fakeProc struct {
	f       *fakeRuntime
	name    string
	exit    chan int
	signals chan os.Signal
	stdout  *os.File
	stderr  *os.File
	once    sync.Once
	code    int
}

// Exit ends the fake process with code, closing its output.
func (p *fakeProc) Exit(code int) {
	p.once.Do(func() {
		if p.stdout != nil {
			p.stdout.Close()
		}
		if p.stderr != nil {
			p.stderr.Close()
		}
		p.exit <- code
	})
}

func (p *fakeProc) Print(line string) { _, _ = io.WriteString(p.stdout, line+"\n") }

func (p *fakeProc) Signal(sig os.Signal) error {
	p.f.record("signal %s %v", p.name, sig)
	select {
	case p.signals <- sig:
	default:
	}
	return nil
}

func (p *fakeProc) Kill() error {
	p.f.record("kill %s", p.name)
	p.Exit(137)
	return nil
}

func (p *fakeProc) Wait() (int, error) {
	p.code = <-p.exit
	return p.code, nil
}

func (p *fakeProc) Pid() int { return 0 }

func (p *fakeProc) Running(time.Duration) (int, error) { return 0, nil }

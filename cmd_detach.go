package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"sstack/internal/engine"
	"sstack/internal/statedir"
)

// The detached supervisor of up -d: a background copy of this command
// that reports its start-up to the waiting parent through a pipe.

// detachedChildEnv marks the background process that `up -d` starts; its
// value is the descriptor of the pipe to the waiting parent.
const detachedChildEnv = "SSTACK_DETACHED_CHILD"

// readyMarker ends a detached child's start-up report: what follows it on
// the pipe is nothing.
const readyMarker = "\x00sstack-ready"

// failedMarker ends it too, for a stack that did not all start (a
// dependency failed, --wait-timeout passed): up -d exits 1, and what
// started goes on running, as with docker compose up -d.
const failedMarker = "\x00sstack-failed"

// detach starts this same command again as a background process (new
// session, stdin from /dev/null, no terminal) and relays its start-up
// report until it says every service has started, or why not.
func detach(o *options) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), detachedChildEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	devnull.Close()
	if err != nil {
		return fmt.Errorf("starting the detached supervisor: %w", err)
	}
	ready, failed := false, false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == readyMarker || line == failedMarker {
			ready, failed = true, line == failedMarker
			break
		}
		fmt.Fprintln(o.stderr, line)
	}
	r.Close()
	if ready {
		// The child goes on alone; it is not ours to wait for.
		_ = cmd.Process.Release()
		if failed {
			return &exitError{1}
		}
		return nil
	}
	_ = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if code <= 0 {
		code = 1
	}
	return &exitError{code}
}

// detachedReport is where a detached supervisor's status lines go: to the
// waiting parent (its stderr pipe) until every service has started, then to
// sstack.log in the state directory.
type detachedReport struct {
	mu     sync.Mutex
	parent *os.File // nil once detached
	log    *os.File
}

func newDetachedReport(stateDir string) (*detachedReport, error) {
	if err := statedir.Private(stateDir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(statedir.SupervisorLog(stateDir), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, statedir.Problem(err)
	}
	return &detachedReport{parent: os.Stderr, log: f}, nil
}

func (d *detachedReport) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, _ = d.log.Write(p)
	if d.parent != nil {
		_, _ = d.parent.Write(p)
	}
	return len(p), nil
}

// await tells the parent once every service has started (or is healthy
// with --wait); when one cannot (it failed, or --wait-timeout passed) the
// parent learns why from the status lines and exits 1, and what started
// goes on running, as with docker compose up -d ('sstack down' ends it).
func (d *detachedReport) await(sup *engine.Supervisor, o *options) {
	ctx := context.Background()
	if o.waitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(o.waitTimeout)*time.Second)
		defer cancel()
	}
	err := sup.WaitStarted(ctx, o.wait)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("--wait-timeout %ds: the services were not all healthy in time", o.waitTimeout)
		}
		if !errors.Is(err, engine.ErrStackStopped) {
			fmt.Fprintf(d, "sstack: %v; what started goes on running: see 'sstack -n %s ps -a', end it with 'sstack -n %s down'\n", err, sup.Project(), sup.Project())
			d.detach(sup, failedMarker)
			return
		}
		fmt.Fprintf(d, "sstack: %v\n", err)
		return
	}
	d.detach(sup, readyMarker)
}

// detach ends the report to the parent with marker.
func (d *detachedReport) detach(sup *engine.Supervisor, marker string) {
	sup.Flush() // the parent shows every "Started" line before it returns
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parent == nil {
		return
	}
	fmt.Fprintln(d.parent, marker)
	// From now on fd 2 (a panic's trace, too) goes to the log file, and
	// the parent's end sees EOF.
	_ = syscall.Dup2(int(d.log.Fd()), 2)
	d.parent = nil
}

// finish: the stack is over; the parent, if still waiting, gets the code.
func (d *detachedReport) finish(code int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parent != nil && code == 0 {
		fmt.Fprintln(d.parent, "sstack: the stack stopped before every service had started")
	}
	d.log.Close()
}

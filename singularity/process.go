package singularity

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// StartProcess starts the service process with `exec instance://` (or `run`
// when spec.Run). ctx bounds only the start: the process outlives it and is
// stopped with Signal or Kill. The caller must call Wait.
//
// Pass *os.File writers (e.g. the write end of an os.Pipe): the client and
// the process inside write to them directly. Other writers get a copying
// goroutine, and Wait then gives up on output still held by orphans one
// second after the client exits.
func (a *Apptainer) StartProcess(ctx context.Context, spec ProcessSpec) (Process, error) {
	args, env, err := a.processCommand(spec)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("instance %q: %w", spec.Instance, err)
	}
	cmd, err := a.commandIn(context.Background(), spec.Net, env, args...)
	if err != nil {
		return nil, fmt.Errorf("instance %q: %w", spec.Instance, err)
	}
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("instance %q: starting %s: %w", spec.Instance, a.Binary, err)
	}
	// A pidfd of the client tells reliably whether it has exited (see
	// clientExited). Nothing can reap it before StartProcess returns.
	clientFD, err := pidfdOpen(cmd.Process.Pid)
	if err != nil {
		clientFD = -1
	}
	return &process{cmd: cmd, clientFD: clientFD}, nil
}

// process is a running `apptainer exec|run instance://` client. The client
// (exe: starter, title "Apptainer runtime parent") forks short-lived
// starter stages and then exactly one child that execs the real process.
type process struct {
	cmd *exec.Cmd

	waitOnce sync.Once
	code     int
	err      error

	mu       sync.Mutex
	waited   bool   // Wait has reaped the client: its pid may be reused
	clientFD int    // pidfd of the client, -1 without pidfd support
	child    *child // the real process, once found
}

// child is the real process, held by a pidfd so a signal can never reach a
// recycled pid. fd is -1 on kernels without pidfd (before 5.3).
type child struct {
	pid int
	fd  int
}

func (p *process) Pid() int { return p.cmd.Process.Pid }

func (p *process) Running(wait time.Duration) (int, error) {
	c, err := p.realChild(wait)
	switch {
	case err == nil:
		return c.pid, nil
	case errors.Is(err, errNoChild):
		return p.Pid(), nil
	}
	return 0, err
}

// childWait is how long Signal waits for the real process to appear; exec
// takes about 45 ms, more on a loaded machine.
const childWait = 2 * time.Second

var errNoChild = errors.New("the process inside the instance has not started")

func (p *process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal %v: not a syscall.Signal", sig)
	}
	c, err := p.realChild(childWait)
	if errors.Is(err, errNoChild) {
		// Still no process inside: all we can do is stop the client, which
		// takes a late-starting process down with it.
		return p.signalClient(s)
	}
	if err != nil {
		return err
	}
	return p.signalChild(c, s)
}

// Kill SIGKILLs the real process and lets the client reap it and exit
// (with 137) by itself; the client is killed too if it has not exited
// after a second. Killing the client first would orphan the process, and
// an orphan re-parented to a subreaper sstack stays a zombie that keeps
// its instance from stopping. Kill does not block.
func (p *process) Kill() error {
	c, _ := p.realChild(0)
	if c == nil {
		return p.signalClient(syscall.SIGKILL)
	}
	_ = p.signalChild(c, syscall.SIGKILL)
	go func() {
		deadline := time.Now().Add(time.Second)
		for !p.clientExited() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		_ = p.signalClient(syscall.SIGKILL)
	}()
	return nil
}

// Wait returns the client's exit code, which is the inner process's (128+N
// when it died of signal N, 255 when Apptainer itself failed). 128+N also
// when the client was killed by signal N. It may be called more than once
// and concurrently with Signal and Kill.
func (p *process) Wait() (int, error) {
	p.waitOnce.Do(func() {
		err := p.cmd.Wait()
		p.code = exitCode(p.cmd.ProcessState)
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
			p.err = err
		}
		p.mu.Lock()
		p.waited = true
		if p.child != nil {
			closeChild(p.child)
		}
		if p.clientFD >= 0 {
			syscall.Close(p.clientFD)
			p.clientFD = -1
		}
		p.mu.Unlock()
	})
	return p.code, p.err
}

func (p *process) signalClient(s syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waited {
		return os.ErrProcessDone
	}
	err := p.cmd.Process.Signal(s)
	if errors.Is(err, os.ErrProcessDone) {
		return os.ErrProcessDone
	}
	return err
}

func (p *process) signalChild(c *child, s syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waited {
		return os.ErrProcessDone
	}
	var err error
	if c.fd >= 0 {
		err = pidfdSendSignal(c.fd, s)
	} else {
		err = syscall.Kill(c.pid, s)
	}
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// realChild finds the real process, polling for up to wait. It returns
// os.ErrProcessDone once the client has exited and errNoChild when the wait
// is over.
func (p *process) realChild(wait time.Duration) (*child, error) {
	p.mu.Lock()
	if p.waited {
		p.mu.Unlock()
		return nil, os.ErrProcessDone
	}
	if p.child != nil {
		c := p.child
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	deadline := time.Now().Add(wait)
	for {
		c, gone := p.lookupChild()
		if c != nil {
			p.mu.Lock()
			defer p.mu.Unlock()
			switch {
			case p.waited:
				closeChild(c)
				return nil, os.ErrProcessDone
			case p.child != nil: // found by a concurrent call
				closeChild(c)
				return p.child, nil
			}
			p.child = c
			return c, nil
		}
		if gone {
			return nil, os.ErrProcessDone
		}
		if !time.Now().Before(deadline) {
			return nil, errNoChild
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lookupChild makes one attempt to find the real process among the
// client's children: the one whose executable is no longer the client's
// (the starter stages share it). gone reports that the client has exited.
func (p *process) lookupChild() (c *child, gone bool) {
	if p.clientExited() {
		return nil, true
	}
	ppid := p.cmd.Process.Pid
	c = p.scanChildren(ppid)
	// What /proc said about ppid is only about our client if the client
	// had not been reaped (its pid free for reuse) by now.
	if p.clientExited() {
		if c != nil {
			closeChild(c)
		}
		return nil, true
	}
	return c, false
}

func (p *process) scanChildren(ppid int) *child {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/task/" + strconv.Itoa(ppid) + "/children")
	if err != nil {
		return nil
	}
	clientExe, err := os.Readlink("/proc/" + strconv.Itoa(ppid) + "/exe")
	if err != nil {
		return nil
	}
	for _, field := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(field)
		if err != nil || !isServiceProcess(pid, clientExe) {
			continue
		}
		fd, err := pidfdOpen(pid)
		switch {
		case errors.Is(err, syscall.ENOSYS):
			fd = -1
		case err != nil:
			continue // exited meanwhile
		}
		// pid may have been recycled between reading children and opening
		// the pidfd: it must still be the client's child.
		if _, parent, err := procStat(pid); err != nil || parent != ppid {
			if fd >= 0 {
				syscall.Close(fd)
			}
			continue
		}
		return &child{pid: pid, fd: fd}
	}
	return nil
}

// clientExited tells whether the client has exited (reaped or not). The
// pidfd is readable once the whole process has exited; /proc/PID/stat is
// no help: around the exec of the starter the client's leader thread shows
// state Z for a moment while the process goes on (measured).
func (p *process) clientExited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waited {
		return true
	}
	if p.clientFD < 0 {
		return p.cmd.Process.Signal(syscall.Signal(0)) != nil
	}
	fds := []pollFd{{fd: int32(p.clientFD), events: pollIn}}
	var zero syscall.Timespec
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return errno == 0 && n > 0 && fds[0].revents&(pollIn|pollHup) != 0
}

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn  = 0x1
	pollHup = 0x10
)

// isServiceProcess tells the real process from a starter stage: stages run
// the client's own executable. When /proc/PID/exe is unreadable, the
// process title decides: stages are called "Apptainer runtime ..." (or
// "Singularity runtime ...").
func isServiceProcess(pid int, clientExe string) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err == nil {
		return exe != clientExe
	}
	if !errors.Is(err, os.ErrPermission) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(cmdline) == 0 {
		return false
	}
	title := string(cmdline)
	return !strings.HasPrefix(title, "Apptainer runtime") && !strings.HasPrefix(title, "Singularity runtime")
}

// procStat reads the state and parent pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(string(data))
}

// parseStat parses "PID (COMM) STATE PPID ..."; COMM may hold spaces and
// parentheses, so fields are counted after the last ')'.
func parseStat(s string) (state byte, ppid int, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed stat line %q", s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("malformed stat line %q", s)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}

func closeChild(c *child) {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -2 // closed; signalChild never runs after this (p.waited)
	}
}

// pidfd_open and pidfd_send_signal have the same numbers on every Linux
// architecture (they were added after the syscall tables were unified).
const (
	sysPidfdSendSignal = 424
	sysPidfdOpen       = 434
)

func pidfdOpen(pid int) (int, error) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func pidfdSendSignal(fd int, sig syscall.Signal) error {
	_, _, errno := syscall.Syscall6(sysPidfdSendSignal, uintptr(fd), uintptr(sig), 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Interactive returns the `apptainer exec instance://` command of a user's
// `sstack exec`, not started: the caller gives it its own stdin, stdout and
// stderr (a terminal, or pipes). Unlike service processes it stays in the
// caller's process group, so that the terminal's Ctrl-C and job control
// reach it as they would reach `docker compose exec`.
func (a *Apptainer) Interactive(ctx context.Context, spec ProcessSpec) (*exec.Cmd, error) {
	args, env, err := a.processCommand(spec)
	if err != nil {
		return nil, err
	}
	argv, err := spec.Net.enter(append([]string{a.Binary}, args...))
	if err != nil {
		return nil, fmt.Errorf("instance %q: %w", spec.Instance, err)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	return cmd, nil
}

// processCommand is the argument list and environment of the client that
// runs spec's process.
func (a *Apptainer) processCommand(spec ProcessSpec) (args, env []string, err error) {
	if args, err = processArgs(spec); err != nil {
		return nil, nil, err
	}
	if env, err = serviceEnv(a.baseEnv(), spec.Env); err != nil {
		return nil, nil, fmt.Errorf("instance %q: %w", spec.Instance, err)
	}
	return args, env, nil
}

package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"sstack/internal/usage"
	"sstack/singularity"
)

// LaunchTimeout bounds how long an agent's step may take to print its
// ready line: srun may wait for the step's resources.
const LaunchTimeout = 2 * time.Minute

// lostCode is the exit code of a process whose agent (its node's step)
// died: under proctrack/cgroup everything in the step is SIGKILLed.
const lostCode = 128 + int(syscall.SIGKILL)

// Remote is the runtime of one node, served by an agent in a job step
// there. It launches the agent on first use, and again when the step has
// died, so that a restart policy can bring a lost replica back.
type Remote struct {
	Node string
	// Command builds the step that runs `sstack agent` on the node; Remote
	// adds the token to its environment and reads its stdout.
	Command func() *exec.Cmd
	// Log gets the agent's stderr and what Remote notices of it.
	Log io.Writer

	mu     sync.Mutex
	cur    *conn
	closed bool
}

var _ singularity.Runtime = (*Remote)(nil)

// conn is one launched agent.
type conn struct {
	node   string
	log    io.Writer
	base   string
	token  string
	http   *http.Client
	cmd    *exec.Cmd
	gone   chan struct{} // closed when the step ended or the session broke
	once   sync.Once
	cancel context.CancelFunc // ends the session
	exited chan struct{}      // closed once the srun client was reaped
}

func (c *conn) lost() {
	c.once.Do(func() { close(c.gone) })
}

func (c *conn) alive() bool {
	select {
	case <-c.gone:
		return false
	default:
		return true
	}
}

// Start launches the agent if it does not run; up calls it for every
// node at once so that the steps start in parallel.
func (r *Remote) Start(ctx context.Context) error {
	_, err := r.conn(ctx)
	return err
}

func (r *Remote) conn(ctx context.Context) (*conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("node %s: the stack is being taken down", r.Node)
	}
	if r.cur != nil && r.cur.alive() {
		return r.cur, nil
	}
	if r.cur != nil {
		fmt.Fprintf(r.Log, "node %s: the agent's job step ended; starting a new one\n", r.Node)
	}
	c, err := r.launch(ctx)
	if err != nil {
		return nil, err
	}
	r.cur = c
	return c, nil
}

// live is the running agent, without launching one.
func (r *Remote) live() *conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && r.cur.alive() {
		return r.cur
	}
	return nil
}

func (r *Remote) launch(ctx context.Context) (*conn, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b[:])
	cmd := r.Command()
	cmd.Env = append(append([]string(nil), cmd.Environ()...), TokenEnv+"="+token)
	cmd.Stderr = r.Log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("node %s: starting the agent's job step (%s): %w", r.Node, cmd.Path, err)
	}
	c := &conn{node: r.Node, log: r.Log, token: token, cmd: cmd, gone: make(chan struct{}), exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, readyPrefix); ok && !sent {
				addr <- a
				sent = true
				continue
			}
			fmt.Fprintf(r.Log, "node %s: agent: %s\n", r.Node, line)
		}
		if !sent {
			close(addr)
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(c.exited)
		c.lost()
	}()
	timeout := time.NewTimer(LaunchTimeout)
	defer timeout.Stop()
	var a string
	select {
	case got, ok := <-addr:
		if !ok {
			<-c.exited
			return nil, fmt.Errorf("node %s: the agent's job step ended before it listened (%s); its messages are above", r.Node, cmd.ProcessState)
		}
		a = got
	case <-timeout.C:
		c.kill()
		return nil, fmt.Errorf("node %s: the agent's job step did not start within %s (is the allocation still there? squeue -j $SLURM_JOB_ID)", r.Node, LaunchTimeout)
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	}
	c.base = "http://" + a
	c.http = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}
	sctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	// The session tells the agent the supervisor lives; its end (the
	// agent died) tells this side.
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, c.base+pathSession, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		c.kill()
		return nil, fmt.Errorf("node %s: reaching the agent at %s: %w", r.Node, a, err)
	}
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.lost()
	}()
	return c, nil
}

// kill ends the step from this side: srun forwards SIGUSR1 to the agent,
// which then stops what it started (SIGTERM to srun would SIGKILL the
// agent at once, measured); SIGKILL after a while.
func (c *conn) kill() {
	if c.cancel != nil {
		c.cancel()
	}
	_ = c.cmd.Process.Signal(syscall.SIGUSR1)
	select {
	case <-c.exited:
	case <-time.After(cleanupTimeout + 20*time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// Close shuts the agent down (it stops anything still running there) and
// waits for its step to end. Nothing launches an agent afterwards.
func (r *Remote) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	c := r.cur
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	if c.alive() {
		_ = c.call(ctx, pathShutdown, struct{}{}, nil)
	}
	select {
	case <-c.exited:
	case <-time.After(cleanupTimeout + 20*time.Second):
		c.kill()
	}
	c.cancel()
	return nil
}

// call posts in as JSON and decodes the answer into out.
func (c *conn) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		if !c.alive() {
			return fmt.Errorf("node %s: the agent's job step ended", c.node)
		}
		return fmt.Errorf("node %s: %w", c.node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return fmt.Errorf("node %s: agent answered %s", c.node, resp.Status)
		}
		return e.err()
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (r *Remote) StartInstance(ctx context.Context, spec singularity.InstanceSpec) error {
	c, err := r.conn(ctx)
	if err != nil {
		return err
	}
	return c.call(ctx, pathStart, spec, nil)
}

func (r *Remote) StopInstance(ctx context.Context, name string, sig string, timeout time.Duration) error {
	c := r.live()
	if c == nil {
		// No agent, no instance: the step took it along (or it was never
		// started).
		return fmt.Errorf("stopping instance %q on node %s: %w", name, r.Node, singularity.ErrNoInstance)
	}
	return c.call(ctx, pathStop, stopReq{Name: name, Signal: sig, Timeout: timeout}, nil)
}

func (r *Remote) ListInstances(ctx context.Context, glob string) ([]singularity.InstanceInfo, error) {
	c := r.live()
	if c == nil {
		return nil, nil
	}
	var infos []singularity.InstanceInfo
	err := c.call(ctx, pathList, listReq{Glob: glob}, &infos)
	return infos, err
}

func (r *Remote) Exec(ctx context.Context, spec singularity.ProcessSpec) (int, []byte, error) {
	c, err := r.conn(ctx)
	if err != nil {
		return 0, nil, err
	}
	var resp execResp
	err = c.call(ctx, pathExec, execReq{Instance: spec.Instance, Args: spec.Args, Env: spec.Env, Net: spec.Net}, &resp)
	return resp.Code, resp.Output, err
}

func (r *Remote) EndRun(ctx context.Context, instance string) (int, error) {
	c := r.live()
	if c == nil {
		return 0, nil
	}
	var resp endRunResp
	err := c.call(ctx, pathEndRun, endRunReq{Instance: instance}, &resp)
	return resp.Ended, err
}

// Usage reads the instances on the agent's node; a node whose agent is
// gone has none left.
func (r *Remote) Usage(ctx context.Context, instances []string) (map[string]usage.Usage, error) {
	c := r.live()
	if c == nil {
		return nil, nil
	}
	var u map[string]usage.Usage
	err := c.call(ctx, pathUsage, usageReq{Instances: instances}, &u)
	return u, err
}

// SeedVolume fills the volume on the node (the directory is on a
// filesystem every node sees), launching the agent if it does not run:
// the instance is started right after.
func (r *Remote) SeedVolume(ctx context.Context, spec singularity.SeedSpec) error {
	c, err := r.conn(ctx)
	if err != nil {
		return err
	}
	return c.call(ctx, pathSeed, spec, nil)
}

func (r *Remote) StartProcess(ctx context.Context, spec singularity.ProcessSpec) (singularity.Process, error) {
	c, err := r.conn(ctx)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(processReq{Instance: spec.Instance, Run: spec.Run, Args: spec.Args, Env: spec.Env, Pwd: spec.Pwd})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, c.base+pathProcess, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("instance %q on node %s: %w", spec.Instance, r.Node, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e errorBody
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return nil, fmt.Errorf("instance %q on node %s: agent answered %s", spec.Instance, r.Node, resp.Status)
		}
		return nil, e.err()
	}
	dec := json.NewDecoder(bufio.NewReaderSize(resp.Body, 64<<10))
	var first frame
	if err := dec.Decode(&first); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("instance %q on node %s: the agent's answer broke off: %w", spec.Instance, r.Node, err)
	}
	// The caller closes its writers once this returns, as it may with a
	// local client that holds its own copies: hold copies too.
	stdout, err := dupWriter(spec.Stdout)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	stderr, err := dupWriter(spec.Stderr)
	if err != nil {
		stdout.Close()
		resp.Body.Close()
		return nil, err
	}
	p := &remoteProcess{c: c, id: first.ID, pid: first.Pid, started: make(chan struct{}), exited: make(chan struct{})}
	go p.read(dec, resp.Body, stdout, stderr)
	return p, nil
}

// remoteProcess is a service process run by an agent.
type remoteProcess struct {
	c   *conn
	id  uint64
	pid int

	started chan struct{} // closed with the Running frame
	run     running
	exited  chan struct{}
	code    int
	err     error
}

func (p *remoteProcess) read(dec *json.Decoder, body io.Closer, stdout, stderr io.WriteCloser) {
	defer body.Close()
	defer stdout.Close()
	defer stderr.Close()
	startedClosed := false
	for {
		var f frame
		if err := dec.Decode(&f); err != nil {
			// The stream broke: the agent, and the step with the process
			// in it, is gone.
			p.code, p.err = lostCode, nil
			fmt.Fprintf(p.c.log, "node %s: lost the process (pid %d) with the agent: %v\n", p.c.node, p.pid, err)
			break
		}
		switch {
		case f.Data != nil && f.Fd == 2:
			_, _ = stderr.Write(f.Data)
		case f.Data != nil:
			_, _ = stdout.Write(f.Data)
		case f.Running != nil && !startedClosed:
			p.run = *f.Running
			startedClosed = true
			close(p.started)
		case f.Exit != nil:
			p.code = f.Exit.Code
			if f.Exit.Error != "" {
				p.err = errors.New(f.Exit.Error)
			}
			if !startedClosed {
				close(p.started)
			}
			close(p.exited)
			return
		}
	}
	if !startedClosed {
		p.run.Done = true
		close(p.started)
	}
	close(p.exited)
}

func (p *remoteProcess) Pid() int { return p.pid }

func (p *remoteProcess) Running(wait time.Duration) (int, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.started:
		if p.run.Done {
			return 0, os.ErrProcessDone
		}
		return p.run.Pid, nil
	case <-t.C:
		return p.pid, nil
	}
}

func (p *remoteProcess) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal %v: not a syscall.Signal", sig)
	}
	return p.signal(s)
}

func (p *remoteProcess) signal(s syscall.Signal) error {
	select {
	case <-p.exited:
		return os.ErrProcessDone
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.c.call(ctx, pathSignal, signalReq{ID: p.id, Signal: int(s)}, nil)
	if err != nil && strings.Contains(err.Error(), os.ErrProcessDone.Error()) {
		return os.ErrProcessDone
	}
	return err
}

func (p *remoteProcess) Kill() error { return p.signal(syscall.SIGKILL) }

func (p *remoteProcess) Wait() (int, error) {
	<-p.exited
	return p.code, p.err
}

// dupWriter holds its own copy of an *os.File; other writers are used as
// they are and not closed.
func dupWriter(w io.Writer) (io.WriteCloser, error) {
	switch f := w.(type) {
	case nil:
		return nopCloser{io.Discard}, nil
	case *os.File:
		fd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			return nil, fmt.Errorf("duplicating the output pipe: %w", errno)
		}
		return os.NewFile(fd, f.Name()), nil
	default:
		return nopCloser{w}, nil
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

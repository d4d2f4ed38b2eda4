package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sstack/internal/api"
	"sstack/internal/logs"
)

// callTimeout bounds the calls that only read or signal. Those that may
// wait for a grace period or for dependencies (up, stop, start, restart,
// scale, down) and the long ones (events, wait) have only their ctx.
const callTimeout = 30 * time.Second

// Client is a stack served by another sstack process, reached through its
// control socket.
type Client struct {
	stateDir string
	http     *http.Client
}

var _ api.Stack = (*Client)(nil)

// Dial connects to the stack whose state lives in stateDir. The error wraps
// api.ErrNotRunning when no socket is there or nobody listens on it.
func Dial(stateDir string) (*Client, error) {
	// One connection up front, so that a missing stack is told now.
	conn, err := dial(context.Background(), stateDir)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return &Client{
		stateDir: stateDir,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx, stateDir)
			},
			DisableCompression: true,
		}},
	}, nil
}

// dial connects to stateDir's socket and says in the error what it means.
func dial(ctx context.Context, stateDir string) (net.Conn, error) {
	conn, err := connect(ctx, stateDir)
	if err == nil {
		return conn, nil
	}
	path := SocketPath(stateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w (no control socket %s)", api.ErrNotRunning, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w (nobody listens on %s)", api.ErrNotRunning, path)
	case errors.Is(err, fs.ErrPermission):
		// The state of another user's stack is closed to us: the owner
		// of the nearest directory we may look at says whose it is.
		for dir := stateDir; ; dir = filepath.Dir(dir) {
			if fi, serr := os.Stat(dir); serr == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
					return nil, errors.New(refusal(projectName(stateDir), int(st.Uid)))
				}
				break
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return nil, fmt.Errorf("control socket %s: %w", path, err)
}

// Close releases the client's idle connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

func (c *Client) Info(ctx context.Context) (api.ProjectInfo, error) {
	var info api.ProjectInfo
	err := c.call(ctx, callTimeout, "GET", "/v1/info", nil, nil, &info)
	return info, err
}

func (c *Client) Ps(ctx context.Context, opts api.PsOptions) ([]api.Replica, error) {
	q := services(opts.Services)
	if opts.All {
		q.Set("all", "1")
	}
	var ps []api.Replica
	err := c.call(ctx, callTimeout, "GET", "/v1/ps", q, nil, &ps)
	return ps, err
}

func (c *Client) Up(ctx context.Context, opts api.UpOptions) error {
	return c.call(ctx, 0, "POST", "/v1/up", nil, opts, nil)
}

func (c *Client) Stop(ctx context.Context, opts api.StopOptions) error {
	return c.call(ctx, 0, "POST", "/v1/stop", nil, opts, nil)
}

func (c *Client) Start(ctx context.Context, opts api.StartOptions) error {
	return c.call(ctx, 0, "POST", "/v1/start", nil, opts, nil)
}

func (c *Client) Restart(ctx context.Context, opts api.RestartOptions) error {
	return c.call(ctx, 0, "POST", "/v1/restart", nil, opts, nil)
}

func (c *Client) Kill(ctx context.Context, opts api.KillOptions) error {
	return c.call(ctx, callTimeout, "POST", "/v1/kill", nil, opts, nil)
}

func (c *Client) Scale(ctx context.Context, opts api.ScaleOptions) error {
	return c.call(ctx, 0, "POST", "/v1/scale", nil, opts, nil)
}

// Down asks for the teardown, which the supervisor answers once it has
// finished; for the whole stack it then waits until the supervisor is
// gone (its socket is closed).
func (c *Client) Down(ctx context.Context, opts api.DownOptions) error {
	if err := c.call(ctx, 0, "POST", "/v1/down", nil, opts, nil); err != nil {
		return err
	}
	if len(opts.Services) > 0 {
		return nil
	}
	for c.answers(ctx) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// answers: the supervisor still serves the socket.
func (c *Client) answers(ctx context.Context) bool {
	conn, err := connect(ctx, c.stateDir)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// Logs implements api.Stack from the log store's files, which are on this
// host beside the socket: reading them needs no request. Following ends
// once the supervisor no longer answers (it closes its socket after the
// last lines are written).
func (c *Client) Logs(ctx context.Context, opts api.LogsOptions, consumer api.LogConsumer) error {
	return logs.Read(ctx, logs.Options{Project: projectName(c.stateDir), StateDir: c.stateDir, LogsOptions: opts,
		Running: func() bool { return c.answers(context.Background()) }}, consumer)
}

func (c *Client) Wait(ctx context.Context, opts api.WaitOptions) (int, error) {
	var res waitResult
	err := c.call(ctx, 0, "POST", "/v1/wait", nil, opts, &res)
	return res.ExitCode, err
}

func (c *Client) Top(ctx context.Context, opts api.TopOptions) ([]api.TopReplica, error) {
	var top []api.TopReplica
	err := c.call(ctx, callTimeout, "GET", "/v1/top", services(opts.Services), nil, &top)
	return top, err
}

func (c *Client) Stats(ctx context.Context, opts api.StatsOptions) ([]api.ReplicaStats, error) {
	var stats []api.ReplicaStats
	err := c.call(ctx, callTimeout, "GET", "/v1/stats", services(opts.Services), nil, &stats)
	return stats, err
}

func (c *Client) ExecTarget(ctx context.Context, opts api.ExecOptions) (api.ExecTarget, error) {
	var target api.ExecTarget
	err := c.call(ctx, callTimeout, "POST", "/v1/exec-target", nil, opts, &target)
	return target, err
}

// Events calls fn with each event of the stream. The server ending the
// stream, cleanly or not, means the stack is gone: that returns nil.
func (c *Client) Events(ctx context.Context, opts api.EventsOptions, fn func(api.Event) error) error {
	resp, err := c.send(ctx, "GET", "/v1/events", services(opts.Services), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if opts.Subscribed != nil {
		opts.Subscribed()
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			// A last line without its newline was cut off: drop it.
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("control socket: bad event %q: %w", line, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// call sends a request and decodes its JSON answer into out (unless nil).
// timeout 0 means none besides ctx.
func (c *Client) call(ctx context.Context, timeout time.Duration, method, path string, q url.Values, in, out any) error {
	parent := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
			return fmt.Errorf("%s %s: no answer from the stack's sstack within %s: %w", method, path, timeout, err)
		}
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// send sends a request; an error status comes back as the error it stands
// for.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	u := "http://sstack" + path // the host is not used: the dialer knows the socket
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// decodeError is the error an error response stands for.
func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var b errorBody
	if err := json.Unmarshal(data, &b); err != nil || b.Message == "" {
		return fmt.Errorf("control socket: %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	return fromBody(b)
}

func services(names []string) url.Values {
	q := url.Values{}
	for _, n := range names {
		q.Add("service", n)
	}
	return q
}

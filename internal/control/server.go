package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"sstack/internal/api"
)

// Server serves a stack's control API on its state directory's socket.
type Server struct {
	stack   api.Stack
	path    string
	sock    os.FileInfo // the socket file we bound, to remove only that one
	project string
	uid     int // the only uid allowed in
	http    *http.Server
	ctx     context.Context // ends with Close: long requests end with it
	cancel  context.CancelFunc
	served  chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Serve serves stack on SocketPath(stateDir) until Close. It creates
// stateDir (0700, and makes an existing one 0700), replaces a stale socket
// left by a killed sstack, and fails if another sstack serves it.
func Serve(stateDir string, stack api.Stack) (*Server, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(stateDir, 0o700); err != nil {
		return nil, err
	}
	l, sock, err := listen(stateDir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		stack:   stack,
		path:    SocketPath(stateDir),
		sock:    sock,
		project: projectName(stateDir),
		uid:     os.Getuid(),
		served:  make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.http = &http.Server{
		Handler:           s.checkPeer(s.routes()),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnContext:       withPeer,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		defer close(s.served)
		s.http.Serve(l) // returns ErrServerClosed on Close
	}()
	return s, nil
}

// listen binds stateDir's socket with mode 0600. A flock on the directory
// makes the check for a live server and the bind one step for concurrent
// sstacks of the same project.
func listen(stateDir string) (net.Listener, os.FileInfo, error) {
	dirfd, err := unix.Open(stateDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: stateDir, Err: err}
	}
	defer unix.Close(dirfd) // also releases the lock
	if err := unix.Flock(dirfd, unix.LOCK_EX); err != nil {
		return nil, nil, &os.PathError{Op: "flock", Path: stateDir, Err: err}
	}
	path := SocketPath(stateDir)
	if err := checkStale(stateDir); err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("unix", socketAddr(stateDir, dirfd))
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	// Unlinking through a /proc/self/fd path after dirfd is closed would be
	// wrong: Close removes the socket by its real path.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	// The directory is 0700 already, so nobody can connect before the chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, nil, err
	}
	sock, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, sock, nil
}

// checkStale removes the socket of a killed sstack (nobody answers) and
// fails if a live one answers.
func checkStale(stateDir string) error {
	path := SocketPath(stateDir)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := connect(ctx, stateDir)
	switch {
	case err == nil:
		who := "another sstack"
		if cred, err := peerCred(conn); err == nil {
			who = fmt.Sprintf("another sstack (pid %d)", cred.Pid)
		}
		conn.Close()
		return fmt.Errorf("%s already serves project %q on %s", who, projectName(stateDir), path)
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the stale control socket: %w", err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil
	}
	return fmt.Errorf("control socket %s: %w", path, err)
}

// Close stops serving: it ends the long requests (events, wait) so that
// their clients see the stack go, and removes the socket.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			s.http.Close()
		}
		<-s.served
		if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.sock) {
			s.closeErr = os.Remove(s.path)
		}
	})
	return s.closeErr
}

type peerKey struct{}

// peer is who is at the other end of a connection.
type peer struct {
	uid int
	err error
}

// withPeer records the peer's uid in the connection's context, for
// checkPeer.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	p := peer{uid: -1}
	cred, err := peerCred(c)
	if err != nil {
		p.err = err
	} else {
		p.uid = int(cred.Uid)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// checkPeer lets only the user running the stack through: the socket's
// mode already says so, this holds even if the file's mode is changed.
func (s *Server) checkPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(peer)
		switch {
		case !ok || p.err != nil:
			writeJSON(w, http.StatusForbidden, errorBody{Kind: kindOther,
				Message: fmt.Sprintf("control socket: cannot identify the peer: %v", p.err)})
		case p.uid != s.uid:
			writeJSON(w, http.StatusForbidden, errorBody{Kind: kindOther, Message: refusal(s.project, s.uid)})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (s *Server) routes() http.Handler {
	st := s.stack
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		info, err := st.Info(r.Context())
		s.reply(w, r, info, err)
	})
	mux.HandleFunc("GET /v1/ps", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		opts := api.PsOptions{Services: q["service"]}
		if a := q.Get("all"); a != "" {
			all, err := strconv.ParseBool(a)
			if err != nil {
				badRequest(w, fmt.Errorf("all=%q: want 1 or 0", a))
				return
			}
			opts.All = all
		}
		ps, err := st.Ps(r.Context(), opts)
		s.reply(w, r, ps, err)
	})
	mux.HandleFunc("POST /v1/up", action(s, st.Up))
	mux.HandleFunc("POST /v1/stop", action(s, st.Stop))
	mux.HandleFunc("POST /v1/start", action(s, st.Start))
	mux.HandleFunc("POST /v1/restart", action(s, st.Restart))
	mux.HandleFunc("POST /v1/kill", action(s, st.Kill))
	mux.HandleFunc("POST /v1/scale", action(s, st.Scale))
	mux.HandleFunc("POST /v1/down", action(s, st.Down))
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("POST /v1/wait", func(w http.ResponseWriter, r *http.Request) {
		var opts api.WaitOptions
		if decodeBody(w, r, &opts) {
			code, err := st.Wait(r.Context(), opts)
			s.reply(w, r, waitResult{ExitCode: code}, err)
		}
	})
	mux.HandleFunc("GET /v1/top", func(w http.ResponseWriter, r *http.Request) {
		top, err := st.Top(r.Context(), api.TopOptions{Services: r.URL.Query()["service"]})
		s.reply(w, r, top, err)
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		stats, err := st.Stats(r.Context(), api.StatsOptions{Services: r.URL.Query()["service"]})
		s.reply(w, r, stats, err)
	})
	mux.HandleFunc("POST /v1/exec-target", func(w http.ResponseWriter, r *http.Request) {
		var opts api.ExecOptions
		if decodeBody(w, r, &opts) {
			target, err := st.ExecTarget(r.Context(), opts)
			s.reply(w, r, target, err)
		}
	})
	return mux
}

type waitResult struct {
	ExitCode int `json:"ExitCode"`
}

// action serves a method that takes an options body and returns only an
// error.
func action[O any](s *Server, fn func(context.Context, O) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var opts O
		if decodeBody(w, r, &opts) {
			s.reply(w, r, nil, fn(r.Context(), opts))
		}
	}
}

// events streams the stack's events as newline-delimited JSON, flushing
// each one, until the stack's Events returns or the client goes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	streaming := false
	subscribed := func() {
		// The client learns that it follows the events from here on.
		streaming = true
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
	}
	err := s.stack.Events(r.Context(), api.EventsOptions{Services: r.URL.Query()["service"], Subscribed: subscribed}, func(ev api.Event) error {
		streaming = true
		if err := enc.Encode(ev); err != nil {
			return err
		}
		return rc.Flush()
	})
	// Once the stream has begun, its end is all a client can be told.
	if err != nil && !streaming && r.Context().Err() == nil {
		s.reply(w, r, nil, err)
	}
}

// reply writes v as JSON, or err as an error body, or 204 when both are
// nil.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		if s.ctx.Err() != nil && r.Context().Err() != nil {
			err = fmt.Errorf("%w: its sstack is shutting down", api.ErrNotRunning)
		}
		b, status := toBody(err)
		writeJSON(w, status, b)
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// decodeBody reads the JSON options of a request; an empty body is the
// zero options. It answers 400 itself and returns false when it fails.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v)
	if err != nil && err != io.EOF {
		badRequest(w, fmt.Errorf("%s: bad JSON body: %w", r.URL.Path, err))
		return false
	}
	return true
}

func badRequest(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, errorBody{Message: err.Error(), Kind: kindOther})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

package agent

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"sstack/singularity"
)

// cleanupTimeout is the grace each instance left behind gets when the agent
// ends without the supervisor having stopped it.
const cleanupTimeout = 10 * time.Second

// Server is the agent: the node's runtime, reachable by the supervisor
// that holds its token.
type Server struct {
	rt    singularity.Runtime
	token string
	log   io.Writer
	// Node, when set, is given to every service process and healthcheck
	// as SSTACK_NODE: the one thing of its placement a service may want.
	Node string

	mu        sync.Mutex
	next      uint64
	procs     map[uint64]singularity.Process
	instances map[string]bool // started through this agent and not stopped
	sessions  int
	hadOne    bool
	done      chan struct{} // closed once: shutdown or the supervisor is gone
	closeOnce sync.Once
}

// NewServer serves rt to whoever presents token. log gets the agent's own
// messages.
func NewServer(rt singularity.Runtime, token string, log io.Writer) *Server {
	return &Server{rt: rt, token: token, log: log, procs: map[uint64]singularity.Process{},
		instances: map[string]bool{}, done: make(chan struct{})}
}

// Serve listens on addr (host:port, port 0 for any), prints the ready line
// with the address it got on ready, and serves until ctx ends, the
// supervisor asks it to shut down, or the supervisor's session is lost (it
// died). Then it stops every instance it started and is still running, so
// that nothing outlives the stack on this node.
func (s *Server) Serve(ctx context.Context, addr string, ready io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("agent: listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.auth(s.routes()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(ready, "%s%s\n", readyPrefix, ln.Addr())
	select {
	case <-ctx.Done():
	case <-s.done:
	}
	s.cleanup()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

func (s *Server) finish() { s.closeOnce.Do(func() { close(s.done) }) }

// cleanup stops what the supervisor did not: after a clean down nothing is
// left and this does nothing.
func (s *Server) cleanup() {
	s.mu.Lock()
	procs := s.procs
	s.procs = map[uint64]singularity.Process{}
	var names []string
	for name := range s.instances {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, p := range procs {
		_ = p.Signal(syscall.SIGTERM)
	}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout+30*time.Second)
			defer cancel()
			if err := s.rt.StopInstance(ctx, name, "SIGTERM", cleanupTimeout); err != nil && !errors.Is(err, singularity.ErrNoInstance) {
				fmt.Fprintf(s.log, "sstack agent: stopping instance %s left behind: %v\n", name, err)
			} else if err == nil {
				fmt.Fprintf(s.log, "sstack agent: stopped instance %s left behind\n", name)
			}
		}()
	}
	wg.Wait()
}

func (s *Server) auth(next http.Handler) http.Handler {
	want := []byte("Bearer " + s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeError(w, http.StatusUnauthorized, errors.New("agent: wrong or missing token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle(mux, pathStart, func(ctx context.Context, spec singularity.InstanceSpec) (any, error) {
		err := s.rt.StartInstance(ctx, spec)
		if err == nil {
			s.mu.Lock()
			s.instances[spec.Name] = true
			s.mu.Unlock()
		}
		return struct{}{}, err
	})
	handle(mux, pathStop, func(ctx context.Context, req stopReq) (any, error) {
		err := s.rt.StopInstance(ctx, req.Name, req.Signal, req.Timeout)
		if err == nil || errors.Is(err, singularity.ErrNoInstance) {
			s.mu.Lock()
			delete(s.instances, req.Name)
			s.mu.Unlock()
		}
		return struct{}{}, err
	})
	handle(mux, pathList, func(ctx context.Context, req listReq) (any, error) {
		return s.rt.ListInstances(ctx, req.Glob)
	})
	handle(mux, pathExec, func(ctx context.Context, req execReq) (any, error) {
		code, out, err := s.rt.Exec(ctx, singularity.ProcessSpec{Instance: req.Instance, Args: req.Args, Env: s.env(req.Env), Net: req.Net})
		return execResp{Code: code, Output: out}, err
	})
	handle(mux, pathEndRun, func(ctx context.Context, req endRunReq) (any, error) {
		n, err := s.rt.EndRun(ctx, req.Instance)
		return endRunResp{Ended: n}, err
	})
	handle(mux, pathUsage, func(ctx context.Context, req usageReq) (any, error) {
		return s.rt.Usage(ctx, req.Instances)
	})
	handle(mux, pathSeed, func(ctx context.Context, spec singularity.SeedSpec) (any, error) {
		return struct{}{}, s.rt.SeedVolume(ctx, spec)
	})
	mux.HandleFunc("POST "+pathProcess, s.process)
	handle(mux, pathSignal, func(_ context.Context, req signalReq) (any, error) {
		s.mu.Lock()
		p := s.procs[req.ID]
		s.mu.Unlock()
		switch {
		case p == nil:
			return struct{}{}, os.ErrProcessDone
		case syscall.Signal(req.Signal) == syscall.SIGKILL:
			return struct{}{}, p.Kill()
		}
		return struct{}{}, p.Signal(syscall.Signal(req.Signal))
	})
	mux.HandleFunc("GET "+pathSession, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.sessions++
		s.hadOne = true
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		s.mu.Lock()
		s.sessions--
		lost := s.sessions == 0
		s.mu.Unlock()
		if lost {
			// The supervisor died (its connection closed with it): end
			// what it started here.
			fmt.Fprintln(s.log, "sstack agent: the supervisor is gone; stopping this node's replicas")
			s.finish()
		}
	})
	mux.HandleFunc("POST "+pathShutdown, func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, nil)
		s.finish()
	})
	return mux
}

// handle serves the POST requests of path: the JSON body decoded into a
// Req, fn's result (or error) as the reply.
func handle[Req any](mux *http.ServeMux, path string, fn func(context.Context, Req) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !decode(w, r, &req) {
			return
		}
		res, err := fn(r.Context(), req)
		reply(w, res, err)
	})
}

// process starts a service process and streams its output and exit.
func (s *Server) process(w http.ResponseWriter, r *http.Request) {
	var req processReq
	if !decode(w, r, &req) {
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	proc, err := s.rt.StartProcess(context.Background(), singularity.ProcessSpec{
		Instance: req.Instance, Run: req.Run, Args: req.Args, Env: s.env(req.Env), Pwd: req.Pwd,
		Stdout: outW, Stderr: errW,
	})
	outW.Close() // the client has its own copies
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.mu.Lock()
	s.next++
	id := s.next
	s.procs[id] = proc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.procs, id)
		s.mu.Unlock()
	}()

	// One writer of frames; the pumps and the watchers send to it.
	frames := make(chan frame, 64)
	var pumps sync.WaitGroup
	pump := func(fd int, rd *os.File) {
		defer pumps.Done()
		defer rd.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := rd.Read(buf)
			if n > 0 {
				frames <- frame{Fd: fd, Data: append([]byte(nil), buf[:n]...)}
			}
			if err != nil {
				return
			}
		}
	}
	pumps.Add(2)
	go pump(1, outR)
	go pump(2, errR)
	go func() {
		pid, err := proc.Running(startWaitAgent)
		frames <- frame{Running: &running{Pid: pid, Done: errors.Is(err, os.ErrProcessDone)}}
		code, werr := proc.Wait()
		drained := make(chan struct{})
		go func() { pumps.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
			// An orphan inside still holds the pipe: the exit is due now.
		}
		e := &exit{Code: code}
		if werr != nil {
			e.Error = werr.Error()
		}
		frames <- frame{Exit: e}
		pumps.Wait()
		close(frames)
	}()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	flush := func() { _ = bw.Flush(); w.(http.Flusher).Flush() }
	_ = enc.Encode(frame{ID: id, Pid: proc.Pid()})
	flush()
	// Whatever ends the stream (the exit, or the supervisor gone), the
	// senders must not block: drain until they are all done.
	defer func() {
		go func() {
			for range frames {
			}
		}()
	}()
	for f := range frames {
		if err := enc.Encode(f); err != nil {
			return
		}
		// Batch what is already queued into one write.
		if len(frames) == 0 || f.Exit != nil {
			flush()
		}
		if f.Exit != nil {
			return
		}
	}
}

// startWaitAgent is how long the agent waits for the command to run
// inside the instance before it reports the client's pid instead; the
// supervisor applies its own, shorter bound on top.
const startWaitAgent = 30 * time.Second

func (s *Server) env(env []string) []string {
	if s.Node == "" {
		return env
	}
	return append(slices.Clip(env), NodeEnv+"="+s.Node)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("agent: bad request: %w", err))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Message: err.Error(), NoInstance: errors.Is(err, singularity.ErrNoInstance)})
}

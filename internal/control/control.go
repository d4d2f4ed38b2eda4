// Package control is the control API of a running stack: HTTP with JSON
// bodies over a Unix socket in the project's state directory, as the Docker
// engine API is served. Serve exposes an api.Stack (the supervisor); Dial
// returns a Client that implements api.Stack for another sstack process, so
// the CLI drives a detached stack through the same interface as its own.
// Logs needs no endpoint: the client reads the log store's files, which
// are on this host beside the socket (package logs).
//
// Only the user running the stack may use it: the state directory is 0700,
// the socket 0600, and the server checks every peer's uid (SO_PEERCRED).
//
// Endpoints (JSON bodies are the api option structs):
//
//	GET  /v1/info                       api.ProjectInfo
//	GET  /v1/ps?all=1&service=S...      []api.Replica
//	POST /v1/up|stop|start|restart|kill|scale|down   204 No Content, once done
//	                                    (down: once the teardown has finished)
//	GET  /v1/events?service=S...        newline-delimited api.Event, until the stack is gone
//	POST /v1/wait                       {"ExitCode": N}
//	GET  /v1/top?service=S...           []api.TopReplica
//	GET  /v1/stats?service=S...         []api.ReplicaStats
//	POST /v1/exec-target                api.ExecTarget
//
// Errors are {"message", "kind", "name", "known"} (see errorBody).
package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"sstack/internal/api"
	"sstack/internal/statedir"
)

var socketName = statedir.SocketName()

const (
	// connectTimeout bounds a connect: a Unix socket connect only blocks
	// when the server's backlog is full, and then it should not hang us.
	connectTimeout = 2 * time.Second
)

// maxSunPath is the room for a path in sockaddr_un, less its NUL.
var maxSunPath = len(unix.RawSockaddrUnix{}.Path) - 1

// SocketPath is where the control socket of the stack whose state lives in
// stateDir is.
func SocketPath(stateDir string) string { return statedir.Socket(stateDir) }

// socketAddr is the address to bind or connect for stateDir's socket:
// its path, or when that is too long for sockaddr_un, the same file reached
// through /proc/self/fd of dirfd, an open descriptor of stateDir.
func socketAddr(stateDir string, dirfd int) string {
	if p := SocketPath(stateDir); len(p) <= maxSunPath {
		return p
	}
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + socketName
}

// connect opens a connection to stateDir's socket, never waiting long.
func connect(ctx context.Context, stateDir string) (net.Conn, error) {
	dirfd := -1
	if len(SocketPath(stateDir)) > maxSunPath {
		fd, err := unix.Open(stateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: "unix", Err: fmt.Errorf("open %s: %w", stateDir, err)}
		}
		defer unix.Close(fd)
		dirfd = fd
	}
	d := net.Dialer{Timeout: connectTimeout}
	return d.DialContext(ctx, "unix", socketAddr(stateDir, dirfd))
}

// peerCred is the process at the other end of a Unix connection.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a Unix socket connection: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}

// projectName is the project whose state lives in stateDir
// (<state home>/sstack/<project>).
func projectName(stateDir string) string { return filepath.Base(stateDir) }

// refusal is the message for a user who is not the one running the stack.
func refusal(project string, uid int) string {
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("the stack of project %q is run by user %s (uid %d), only that user may control it", project, name, uid)
}

// Error kinds on the wire; the client turns them back into api's errors.
const (
	kindNotRunning        = "not_running"
	kindNoService         = "no_such_service"
	kindReplicaNotRunning = "replica_not_running"
	kindOther             = "other"
)

// errorBody is the JSON body of every error response.
type errorBody struct {
	Message string   `json:"message"`
	Kind    string   `json:"kind"`
	Name    string   `json:"name,omitempty"`  // no_such_service: the name asked for
	Known   []string `json:"known,omitempty"` // no_such_service: the services there are
}

// toBody is the error body and HTTP status of err.
func toBody(err error) (errorBody, int) {
	b := errorBody{Message: err.Error(), Kind: kindOther}
	var ns *api.NoServiceError
	switch {
	case errors.As(err, &ns):
		b.Kind, b.Name, b.Known = kindNoService, ns.Name, ns.Known
		return b, 404
	case errors.Is(err, api.ErrNoService):
		b.Kind = kindNoService
		return b, 404
	case errors.Is(err, api.ErrReplicaNotRunning):
		b.Kind = kindReplicaNotRunning
		return b, 409
	case errors.Is(err, api.ErrNotRunning):
		b.Kind = kindNotRunning
		return b, 503
	}
	return b, 500
}

// remoteError is an error the server sent: its text as the server said
// it, and the api error it stands for, so errors.Is and errors.As work.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// fromBody is the error a body stands for.
func fromBody(b errorBody) error {
	switch b.Kind {
	case kindNoService:
		if b.Name != "" {
			return &remoteError{b.Message, &api.NoServiceError{Name: b.Name, Known: b.Known}}
		}
		return &remoteError{b.Message, api.ErrNoService}
	case kindReplicaNotRunning:
		return &remoteError{b.Message, api.ErrReplicaNotRunning}
	case kindNotRunning:
		return &remoteError{b.Message, api.ErrNotRunning}
	}
	return errors.New(b.Message)
}

// Package agent runs a stack's replicas on the other nodes of a Slurm
// allocation. One agent per node runs inside a job step that lasts as long
// as the stack, so the instances it starts live in that step (under
// proctrack/cgroup an instance started by a short step dies with it). The
// agent serves singularity.Runtime over HTTP+JSON on the node's address;
// Remote is the supervisor's side of it, so the service actors stay in the
// supervisor and do not know which node runs their instance.
package agent

import (
	"errors"
	"time"

	"sstack/singularity"
)

// TokenEnv carries the per-agent secret from the supervisor to the agent
// through the step's environment (never its command line).
const TokenEnv = "SSTACK_AGENT_TOKEN"

// NodeEnv names the node in a service's environment.
const NodeEnv = "SSTACK_NODE"

// readyPrefix starts the one line the agent prints on its stdout once it
// listens; the address follows.
const readyPrefix = "sstack-agent listening on "

// Paths of the protocol; each takes and returns JSON.
const (
	pathStart    = "/v1/instance/start"
	pathStop     = "/v1/instance/stop"
	pathList     = "/v1/instance/list"
	pathExec     = "/v1/exec"
	pathEndRun   = "/v1/endrun"
	pathUsage    = "/v1/usage"
	pathSeed     = "/v1/volume/seed"
	pathProcess  = "/v1/process" // a stream of frames, one JSON object per line
	pathSignal   = "/v1/process/signal"
	pathSession  = "/v1/session" // held open by the supervisor
	pathShutdown = "/v1/shutdown"
)

type stopReq struct {
	Name    string
	Signal  string
	Timeout time.Duration
}

type listReq struct{ Glob string }

type execReq struct {
	Instance string
	Args     []string
	Env      []string
	Net      singularity.Network
}

type execResp struct {
	Code   int
	Output []byte
}

type endRunReq struct{ Instance string }

type endRunResp struct{ Ended int }

type usageReq struct{ Instances []string }

// processReq is singularity.ProcessSpec without its writers: the output
// comes back as frames.
type processReq struct {
	Instance string
	Run      bool
	Args     []string
	Env      []string
	Pwd      string
}

type signalReq struct {
	ID     uint64
	Signal int // a syscall.Signal; SIGKILL means Process.Kill
}

// frame is one line of a process stream: first ID and Pid, then output
// (Fd 1 or 2 with Data), Running once, and Exit last.
type frame struct {
	ID      uint64   `json:",omitempty"`
	Pid     int      `json:",omitempty"`
	Fd      int      `json:",omitempty"`
	Data    []byte   `json:",omitempty"`
	Running *running `json:",omitempty"`
	Exit    *exit    `json:",omitempty"`
}

type running struct {
	Pid  int
	Done bool // the client exited before its command was seen (os.ErrProcessDone)
}

type exit struct {
	Code  int
	Error string `json:",omitempty"`
}

// errorBody is every non-200 answer. NoInstance carries
// singularity.ErrNoInstance across the wire.
type errorBody struct {
	Message    string
	NoInstance bool `json:",omitempty"`
}

func (e errorBody) err() error {
	if e.NoInstance {
		return &wireError{msg: e.Message, wrapped: singularity.ErrNoInstance}
	}
	return errors.New(e.Message)
}

type wireError struct {
	msg     string
	wrapped error
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.wrapped }

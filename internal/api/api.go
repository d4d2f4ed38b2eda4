// Package api is the contract between sstack's CLI and a project's stack:
// the Stack interface, its option structs, the replica rows of ps, the log
// consumer and the typed events that the console, the metrics, ps and
// `events` all read. It holds no implementation: the supervisor implements
// Stack in process (package engine), the control socket client implements
// it for a stack run by another sstack (package control), and
// projects.Remains for a project that no sstack runs (what its stack
// left), so the CLI code is the same for a foreground stack, a detached
// one and one that has ended.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"sstack/internal/proctree"
	"sstack/internal/usage"
)

// Stack is what a project's stack can do. Every method may be called from
// any goroutine; Events and Wait block until their context ends. Without a
// supervisor (the stack ended, or its sstack was killed) only Info, Ps,
// Logs and Down work; the rest return an error that wraps ErrNotRunning.
type Stack interface {
	// Info describes the stack and the supervisor running it (ls).
	Info(ctx context.Context) (ProjectInfo, error)
	// Ps lists the replicas, in service order then replica number.
	Ps(ctx context.Context, opts PsOptions) ([]Replica, error)
	// Up starts services of the running stack that are not running, with
	// their dependencies unless NoDeps (docker compose up SERVICE...).
	Up(ctx context.Context, opts UpOptions) error
	// Stop, Start, Restart and Kill act on the replicas of the services
	// named (all when none) through their service actors.
	Stop(ctx context.Context, opts StopOptions) error
	Start(ctx context.Context, opts StartOptions) error
	Restart(ctx context.Context, opts RestartOptions) error
	Kill(ctx context.Context, opts KillOptions) error
	// Scale sets the number of replicas of services, live.
	Scale(ctx context.Context, opts ScaleOptions) error
	// Events calls fn with every event from now on, until ctx ends, fn
	// returns an error or the stack is gone (then it returns nil).
	Events(ctx context.Context, opts EventsOptions, fn func(Event) error) error
	// Wait blocks until a process of the services named exits and returns
	// the exit code of the first one (docker compose wait).
	Wait(ctx context.Context, opts WaitOptions) (int, error)
	// Top lists the processes running in each replica's instance.
	Top(ctx context.Context, opts TopOptions) ([]TopReplica, error)
	// Stats reads what each running replica uses now (CPU time, memory,
	// block I/O, processes), on the node that runs it (docker compose
	// stats; rates such as CPU % come from two calls).
	Stats(ctx context.Context, opts StatsOptions) ([]ReplicaStats, error)
	// ExecTarget says where and how `exec` runs a command: the replica's
	// instance and the service's environment, as its process gets it.
	ExecTarget(ctx context.Context, opts ExecOptions) (ExecTarget, error)
	// Logs gives consumer the lines the replicas wrote, from the log
	// store (so also after the stack ended), as docker compose logs; with
	// Follow it goes on until the stack has stopped, Until has passed or
	// ctx ends.
	Logs(ctx context.Context, opts LogsOptions, consumer LogConsumer) error
	// Down tears the stack down in reverse dependency order, as Ctrl-C
	// does, and returns once it is gone: no supervisor, no instance, no
	// state (named volumes stay unless Volumes). With Services, it returns
	// once those services' instances are gone. The supervisor itself
	// (package engine) returns once its teardown has finished: it cannot
	// see itself go; the stack a client gets (projects.Open) waits for
	// that and removes the rest.
	Down(ctx context.Context, opts DownOptions) error
}

// State is where a replica is in its life cycle; the names are those of
// the life-cycle machine (actors/lifecycle).
type State string

const (
	StateWaiting    State = "waiting"    // for its dependencies
	StateCreating   State = "creating"   // instance being started
	StateStarting   State = "starting"   // process being started
	StateRunning    State = "running"    // process running
	StateStopping   State = "stopping"   // stop signal sent, waiting for the exit
	StateRestarting State = "restarting" // exited; the restart policy starts it again
	StateExited     State = "exited"     // exited, no restart coming
	StateFailed     State = "failed"     // could not start
	StateStopped    State = "stopped"    // torn down: no process, no instance
	StateCreated    State = "created"    // up --no-start: waits for a start
)

// Health is the healthcheck status of a running replica ("" without one).
type Health string

const (
	HealthNone      Health = ""
	HealthStarting  Health = "starting"
	HealthHealthy   Health = "healthy"
	HealthUnhealthy Health = "unhealthy"
)

// Replica is one row of ps.
type Replica struct {
	Project  string    `json:"Project"`
	Service  string    `json:"Service"`
	Replica  int       `json:"Replica"`
	Name     string    `json:"Name"`     // display name, e.g. web-1
	Instance string    `json:"Instance"` // Apptainer instance name
	State    State     `json:"State"`
	Health   Health    `json:"Health"`
	ExitCode int       `json:"ExitCode"`
	Since    time.Time `json:"Since"` // when State was entered
	Restarts int       `json:"Restarts"`
	Pid      int       `json:"Pid"` // the service process on the host, 0 if none
	// Ran: the process has started at least once.
	Ran bool `json:"Ran"`
	// Supervised is false for an instance found without a supervisor.
	Supervised bool   `json:"Supervised"`
	Reason     string `json:"Reason,omitempty"` // why it failed
	// Node is the Slurm node the replica runs on; "" on this host.
	Node string `json:"Node,omitempty"`
	// Publishers are the service's published ports, as docker compose's
	// ps --format json names them.
	Publishers []Publisher `json:"Publishers,omitempty"`
	// Address is the replica's own address on the stack network ("":
	// none, as on the host's network).
	Address string `json:"Address,omitempty"`
}

// Publisher is one published port: URL is the host address.
type Publisher struct {
	URL           string `json:"URL"`
	TargetPort    int    `json:"TargetPort"`
	PublishedPort int    `json:"PublishedPort"`
	Protocol      string `json:"Protocol"`
}

// String is docker's notation: 0.0.0.0:8080->80/tcp.
func (p Publisher) String() string {
	return net.JoinHostPort(p.URL, strconv.Itoa(p.PublishedPort)) + "->" + strconv.Itoa(p.TargetPort) + "/" + p.Protocol
}

// Status is the state as docker compose ps shows it: "running",
// "running (healthy)", "exited (3)", "restarting".
func (r Replica) Status() string {
	switch r.State {
	case StateRunning, StateStopping:
		if r.Health != HealthNone {
			return "running (" + string(r.Health) + ")"
		}
		return "running"
	case StateExited:
		return fmt.Sprintf("exited (%d)", r.ExitCode)
	case "":
		return "unknown"
	}
	if !r.Supervised {
		return "running (unsupervised)"
	}
	return string(r.State)
}

// Active: the replica has (or is getting) a running process; ps without -a
// shows only these, as docker compose ps shows running containers.
func (r Replica) Active() bool {
	switch r.State {
	case StateCreating, StateStarting, StateRunning, StateStopping, StateRestarting:
		return true
	}
	return false
}

// ProjectInfo is one row of ls.
type ProjectInfo struct {
	Name        string   `json:"Name"`
	Status      string   `json:"Status"` // e.g. "running(3)", "exited(2)"
	ConfigFiles []string `json:"ConfigFiles"`
	StateDir    string   `json:"StateDir"`
	Pid         int      `json:"Pid"` // of the supervisor, 0 when none runs
	Supervised  bool     `json:"Supervised"`
	Detached    bool     `json:"Detached"`
	Started     time.Time
}

// Recreate policies of UpOptions, as docker compose's.
const (
	RecreateDiverged = ""
	RecreateForce    = "force"
	RecreateNever    = "never"
)

type (
	PsOptions struct {
		All      bool     // include exited and stopped replicas
		Services []string // none: all
	}
	UpOptions struct {
		Services []string
		NoDeps   bool
		// Scale sets the replica count of services first (up --scale).
		Scale map[string]int
		// Project, when set, is how the client loaded the compose file
		// (compose.Options as JSON: this package cannot name compose's
		// types): the running stack converges to that file, recreating
		// the services whose configuration changed.
		Project json.RawMessage `json:",omitempty"`
		// Recreate is for the services named (all when none), and
		// RecreateDeps for the dependencies they bring: RecreateDiverged
		// (""), RecreateForce or RecreateNever.
		Recreate     string `json:",omitempty"`
		RecreateDeps string `json:",omitempty"`
		// RemoveOrphans removes the services the file no longer has;
		// otherwise they run on, with a warning.
		RemoveOrphans bool `json:",omitempty"`
		// NoStart: new and recreated replicas are created only; they
		// wait for a start.
		NoStart bool `json:",omitempty"`
	}
	StopOptions struct {
		Services []string
		// Timeout overrides stop_grace_period when set (stop -t).
		Timeout *time.Duration
	}
	StartOptions struct {
		Services []string
		// Wait: return once the services run, healthy where they have a
		// healthcheck (start --wait).
		Wait bool
	}
	RestartOptions struct {
		Services []string
		Timeout  *time.Duration
		NoDeps   bool
	}
	KillOptions struct {
		Services []string
		Signal   string // e.g. "SIGKILL" (default), "USR1"
	}
	ScaleOptions struct {
		Replicas map[string]int
		NoDeps   bool
	}
	EventsOptions struct {
		Services []string
		// Subscribed, when set, is called once events are being
		// followed: what happens after it is seen (up waits for it
		// before it asks for a change, to show what the change does).
		Subscribed func() `json:"-"`
	}
	WaitOptions struct {
		Services []string
		// DownProject: take the stack down once the first one exits.
		DownProject bool
	}
	TopOptions   struct{ Services []string }
	StatsOptions struct{ Services []string }
	ExecOptions  struct {
		Service string
		Index   int // replica number, from 1; 0 means 1
	}
	LogsOptions struct {
		// Services, when given, select replicas by service, SERVICE-N
		// name or display name (container_name).
		Services []string
		// Known are the project's services as the caller's compose file
		// has them: one of them without logs (it printed nothing) shows
		// nothing, as docker compose's logs, where an unknown name is an
		// error.
		Known []string `json:",omitempty"`
		// Tail is the number of lines from the end of each replica's
		// logs ("all" or "": every line).
		Tail   string
		Follow bool
		// Since and Until: docker's forms, a time or a duration ago.
		Since, Until string
		// Index keeps replica N only (from 1; 0: all).
		Index int
		// Stdout, Stderr keep that stream only (both or neither: both).
		Stdout, Stderr bool
		// Include: every one must match; Exclude: none may.
		Include, Exclude []string
	}
	DownOptions struct {
		Volumes bool
		Timeout *time.Duration
		// Services, when given, are taken down alone, with the services
		// that depend on them; the rest of the stack goes on.
		Services []string
	}
)

// LogLine is one line a replica wrote, as the log store keeps it.
type LogLine struct {
	Service string
	Replica int
	Name    string // display name: container_name, else SERVICE-N
	Stream  string // "stdout" or "stderr"
	Time    time.Time
	// Text is the line without its newline; it is valid only until Log
	// returns.
	Text []byte
}

// LogConsumer receives what Logs shows, as docker compose's consumer;
// its methods are called from one goroutine at a time.
type LogConsumer interface {
	// Register names the replicas Logs shows, before the first line
	// (a printer pads its prefixes to the longest name); a replica that
	// begins to write while Logs follows comes without one.
	Register(name string)
	// Log is one line, in time order across the replicas.
	Log(line LogLine)
	// Status is what Logs says that is no replica's line: LogsStopped
	// when following ends because the stack has stopped.
	Status(name, text string)
}

// LogsStopped is the Status text of a Logs that followed until the stack
// stopped.
const LogsStopped = "the stack has stopped"

// TopReplica is the process tree of one replica's instance.
type TopReplica struct {
	Name      string    `json:"Name"`
	Instance  string    `json:"Instance"`
	Processes []Process `json:"Processes"`
}

// Process is one process of an instance, read from the host's /proc;
// package proctree owns it.
type Process = proctree.Process

// ReplicaStats is what one running replica uses, read at Time.
type ReplicaStats struct {
	Name     string    `json:"Name"` // web-1
	Service  string    `json:"Service"`
	Replica  int       `json:"Replica"`
	Instance string    `json:"Instance"`
	Node     string    `json:"Node,omitempty"`
	Time     time.Time `json:"Time"`
	Usage    Usage     `json:"Usage"`
}

// Usage is what an instance uses; package usage owns it and its sources.
type Usage = usage.Usage

// Usage sources: where the numbers of a Usage were read.
const (
	SourceCgroupV1 = usage.SourceCgroupV1
	SourceCgroupV2 = usage.SourceCgroupV2
	SourceProc     = usage.SourceProc
)

// ExecTarget is what `exec` needs to run a command in a replica: the CLI
// runs `apptainer exec instance://Instance` itself, so a terminal works
// the same for a foreground and a detached stack.
type ExecTarget struct {
	Instance string   `json:"Instance"`
	Env      []string `json:"Env"` // the service's environment, KEY=VALUE
	Pwd      string   `json:"Pwd"`
	// Node and Job, for a replica on a node of a Slurm allocation: the
	// command runs there, in a job step of Job.
	Node string `json:"Node,omitempty"`
	Job  string `json:"Job,omitempty"`
	// NetHolder and NetUserNS: the replica is on the stack network, whose
	// namespaces the client must enter (singularity.Network).
	NetHolder int  `json:"NetHolder,omitempty"`
	NetUserNS bool `json:"NetUserNS,omitempty"`
}

// Errors a Stack returns; the CLI maps them to messages and exit codes.
var (
	// ErrNotRunning: no supervisor runs the project.
	ErrNotRunning = errors.New("project is not running")
	// ErrNoService: a service name that is not in the project.
	ErrNoService = errors.New("no such service")
	// ErrNotRunningReplica: exec into a replica without a running process.
	ErrReplicaNotRunning = errors.New("replica is not running")
)

// NoServiceError names a service that does not exist and lists those that do.
type NoServiceError struct {
	Name  string
	Known []string
}

func (e *NoServiceError) Error() string {
	known := append([]string(nil), e.Known...)
	sort.Strings(known)
	return fmt.Sprintf("no such service: %s (services: %s)", e.Name, strings.Join(known, ", "))
}

func (e *NoServiceError) Is(target error) bool { return target == ErrNoService }

// Filter keeps the rows ps shows for o: active ones unless All, of the
// services named (all when none).
func (o PsOptions) Filter(rows []Replica) []Replica {
	var out []Replica
	for _, r := range rows {
		if !o.All && !r.Active() {
			continue
		}
		if len(o.Services) > 0 && !slices.Contains(o.Services, r.Service) {
			continue
		}
		out = append(out, r)
	}
	return out
}

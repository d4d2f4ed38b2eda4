// Package singularity owns every Apptainer/Singularity command line sstack
// runs. It knows nothing about compose: callers hand it plain specs.
package singularity

import (
	"context"
	"io"
	"os"
	"sstack/internal/usage"
	"time"
)

// Bind is one --bind at instance start (exec ignores binds).
type Bind struct {
	Source   string // absolute host path (file or directory)
	Target   string // absolute container path
	ReadOnly bool
}

// InstanceSpec describes an instance to start.
type InstanceSpec struct {
	Name  string // letters, digits, '.', '-', '_'
	Image string // .sif/.simg file or sandbox directory
	Binds []Bind
	// Tmpfs are container paths that get an empty, private, writable
	// directory (compose `tmpfs` / tmpfs mounts).
	Tmpfs []string
	// HostsFile, when set, is bound read-only onto /etc/hosts; ResolvConf
	// likewise onto /etc/resolv.conf.
	HostsFile  string
	ResolvConf string
	// ReadOnlyRoot keeps the image's root filesystem read-only (compose
	// read_only); otherwise writes go to a throwaway tmpfs overlay.
	ReadOnlyRoot bool
	// Limits are the instance's cgroup limits (limits.go); zero: none.
	Limits Limits
	// GPU is GPUNvidia (--nv) or GPUAMD (--rocm); "" gives no GPU.
	GPU string
	// WorkDir, when set, is the service process's working directory: if
	// the image lacks it (and no mount provides it), the instance gets an
	// empty one, as Docker creates a missing working_dir.
	WorkDir string
	// Net is the network namespace the instance lives in; zero: the host's.
	Net Network
	// HostIPC leaves the instance in the host's IPC namespace (compose
	// ipc: host, or shared between services), instead of its own.
	HostIPC bool
	// Hostname, when set, gives the instance a UTS namespace of its own
	// with that host name (compose hostname).
	Hostname string
}

// ProcessSpec describes the service process run inside an instance.
type ProcessSpec struct {
	Instance string
	// Run selects `apptainer run instance://` (the image's runscript gets
	// Args as its arguments, like Docker's CMD); otherwise
	// `apptainer exec instance://` runs Args[0] with Args[1:].
	Run  bool
	Args []string
	Env  []string // KEY=VALUE; the process gets only these (plus the image's own)
	Pwd  string   // working directory; "" means the runtime's default
	// Net is the instance's network (its InstanceSpec.Net): the client
	// must be started inside it to reach the instance.
	Net Network
	// Rlimits are set on the process before it starts (compose ulimits).
	Rlimits []Rlimit
	// Tty gives the process a pseudo-terminal (compose tty) as its stdin,
	// stdout and stderr; its output goes to Stdout.
	Tty bool
	// Stdout and Stderr receive the process's output; nil discards it.
	Stdout io.Writer
	Stderr io.Writer
}

// Process is a running service process (the apptainer client and the real
// process it started inside the instance).
type Process interface {
	// Signal delivers sig to the real process inside the instance, not to
	// the apptainer client: a signal to the client kills it and the kernel
	// then SIGKILLs the inner process without running its handlers.
	Signal(sig os.Signal) error
	// Kill SIGKILLs the inner process and the client.
	Kill() error
	// Wait blocks until the process has exited and returns its exit code
	// (128+N when killed by signal N; 255 when the runtime itself failed).
	Wait() (int, error)
	// Pid of the apptainer client.
	Pid() int
	// Running waits up to wait for the command to have been exec'd inside
	// the instance and returns its host pid. It returns os.ErrProcessDone
	// when the client exited first: Apptainer could not start the command
	// (no such program, a bad working directory); on a timeout it returns
	// the client's pid and no error.
	Running(wait time.Duration) (int, error)
}

// SeedSpec is a new volume to fill from an image, as Docker fills a new
// named volume with the image's content at its mount point.
type SeedSpec struct {
	// Instance is the instance the volume is made for (it need not exist
	// yet): a runtime that spreads instances over nodes seeds on its node.
	Instance string
	Image    string // .sif/.simg file or sandbox directory
	Path     string // absolute path in the image
	HostDir  string // the volume's directory, created if missing
}

// InstanceInfo is one entry of `instance list --json`.
type InstanceInfo struct {
	Name string `json:"instance"`
	Pid  int    `json:"pid"`
	// Img is not reliable for unprivileged users (a temporary sandbox).
	Img string `json:"img"`
	// LogOutPath is the file Apptainer keeps the instance's output in.
	LogOutPath string `json:"logOutPath"`
}

// Runtime is what the actors need from Apptainer. *Apptainer implements it,
// internal/agent serves it on other nodes; unit tests use fakes. Every
// capability is a method here, so that no runtime lacks one unnoticed.
type Runtime interface {
	StartInstance(ctx context.Context, spec InstanceSpec) error
	// StopInstance stops the instance with sig, SIGKILLing after timeout.
	StopInstance(ctx context.Context, name string, sig string, timeout time.Duration) error
	ListInstances(ctx context.Context, glob string) ([]InstanceInfo, error)
	StartProcess(ctx context.Context, spec ProcessSpec) (Process, error)
	// Exec runs a short command (spec.Args, with spec.Env) in an instance
	// (healthchecks) and returns its exit code and combined output.
	Exec(ctx context.Context, spec ProcessSpec) (int, []byte, error)
	// EndRun ends every process left in the instance but its init, after
	// the service process exited.
	EndRun(ctx context.Context, instance string) (int, error)
	// Usage reads what the named instances use now (CPU, memory, block
	// I/O, processes), on the host that runs them. Instances that do not
	// exist are left out.
	Usage(ctx context.Context, instances []string) (map[string]usage.Usage, error)
	// SeedVolume copies the image's content at spec.Path into
	// spec.HostDir, on the host that runs spec.Instance.
	SeedVolume(ctx context.Context, spec SeedSpec) error
}

// Package compose turns a compose project into a Plan: plain data that says
// what sstack will run, printable and testable without a runtime. It knows
// nothing about Apptainer command lines (that is package singularity).
package compose

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Plan is everything `sstack up` needs, resolved: no interpolation, relative
// paths or defaults are left for later stages to work out.
type Plan struct {
	Project    string `json:"project"`
	WorkingDir string `json:"working_dir"` // project directory; relative paths were resolved against it
	StateDir   string `json:"state_dir"`   // per-project state: named volumes, hosts file, logs
	// ConfigFiles are the compose files the plan was loaded from.
	ConfigFiles []string `json:"config_files,omitempty"`
	// Hosts are the /etc/hosts lines every service has: localhost, then
	// every service name of the project (and container_name, hostname and
	// network aliases) on 127.0.0.1, as services on the host's network
	// share it; on the stack network the stack's DNS server answers these
	// names with the replicas' own addresses instead (internal/engine).
	// Kept once for the project, so that a plan grows linearly with its
	// services; a service's own lines are in its ExtraHosts.
	Hosts []HostEntry `json:"hosts"`
	// Services in dependency order: every service comes after all of its
	// dependencies (ties broken by name, so the order is stable).
	Services []Service `json:"services"`
	// Networks are the compose networks the services on the project
	// network are on (networks.go).
	Networks []Network `json:"networks,omitempty"`
	// NodeLabels are x-sstack.node_labels: labels of Slurm nodes by name,
	// for node.labels.* placement constraints.
	NodeLabels map[string]map[string]string `json:"node_labels,omitempty"`
	// Warnings for keys sstack cannot honour; printed before anything starts.
	Warnings []Warning `json:"warnings,omitempty"`
}

// Warning names a service and a compose key that sstack ignores, and why.
type Warning struct {
	Service string `json:"service"`
	Key     string `json:"key"`
	Reason  string `json:"reason"`
}

func (w Warning) String() string {
	if w.Service == "" {
		if w.Key == "" {
			return w.Reason
		}
		return w.Key + ": " + w.Reason
	}
	return "service \"" + w.Service + "\": " + w.Key + ": " + w.Reason
}

// Service is one compose service. Replicas share everything but the
// instance name.
type Service struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"` // deploy.replicas / scale; at least 1
	// Placement is deploy.placement: on which nodes of a Slurm allocation
	// the replicas may run (place.go); nil: anywhere.
	Placement *Placement `json:"placement,omitempty"`
	// ContainerName (compose container_name) is the display name of the
	// service's one replica; see DisplayName.
	ContainerName string `json:"container_name,omitempty"`

	// Problems would refuse the service at up; they are set aside (not
	// failing the plan) when services were selected and this one is not
	// among them or their dependencies (up SVC, pull SVC), as docker
	// compose creates only the selected containers. Starting it later
	// reports them.
	Problems []error `json:"-"`

	// Ulimits (compose ulimits) are set on the service process before it
	// starts, sorted by name.
	Ulimits []Ulimit `json:"ulimits,omitempty"`
	// Tty (compose tty): the service process gets a pseudo-terminal as
	// its stdin, stdout and stderr.
	Tty bool `json:"tty,omitempty"`
	// HostIPC: the instance stays in the host's IPC namespace (compose
	// ipc: host, and services that share theirs); otherwise it has its own.
	HostIPC bool `json:"host_ipc,omitempty"`
	// Hostname (compose hostname) is the instance's own host name, in a
	// UTS namespace of its own; "" keeps the host's.
	Hostname string `json:"hostname,omitempty"`

	ImageRef string `json:"image_ref"` // as written in the compose file
	// Image is the resolved path: a .sif/.simg file or a sandbox
	// directory; for a missing image, where up pulls or builds it.
	Image string `json:"image"`
	// ImageSource says where the image comes from (pull, build) and
	// whether it was found; nil in plans made by hand (tests).
	ImageSource *ImageSource `json:"image_source,omitempty"`

	// Entrypoint replaces the image's entrypoint; nil means keep the image's
	// runscript (`apptainer run`), Command then replaces its CMD.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Command    []string `json:"command,omitempty"`

	// Environment as KEY=VALUE, sorted by key; env_file entries merged in
	// with compose's precedence.
	Environment []string `json:"environment,omitempty"`
	WorkingDir  string   `json:"working_dir,omitempty"` // "" means the runtime's default

	Mounts []Mount `json:"mounts,omitempty"`
	// ReadOnly (compose `read_only`): the root filesystem must stay
	// read-only (no --writable-tmpfs).
	ReadOnly bool `json:"read_only,omitempty"`
	// ExtraHosts are the /etc/hosts lines of this service only, after the
	// plan's Hosts: its link aliases (on 127.0.0.1) and extra_hosts.
	ExtraHosts []HostEntry `json:"extra_hosts,omitempty"`

	DependsOn []Dependency `json:"depends_on,omitempty"`
	// Network is the service's network mode: NetworkProject (the stack's
	// own namespace), NetworkHost or NetworkNone (network.go).
	Network string `json:"network_mode"`
	// NetworkShare, on the project network, is the service whose
	// replica 1's namespace this one's replicas join (network_mode:
	// service:NAME, followed to the end); "" for a namespace of each
	// replica's own.
	NetworkShare string `json:"network_share,omitempty"`
	// Networks are the compose networks of a service on the project
	// network with a namespace of its own (networks.go), sorted by name.
	Networks []ServiceNetwork `json:"networks,omitempty"`
	// Ports are compose ports: published from the host into the project
	// network; on the host's network the service listens on Target itself.
	Ports []Port `json:"ports,omitempty"`

	StopSignal      string        `json:"stop_signal"`       // e.g. "SIGTERM"
	StopGracePeriod time.Duration `json:"stop_grace_period"` // default 10s

	Restart RestartPolicy `json:"restart"`
	// Update and Rollback are deploy.update_config and rollback_config
	// (update.go); nil: replaced all at once, as docker compose does.
	Update      *UpdateConfig `json:"update_config,omitempty"`
	Rollback    *UpdateConfig `json:"rollback_config,omitempty"`
	Healthcheck *Healthcheck  `json:"healthcheck,omitempty"` // nil: none

	// Resources are the instance's cgroup limits (resources.go); nil: none.
	Resources *Resources `json:"resources,omitempty"`
	// GPU is what the service asked for and the GPUs it sees (gpus.go);
	// nil: no GPU.
	GPU *GPU `json:"gpu,omitempty"`
}

// HostsOf is the whole /etc/hosts of s: the project's lines, then the
// service's own.
func (p *Plan) HostsOf(s *Service) []HostEntry {
	return append(slices.Clone(p.Hosts), s.ExtraHosts...)
}

// DisplayName is the name the console, logs, ps and events show for one
// replica (from 1), as docker compose names containers: container_name if
// set, else SERVICE-N. container_name names one replica only; any other
// (one added by a live scale) keeps SERVICE-N.
func (s *Service) DisplayName(replica int) string {
	if s.ContainerName != "" && replica == 1 {
		return expandSlot(s.ContainerName, replica)
	}
	return s.Name + "-" + strconv.Itoa(replica)
}

// Copy is a copy of p whose services a run may change (replica counts
// from --scale, limits dropped or lowered for this host, dependencies on
// services placed elsewhere) without changing p: what up runs is derived
// from the plan, not an edit of it.
func (p *Plan) Copy() *Plan {
	c := *p
	c.Services = make([]Service, len(p.Services))
	for i, s := range p.Services {
		if s.Resources != nil {
			r := *s.Resources
			r.Keys = slices.Clone(r.Keys)
			s.Resources = &r
		}
		s.Ulimits = slices.Clone(s.Ulimits)
		s.DependsOn = slices.Clone(s.DependsOn)
		c.Services[i] = s
	}
	return &c
}

// InstanceName is the Apptainer instance name of one replica (from 1).
func InstanceName(project, service string, replica int) string {
	return project + "." + service + "." + strconv.Itoa(replica)
}

// OneOffInstanceName is the instance name of a one-off (sstack run) of
// service: name in the replica's place.
func OneOffInstanceName(project, service, name string) string {
	return project + "." + service + "." + name
}

// ParseInstanceName reads a name InstanceName or OneOffInstanceName made
// (replica 0 for a one-off's); ok is false for any other instance's.
func ParseInstanceName(name string) (project, service string, replica int, ok bool) {
	parts := strings.Split(name, ".")
	if len(parts) != 3 {
		return "", "", 0, false
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 {
		n = 0
	}
	return parts[0], parts[1], n, true
}

// MountKind says where a mount's source comes from.
type MountKind string

const (
	MountBind   MountKind = "bind"   // a host path from the compose file
	MountVolume MountKind = "volume" // a named volume: a directory under StateDir/volumes
	MountTmpfs  MountKind = "tmpfs"  // an empty in-memory directory
	MountSecret MountKind = "secret" // a file secret, always read-only
	MountConfig MountKind = "config" // a compose config file, always read-only
)

// Mount is one path made visible inside the instance.
type Mount struct {
	Kind     MountKind `json:"kind"`
	Source   string    `json:"source,omitempty"` // absolute host path; empty for tmpfs
	Target   string    `json:"target"`           // absolute path in the container
	ReadOnly bool      `json:"read_only,omitempty"`
	// Seed: for named volumes, copy the image's content at Target into the
	// volume when the volume directory is first created (Docker's behaviour).
	Seed bool `json:"seed,omitempty"`
	// Volume is the compose name of a named volume.
	Volume string `json:"volume,omitempty"`
	// CreateHostPath: for binds, create Source as a directory if nothing
	// exists there (as docker compose does unless the long syntax sets
	// bind.create_host_path: false).
	CreateHostPath bool `json:"create_host_path,omitempty"`
	// Content, for secrets and configs given by value (`environment:` or
	// `content:`), is what the runtime writes to Source (mode 0600, under
	// StateDir) before the instance starts. Never printed.
	Content *string `json:"-"`
}

// HostEntry is one /etc/hosts line.
type HostEntry struct {
	Host string `json:"host"`
	IP   string `json:"ip"`
	// Comment, if any, explains a translated entry (e.g. "host-gateway").
	Comment string `json:"comment,omitempty"`
	// Service is the service the name reaches, Replica the one replica of
	// it (a name with a slot template), 0 for all: where replicas run on
	// several nodes, the name goes to theirs (PlacedHosts).
	Service string `json:"-"`
	Replica int    `json:"-"`
}

// Dependency conditions, as in the compose specification.
const (
	ConditionStarted               = "service_started"
	ConditionHealthy               = "service_healthy"
	ConditionCompletedSuccessfully = "service_completed_successfully"
)

// Dependency is one depends_on entry.
type Dependency struct {
	Service   string `json:"service"`
	Condition string `json:"condition"`
	Required  bool   `json:"required"`
	Restart   bool   `json:"restart,omitempty"`
}

// RestartPolicy merges the service-level `restart:` key and
// deploy.restart_policy; Source says which one it came from, since their
// semantics differ (engine backoff vs fixed delay).
type RestartPolicy struct {
	Source string `json:"source"` // "restart", "deploy" or "" (never restart)
	// Condition: "no", "always", "on-failure", "unless-stopped" for
	// Source "restart"; "none", "on-failure", "any" for Source "deploy".
	Condition   string        `json:"condition"`
	MaxAttempts int           `json:"max_attempts,omitempty"` // 0: unlimited
	Delay       time.Duration `json:"delay,omitempty"`
	Window      time.Duration `json:"window,omitempty"`
}

// Healthcheck is the resolved healthcheck of a service.
type Healthcheck struct {
	// Test is the command to run inside the instance: for CMD-SHELL it is
	// ["/bin/sh", "-c", cmd].
	Test          []string      `json:"test"`
	Interval      time.Duration `json:"interval"`
	Timeout       time.Duration `json:"timeout"`
	Retries       int           `json:"retries"`
	StartPeriod   time.Duration `json:"start_period"`
	StartInterval time.Duration `json:"start_interval"`
}

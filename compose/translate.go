package compose

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"sstack/singularity"
)

// ErrInvalid is matched (errors.Is) by every *Error: the project cannot
// run under sstack as written.
var ErrInvalid = errors.New("invalid project")

// Error is one reason a compose project cannot run under sstack. Load and
// Translate report all of them at once, joined with errors.Join.
type Error struct {
	File    string // the compose file, when the problem is known to be in one
	Service string // "" for a top-level key
	Key     string // the compose key, e.g. `image` or `secret "db_pw"`
	Message string // what is wrong and what the user can do
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Service != "" {
		fmt.Fprintf(&b, "service %q: ", e.Service)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Defaults of the compose specification that sstack applies.
const (
	DefaultStopSignal      = "SIGTERM"
	DefaultStopGracePeriod = 10 * time.Second

	DefaultHealthInterval      = 30 * time.Second
	DefaultHealthTimeout       = 30 * time.Second
	DefaultHealthRetries       = 3
	DefaultHealthStartInterval = 5 * time.Second
)

// MaxReplicas bounds the replicas of a service: each is an instance of
// its own, and a plan holds per-replica values (hosts, paths) for them
// all, so a mistyped count must not make config or up run out of memory.
const MaxReplicas = 10000

// Translate turns a project loaded by compose-go (environment resolved,
// paths absolute) into a Plan. It reads the file system to find images
// and check secret files, but starts nothing. Every problem is reported,
// joined with errors.Join; each is an *Error.
func Translate(p *types.Project, opts Options) (*Plan, error) {
	if p.Name == "" {
		return nil, &Error{Key: "name", Message: "the project has no name; give one with -p"}
	}
	t := &translator{
		p:          p,
		stateBase:  opts.stateBase(),
		imageDir:   opts.imageDir(p.WorkingDir),
		volumeDirs: map[string]string{},
		reported:   map[string]bool{},
		scaledDown: map[string]bool{},
	}
	t.stateDir = filepath.Join(t.stateBase, p.Name)
	t.hostNetwork = opts.HostNetwork || t.networkSetting() == NetworkHost
	t.cwd, _ = opts.workingDir()

	t.topLevel()
	services := map[string]*Service{}
	for _, name := range p.ServiceNames() {
		sc := p.Services[name]
		sc.Name = name
		if s := t.service(sc); s != nil {
			services[name] = s
		}
	}
	common := t.commonHosts(services)
	commonNames := make(map[string]bool, len(common))
	for _, h := range common {
		commonNames[h.Host] = true
	}
	for _, name := range sortedKeys(services) {
		services[name].ExtraHosts = t.serviceHosts(p.Services[name], commonNames)
	}
	t.dependencies(services)
	t.ipc(services)
	order := t.order(services)
	t.volumesFrom(order, services)
	t.sharedNetworks(order, services)
	t.portConflicts(order, services)
	t.assignGPUs(order, services, opts)
	if len(services) == 0 && len(t.errs) == 0 {
		msg := "the project has no service to run"
		if profiles := p.DisabledServices.GetProfiles(); len(profiles) > 0 {
			slices.Sort(profiles)
			msg += fmt.Sprintf("; its services are in profiles %s: enable one with --profile", strings.Join(profiles, ", "))
		}
		t.fail("", "services", "%s", msg)
	}

	plan := &Plan{
		Project:    p.Name,
		WorkingDir: p.WorkingDir,
		StateDir:   t.stateDir,
		Hosts:      common,
		Networks:   t.projectNetworks(order, services),
		NodeLabels: t.nodeLabels(),
		Warnings:   t.warns,
	}
	for _, name := range order {
		plan.Services = append(plan.Services, *services[name])
	}
	// What up checks before it starts anything, config checks too.
	t.errs = append(t.errs, plan.problems()...)
	if len(opts.Services) > 0 {
		t.errs = plan.setAside(t.errs, plan.WithDependencies(opts.Services), true)
	}
	if len(t.errs) > 0 {
		return nil, errors.Join(t.errs...)
	}
	return plan, nil
}

// Service returns the named service, or nil.
func (p *Plan) Service(name string) *Service {
	for i := range p.Services {
		if p.Services[i].Name == name {
			return &p.Services[i]
		}
	}
	return nil
}

// WithService is a copy of p whose entry for svc.Name is svc; p is left
// as it is (the stack supervisor's plan is read by others).
func (p *Plan) WithService(svc Service) *Plan {
	out := *p
	out.Services = slices.Clone(p.Services)
	for i := range out.Services {
		if out.Services[i].Name == svc.Name {
			out.Services[i] = svc
		}
	}
	return &out
}

type translator struct {
	p         *types.Project
	stateBase string
	stateDir  string
	imageDir  string
	cwd       string // paths in messages are shown relative to it

	errs  []error
	warns []Warning

	volumeDirs map[string]string // top-level volume key -> host directory
	reported   map[string]bool   // secret/config files checked -> found faulty
	scaledDown map[string]bool   // services with scale 0, not started
	// hostNetwork: every service on the host's network (up --network
	// host, x-sstack.network: host).
	hostNetwork bool
}

func (t *translator) fail(service, key, format string, args ...any) {
	t.errs = append(t.errs, &Error{Service: service, Key: key, Message: fmt.Sprintf(format, args...)})
}

func (t *translator) warn(service, key, format string, args ...any) {
	t.warns = append(t.warns, Warning{Service: service, Key: key, Reason: fmt.Sprintf(format, args...)})
}

// display shows a host path the way the user can paste it: relative to the
// current directory when below it.
func (t *translator) display(p string) string {
	if t.cwd != "" {
		rel, err := filepath.Rel(t.cwd, p)
		switch {
		case err != nil || rel == ".." || strings.HasPrefix(rel, "../"):
		case rel == ".":
			return "."
		default:
			return "./" + rel
		}
	}
	return p
}

// topLevel warns about top-level sections sstack does not use.
func (t *translator) topLevel() {
	p := t.p
	for _, name := range sortedKeys(p.Volumes) {
		v := p.Volumes[name]
		if v.Driver != "" && v.Driver != "local" {
			t.warn("", "volumes."+name+".driver", "driver %q is not used: volumes are plain directories under the state directory", v.Driver)
		}
		if len(v.DriverOpts) > 0 && bindDevice(v) == "" {
			t.warn("", "volumes."+name+".driver_opts", "only the bind options (type: none, o: bind, device: DIR) are understood")
		}
		if len(v.Labels) > 0 {
			t.warn("", "volumes."+name+".labels", "%s", reasonMetadata)
		}
	}
	for _, name := range sortedKeys(p.Secrets) {
		t.fileObjectWarnings("secrets", name, types.FileObjectConfig(p.Secrets[name]))
	}
	for _, name := range sortedKeys(p.Configs) {
		t.fileObjectWarnings("configs", name, types.FileObjectConfig(p.Configs[name]))
	}
	if len(p.Jobs) > 0 {
		t.warn("", "jobs", "%s: sstack does not run jobs", strings.Join(sortedKeys(p.Jobs), ", "))
	}
	if len(p.Models) > 0 {
		t.warn("", "models", "%s: sstack provides no AI models", strings.Join(sortedKeys(p.Models), ", "))
	}
}

func (t *translator) fileObjectWarnings(section, name string, f types.FileObjectConfig) {
	if len(f.Labels) > 0 {
		t.warn("", section+"."+name+".labels", "%s", reasonMetadata)
	}
	if f.Driver != "" || len(f.DriverOpts) > 0 {
		t.warn("", section+"."+name+".driver", "there is no %s store: only file, environment and content are used", strings.TrimSuffix(section, "s"))
	}
	if f.TemplateDriver != "" {
		t.warn("", section+"."+name+".template_driver", "templates are not rendered: the file is used as it is")
	}
}

// service translates one service; nil when it is not to be started.
func (t *translator) service(sc types.ServiceConfig) *Service {
	name := sc.Name
	s := &Service{Name: name, ReadOnly: sc.ReadOnly, Hostname: sc.Hostname}

	replicas, ok := t.replicas(sc)
	if !ok {
		return nil
	}
	if replicas == 0 {
		t.scaledDown[name] = true
		t.warn(name, "scale", "0 replicas: the service is not started")
		return nil
	}
	s.Replicas = replicas
	s.ContainerName = sc.ContainerName
	s.Placement = t.placement(sc)
	s.Network = t.networkMode(sc)

	t.image(sc, s)
	t.command(sc, s)

	for _, k := range sortedKeys(sc.Environment) {
		if v := sc.Environment[k]; v != nil {
			s.Environment = append(s.Environment, k+"="+*v)
		}
	}
	s.WorkingDir = sc.WorkingDir
	s.Ulimits = t.ulimits(sc)
	s.Tty = sc.Tty
	if sc.StdinOpen && !sc.Tty {
		t.warn(name, "stdin_open", "without tty: the service's stdin is empty (/dev/null); with tty: true it is a terminal that stays open")
	}

	t.volumes(sc, s)
	t.tmpfs(sc, s)
	for _, ref := range sc.Secrets {
		if m, ok := t.secret(name, ref); ok {
			s.Mounts = append(s.Mounts, m)
		}
	}
	for _, ref := range sc.Configs {
		if m, ok := t.config(name, ref); ok {
			s.Mounts = append(s.Mounts, m)
		}
	}

	s.StopSignal = DefaultStopSignal
	if sc.StopSignal != "" {
		// Spelled as the runtime names it; one it does not know is kept
		// as written, for Check to report.
		s.StopSignal = sc.StopSignal
		if sig, err := singularity.ParseSignal(sc.StopSignal); err == nil {
			s.StopSignal = singularity.SignalName(sig)
		}
	}
	s.StopGracePeriod = DefaultStopGracePeriod
	if sc.StopGracePeriod != nil {
		s.StopGracePeriod = time.Duration(*sc.StopGracePeriod)
	}

	t.checkPorts(sc)
	s.Restart = t.restart(sc)
	if d := sc.Deploy; d != nil {
		s.Update = t.updateConfig(sc.Name, "update_config", d.UpdateConfig)
		s.Rollback = t.updateConfig(sc.Name, "rollback_config", d.RollbackConfig)
	}
	s.Healthcheck = t.healthcheck(sc)
	s.Resources = t.resources(sc)
	s.GPU = t.gpuRequest(sc)
	t.ports(sc, s)
	t.securityOpt(sc)
	t.unsupported(sc)
	return s
}

func (t *translator) replicas(sc types.ServiceConfig) (int, bool) {
	n := sc.GetScale()
	if sc.Scale != nil && sc.Deploy != nil && sc.Deploy.Replicas != nil && *sc.Scale != *sc.Deploy.Replicas {
		t.fail(sc.Name, "scale", "scale: %d and deploy.replicas: %d differ; keep one of them", *sc.Scale, *sc.Deploy.Replicas)
		return 0, false
	}
	if n < 0 || n > MaxReplicas {
		t.fail(sc.Name, "scale", "%d replicas; give 0 to %d", n, MaxReplicas)
		return 0, false
	}
	if n > 1 && sc.ContainerName != "" {
		t.fail(sc.Name, "container_name", "%q cannot name %d replicas; remove container_name or run one replica", sc.ContainerName, n)
	}
	return n, true
}

func (t *translator) command(sc types.ServiceConfig, s *Service) {
	if sc.Entrypoint != nil {
		s.Entrypoint = append([]string{}, sc.Entrypoint...)
	}
	if sc.Command != nil {
		s.Command = append([]string{}, sc.Command...)
	}
	switch {
	case sc.Entrypoint != nil && len(sc.Entrypoint) == 0 && len(sc.Command) == 0:
		t.fail(sc.Name, "entrypoint", "an empty entrypoint clears the image's entrypoint and command, and no command: is given; set command:")
	case sc.Entrypoint == nil && sc.Command != nil && len(sc.Command) == 0:
		t.warn(sc.Name, "command", "an empty command cannot clear the image's CMD: the runscript falls back to it when given no arguments")
	}
}

func (t *translator) restart(sc types.ServiceConfig) RestartPolicy {
	if sc.Deploy != nil && sc.Deploy.RestartPolicy != nil {
		rp := sc.Deploy.RestartPolicy
		if sc.Restart != "" {
			t.warn(sc.Name, "restart", "ignored: deploy.restart_policy takes precedence")
		}
		r := RestartPolicy{Source: "deploy", Condition: rp.Condition}
		switch r.Condition {
		case "":
			r.Condition = "any"
		case "none", "on-failure", "any":
		default:
			t.fail(sc.Name, "deploy.restart_policy.condition", "unknown condition %q; use none, on-failure or any", rp.Condition)
		}
		if rp.Delay != nil {
			r.Delay = time.Duration(*rp.Delay)
		}
		if rp.Window != nil {
			r.Window = time.Duration(*rp.Window)
		}
		if rp.MaxAttempts != nil {
			r.MaxAttempts = int(min(*rp.MaxAttempts, 1<<31-1))
		}
		return r
	}
	r := RestartPolicy{Condition: "no"}
	if sc.Restart == "" {
		return r
	}
	cond, count, hasCount := strings.Cut(sc.Restart, ":")
	switch {
	case cond == "on-failure" && hasCount:
		n, err := strconv.Atoi(count)
		if err != nil || n < 0 {
			t.fail(sc.Name, "restart", "%q: the retry count must be a number of 0 or more (on-failure:3)", sc.Restart)
			return r
		}
		r.MaxAttempts = n
	case hasCount:
		t.fail(sc.Name, "restart", "%q: only on-failure takes a retry count", sc.Restart)
		return r
	case cond == "no", cond == "always", cond == "on-failure", cond == "unless-stopped":
	default:
		t.fail(sc.Name, "restart", "unknown policy %q; use no, always, on-failure[:N] or unless-stopped", sc.Restart)
		return r
	}
	r.Source, r.Condition = "restart", cond
	return r
}

func (t *translator) healthcheck(sc types.ServiceConfig) *Healthcheck {
	hc := sc.HealthCheck
	if hc == nil || hc.Disable {
		return nil
	}
	h := &Healthcheck{
		Interval:      durationOr(hc.Interval, DefaultHealthInterval),
		Timeout:       durationOr(hc.Timeout, DefaultHealthTimeout),
		Retries:       DefaultHealthRetries,
		StartPeriod:   durationOr(hc.StartPeriod, 0),
		StartInterval: durationOr(hc.StartInterval, DefaultHealthStartInterval),
	}
	if hc.Retries != nil && *hc.Retries > 0 {
		h.Retries = int(min(*hc.Retries, 1<<31-1))
	}
	test := hc.Test
	if len(test) == 0 {
		t.warn(sc.Name, "healthcheck", "no test: given, and the image's own HEALTHCHECK cannot be read from a SIF: the service has no healthcheck")
		return nil
	}
	switch test[0] {
	case "NONE":
		return nil
	case "CMD":
		h.Test = append([]string{}, test[1:]...)
	case "CMD-SHELL":
		h.Test = []string{"/bin/sh", "-c", strings.Join(test[1:], " ")}
	default:
		t.fail(sc.Name, "healthcheck", "test must start with CMD, CMD-SHELL or NONE, not %q", test[0])
		return nil
	}
	if len(h.Test) == 0 || (test[0] == "CMD-SHELL" && strings.TrimSpace(h.Test[2]) == "") {
		t.fail(sc.Name, "healthcheck", "test %s has no command; give one, or use test: [\"NONE\"]", test[0])
		return nil
	}
	return h
}

// durationOr is *d, or def when d is unset or zero (Docker treats 0 as
// "use the default").
func durationOr(d *types.Duration, def time.Duration) time.Duration {
	if d == nil || *d == 0 {
		return def
	}
	return time.Duration(*d)
}

// unsupported warns about every key of sc that sstack cannot honour and
// that the translation above does not already report.
func (t *translator) unsupported(sc types.ServiceConfig) {
	name := sc.Name
	for _, k := range setKeys(sc, unsupportedServiceKeys) {
		t.warn(name, k, "%s", unsupportedServiceKeys[k])
	}
	if d := sc.Deploy; d != nil {
		for _, k := range setKeys(*d, unsupportedDeployKeys) {
			t.warn(name, "deploy."+k, "%s", unsupportedDeployKeys[k])
		}
		if d.Mode != "" && d.Mode != "replicated" {
			t.warn(name, "deploy.mode", "%q is not honoured: replicas are placed as for replicated (deploy.placement)", d.Mode)
		}
	}
	if sc.Init != nil && !*sc.Init {
		t.warn(name, "init", "false is not honoured: Apptainer always runs its own init as PID 1 of the instance")
	}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

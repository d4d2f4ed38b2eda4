package compose

// The pre-start checks: everything about a plan that would make `up` fail
// (or silently do something else) once instances start, checked before
// anything starts. Translate runs them, so `config` refuses what `up`
// would; `up` runs them again on the plan it is given (after --scale).
// Apptainer's rules come from package singularity's validators, the ones
// its command lines apply: each rule is spelled once.

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"sstack/singularity"
)

// Check reports every reason the plan cannot start, as *Error values
// joined with errors.Join; nil when it can.
func (p *Plan) Check() error { return errors.Join(p.problems()...) }

func (p *Plan) problems() []error {
	var errs []error
	// The hosts files are bound from the state directory.
	if err := singularity.ValidateBind(singularity.Bind{Source: filepath.Join(p.StateDir, "hosts"), Target: "/etc/hosts"}); err != nil {
		errs = append(errs, &Error{Key: "state directory", Message: err.Error()})
	}
	for i := range p.Services {
		errs = append(errs, p.checkService(&p.Services[i])...)
	}
	return errs
}

func (p *Plan) checkService(s *Service) []error {
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, &Error{Service: s.Name, Key: key, Message: fmt.Sprintf(format, args...)})
	}
	if s.Replicas < 0 || s.Replicas > MaxReplicas {
		fail("scale", "%d replicas; give 0 to %d", s.Replicas, MaxReplicas)
	} else if s.Replicas > 0 {
		// The longest name is the last replica's.
		if err := singularity.ValidateName(InstanceName(p.Project, s.Name, s.Replicas)); err != nil {
			fail("name", "%v; rename the service or shorten the project name", err)
		}
	}
	if _, err := singularity.ParseSignal(s.StopSignal); err != nil {
		fail("stop_signal", "%v", err)
	}
	negative := func(key string, d time.Duration) {
		if d < 0 {
			fail(key, "%s is negative; give a duration of 0s or more, such as 10s or 1m30s", d)
		}
	}
	negative("stop_grace_period", s.StopGracePeriod)
	if r := s.Restart; r.Source == "deploy" {
		negative("deploy.restart_policy.delay", r.Delay)
		negative("deploy.restart_policy.window", r.Window)
		if r.MaxAttempts < 0 {
			fail("deploy.restart_policy.max_attempts", "%d: give 0 (no limit) or more", r.MaxAttempts)
		}
	}
	if h := s.Healthcheck; h != nil {
		negative("healthcheck.interval", h.Interval)
		negative("healthcheck.timeout", h.Timeout)
		negative("healthcheck.start_period", h.StartPeriod)
		negative("healthcheck.start_interval", h.StartInterval)
		if h.Retries < 0 {
			fail("healthcheck.retries", "%d: give 0 or more", h.Retries)
		}
	}
	for _, kv := range s.Environment {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			fail("environment", "%q: want KEY=VALUE", kv)
			continue
		}
		// Only values hold slot templates: a replica's number changes no
		// name, and digits are allowed in values.
		if err := singularity.ValidateEnv(k, v); err != nil {
			fail("environment", "%v", err)
		}
	}
	if err := singularity.ValidateEnvSize(s.Environment); err != nil {
		fail("environment", "%v", err)
	}
	errs = append(errs, p.checkReplicas(s)...)
	return errs
}

// checkReplicas checks what differs per replica when a slot template is
// used (paths, working directory, commands): every replica's values, and
// each problem once, for the first replica that has it.
func (p *Plan) checkReplicas(s *Service) []error {
	var errs []error
	once := map[string]bool{}
	fail := func(what, key, format string, args ...any) {
		if !once[what] {
			once[what] = true
			errs = append(errs, &Error{Service: s.Name, Key: key, Message: fmt.Sprintf(format, args...)})
		}
	}
	replicas := 1
	if s.HasSlotTemplate() {
		replicas = max(s.Replicas, 1)
	}
	for n := 1; n <= replicas; n++ {
		r := s
		if replicas > 1 {
			r = s.ForReplica(n)
		}
		if r.WorkingDir != "" {
			if err := singularity.ValidateWorkingDir(r.WorkingDir); err != nil {
				fail("working_dir", "working_dir", "%v", err)
			}
		}
		if r.Hostname != "" {
			if err := singularity.ValidateHostname(r.Hostname); err != nil {
				fail("hostname", "hostname", "%v", err)
			}
		}
		for _, c := range []struct {
			key  string
			args []string
		}{{"entrypoint", r.Entrypoint}, {"command", r.Command}} {
			if err := singularity.ValidateArgs(c.args); err != nil {
				fail(c.key, c.key, "%v", err)
			}
		}
		if h := r.Healthcheck; h != nil {
			if err := singularity.ValidateArgs(h.Test); err != nil {
				fail("healthcheck", "healthcheck.test", "%v", err)
			}
		}
		targets := map[string]MountKind{}
		for i, m := range r.Mounts {
			var err error
			if m.Kind == MountTmpfs {
				err = singularity.ValidateTmpfs(m.Target)
			} else {
				err = singularity.ValidateBind(singularity.Bind{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
			}
			if err != nil {
				fail(fmt.Sprint("mount ", i), m.Kind.key(), "%v", err)
				continue
			}
			// Of two mounts on one target Apptainer keeps the first
			// (measured): the second would be lost without a word.
			target := filepath.Clean(m.Target)
			if k, ok := targets[target]; ok {
				fail("twice", "volumes", "%s is mounted twice (%s and %s); remove one", target, k, m.Kind)
				continue
			}
			targets[target] = m.Kind
		}
	}
	return errs
}

// key is the compose key a mount of kind k comes from.
func (k MountKind) key() string {
	switch k {
	case MountTmpfs:
		return "tmpfs"
	case MountSecret:
		return "secrets"
	case MountConfig:
		return "configs"
	}
	return "volumes"
}

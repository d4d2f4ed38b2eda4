package actors

import (
	"sstack/compose"
	"sstack/singularity"
)

// instanceSpec is the Apptainer instance of one replica: every mount is
// given here because exec ignores binds.
func instanceSpec(cfg *ServiceConfig) singularity.InstanceSpec {
	svc := cfg.Service
	spec := singularity.InstanceSpec{Name: cfg.Instance, Image: svc.Image, HostsFile: cfg.HostsFile, ReadOnlyRoot: svc.ReadOnly,
		WorkDir: svc.WorkingDir, Limits: InstanceLimits(svc), GPU: instanceGPU(svc), Net: cfg.Net, Hostname: svc.Hostname, HostIPC: svc.HostIPC}
	if cfg.Net.Holder > 0 {
		spec.ResolvConf = cfg.ResolvConf
	}
	for _, m := range svc.Mounts {
		switch m.Kind {
		case compose.MountTmpfs:
			spec.Tmpfs = append(spec.Tmpfs, m.Target)
		default:
			spec.Binds = append(spec.Binds, singularity.Bind{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly || m.Kind == compose.MountSecret})
		}
	}
	return spec
}

// processSpec is the service process. Without an entrypoint the image's
// runscript runs with command as its arguments (Docker's ENTRYPOINT/CMD
// split); an image without a runscript runs command directly.
func processSpec(cfg *ServiceConfig) singularity.ProcessSpec {
	svc := cfg.Service
	spec := singularity.ProcessSpec{Instance: cfg.Instance, Env: svc.Environment, Pwd: svc.WorkingDir, Net: cfg.Net, Tty: svc.Tty}
	for _, u := range svc.Ulimits {
		spec.Rlimits = append(spec.Rlimits, singularity.Rlimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if svc.Entrypoint == nil && cfg.HasRunscript {
		spec.Run = true
		spec.Args = svc.Command
		return spec
	}
	spec.Args = append(append([]string{}, svc.Entrypoint...), svc.Command...)
	return spec
}

// Specs are the instance and process of cfg's replica, for a one-off run
// (sstack run) that no service actor supervises.
func Specs(cfg *ServiceConfig) (singularity.InstanceSpec, singularity.ProcessSpec) {
	return instanceSpec(cfg), processSpec(cfg)
}

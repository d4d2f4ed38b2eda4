package actors

import (
	"sstack/compose"
	"sstack/singularity"
)

// instanceSpec is the Apptainer instance of one replica: every mount is
// given here because exec ignores binds.
func instanceSpec(name string, svc *compose.Service, hostsFile string) singularity.InstanceSpec {
	spec := singularity.InstanceSpec{Name: name, Image: svc.Image, HostsFile: hostsFile, ReadOnlyRoot: svc.ReadOnly,
		WorkDir: svc.WorkingDir, Limits: InstanceLimits(svc), GPU: instanceGPU(svc)}
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
func processSpec(instance string, svc *compose.Service, hasRunscript bool) singularity.ProcessSpec {
	spec := singularity.ProcessSpec{Instance: instance, Env: svc.Environment, Pwd: svc.WorkingDir}
	if svc.Entrypoint == nil && hasRunscript {
		spec.Run = true
		spec.Args = svc.Command
		return spec
	}
	spec.Args = append(append([]string{}, svc.Entrypoint...), svc.Command...)
	return spec
}

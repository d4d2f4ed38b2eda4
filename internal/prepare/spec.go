package prepare

import (
	"sstack/compose"
	"sstack/singularity"
)

// Spec is what Apptainer is given for one replica of a service.
type Spec struct {
	Service  *compose.Service
	Instance string // Apptainer instance name, <project>.<service>.<replica>
	// HostsFile is bound onto /etc/hosts.
	HostsFile string
	// Net is the replica's network; ResolvConf, for a stack network, the
	// file bound onto /etc/resolv.conf.
	Net        singularity.Network
	ResolvConf string
	// HasRunscript: the image has a runscript, so a service without an
	// entrypoint is started with `run` (command replaces CMD).
	HasRunscript bool
}

// InstanceSpec is the replica's Apptainer instance: every mount is given
// here because exec ignores binds.
func (r *Spec) InstanceSpec() singularity.InstanceSpec {
	svc := r.Service
	spec := singularity.InstanceSpec{Name: r.Instance, Image: svc.Image, HostsFile: r.HostsFile, ReadOnlyRoot: svc.ReadOnly,
		WorkDir: svc.WorkingDir, Limits: Limits(svc), Net: r.Net, Hostname: svc.Hostname, HostIPC: svc.HostIPC}
	if svc.GPU != nil {
		spec.GPU = svc.GPU.Vendor // compose's vendors are singularity's
	}
	if r.Net.Holder > 0 {
		spec.ResolvConf = r.ResolvConf
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

// ProcessSpec is the service process. Without an entrypoint the image's
// runscript runs with command as its arguments (Docker's ENTRYPOINT/CMD
// split); an image without a runscript runs command directly.
func (r *Spec) ProcessSpec() singularity.ProcessSpec {
	svc := r.Service
	spec := singularity.ProcessSpec{Instance: r.Instance, Env: svc.Environment, Pwd: svc.WorkingDir, Net: r.Net, Tty: svc.Tty}
	for _, u := range svc.Ulimits {
		spec.Rlimits = append(spec.Rlimits, singularity.Rlimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if svc.Entrypoint == nil && r.HasRunscript {
		spec.Run = true
		spec.Args = svc.Command
		return spec
	}
	spec.Args = append(append([]string{}, svc.Entrypoint...), svc.Command...)
	return spec
}

// Limits are the cgroup limits of a service's instances.
func Limits(svc *compose.Service) singularity.Limits {
	r := svc.Resources
	if r == nil {
		return singularity.Limits{}
	}
	return singularity.Limits{
		CPUs: r.CPUs, CPUShares: r.CPUShares, CPUSetCPUs: r.CPUSet,
		Memory: r.Memory, MemoryReservation: r.MemoryReservation, MemorySwap: r.MemorySwap,
		PidsLimit: r.PidsLimit, OOMKillDisable: r.OOMKillDisable, BlkioWeight: r.BlkioWeight,
	}
}

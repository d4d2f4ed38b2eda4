package actors

import (
	"fmt"

	"sstack/compose"
	"sstack/singularity"
)

// ReplicaNetworks gives each replica on the stack network a network
// namespace and address of its own, and its names in the stack's DNS
// (internal/engine over internal/stacknet). A service actor attaches its
// replica before every instance start, in the goroutine that starts it,
// and detaches it once its instance is gone; the instance, the service
// process, healthchecks and exec all run in the namespace Attach
// returns. Both are safe for concurrent use; Attach is idempotent for a
// replica already attached, and Detach of one not attached does nothing.
type ReplicaNetworks interface {
	// Attach blocks while the namespace is made (a fraction of a second).
	Attach(svc *compose.Service, replica int) (singularity.Network, error)
	Detach(svc *compose.Service, replica int)
}

// attachNet is the network a replica's instance starts in: its own when
// nets gives it one, else net as the stack configured it (the host's,
// none, or across a Slurm allocation the node's).
func attachNet(nets ReplicaNetworks, svc *compose.Service, replica int, net singularity.Network) (singularity.Network, error) {
	if nets == nil || net.Holder == 0 {
		return net, nil
	}
	own, err := nets.Attach(svc, replica)
	if err != nil {
		return net, fmt.Errorf("its network namespace on the stack network: %w", err)
	}
	return own, nil
}

// detachNet undoes attachNet once the replica's instance is gone.
func detachNet(nets ReplicaNetworks, svc *compose.Service, replica int, net singularity.Network) {
	if nets != nil && net.Holder != 0 {
		nets.Detach(svc, replica)
	}
}

package compose

import (
	"fmt"
	"strings"
)

// ipc translates compose ipc. Apptainer gives an instance either its own
// IPC namespace (--containall's --ipc) or the host's, and cannot join
// another instance's: services that share one (ipc: service:NAME and the
// shareable NAME) therefore share the host's, which is a wider sharing
// than asked, with a warning; ipc: host is exact.
func (t *translator) ipc(services map[string]*Service) {
	joined := map[string]bool{}
	for _, name := range sortedKeys(services) {
		mode := t.p.Services[name].Ipc
		switch {
		case mode == "" || mode == "private" || mode == "shareable":
		case mode == "host":
			services[name].HostIPC = true
		case strings.HasPrefix(mode, "service:"):
			other := strings.TrimPrefix(mode, "service:")
			s, ok := services[other]
			if !ok {
				continue // compose-go made it a dependency: reported there
			}
			services[name].HostIPC, s.HostIPC = true, true
			joined[other] = true
			t.warn(name, "ipc", "%s: Apptainer cannot put one instance in another's IPC namespace: both stay in the host's (shared with the host, not only with each other)", mode)
		default:
			t.warn(name, "ipc", "%q is not honoured: sstack knows no containers; the instance has its own IPC namespace", mode)
		}
	}
	for _, name := range sortedKeys(joined) {
		if t.p.Services[name].Ipc != "host" {
			t.warn(name, "ipc", "%s", fmt.Sprintf("shared through the host's IPC namespace (another service joins it with ipc: service:%s)", name))
		}
	}
}

package compose

import (
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// securityOpt warns about each security_opt entry with what actually holds
// under Apptainer: sstack passes no security option to it, and Apptainer's
// defaults (measured with Apptainer 1.4) are not Docker's.
func (t *translator) securityOpt(sc types.ServiceConfig) {
	for _, opt := range sc.SecurityOpt {
		t.warn(sc.Name, "security_opt", "%s: %s", opt, securityOptReason(opt))
	}
}

func securityOptReason(opt string) string {
	key, value, _ := strings.Cut(opt, ":")
	if k, v, ok := strings.Cut(opt, "="); ok && (!strings.Contains(opt, ":") || len(k) < len(key)) {
		key, value = k, v
	}
	switch strings.ToLower(key) {
	case "no-new-privileges":
		return "not set by sstack; Apptainer sets no_new_privs itself for an unprivileged user, and gives a root user the capabilities apptainer.conf's `root default capabilities` allows"
	case "seccomp":
		if value == "unconfined" {
			return "nothing to do: Apptainer applies no seccomp filter unless apptainer.conf or its --security option sets one, so the service runs unconfined already"
		}
		return "the profile is not applied: sstack passes no seccomp profile to Apptainer, which applies none by default"
	case "apparmor":
		return "the AppArmor profile is not applied: sstack passes no security option to Apptainer"
	case "label":
		return "SELinux labels are not applied: sstack passes no security option to Apptainer"
	case "systempaths":
		return "not needed: Apptainer does not mask or make read-only /proc and /sys paths as Docker does"
	}
	return "not applied: sstack passes no security option to Apptainer"
}

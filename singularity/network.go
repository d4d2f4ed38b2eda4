package singularity

import (
	"fmt"
	"os/exec"
	"strconv"
)

// Network is the network namespace an instance and every process run in
// it live in. The zero value is the host's network.
type Network struct {
	// None gives the instance a namespace of its own with loopback only
	// (`--net --network none`, which Apptainer allows every user).
	None bool `json:"none,omitempty"`
	// Holder is the pid of the process that holds a stack's namespace
	// (internal/stacknet); 0 with None false is the host's network.
	Holder int `json:"holder,omitempty"`
	// UserNS: the holder has a user namespace of its own (an unprivileged
	// user), which must be entered with the network namespace.
	UserNS bool `json:"userns,omitempty"`
}

// Host reports whether n is the host's network.
func (n Network) Host() bool { return !n.None && n.Holder == 0 }

// String is how config and error messages name the network.
func (n Network) String() string {
	switch {
	case n.None:
		return "none"
	case n.Holder > 0:
		return "project (namespace of pid " + strconv.Itoa(n.Holder) + ")"
	}
	return "host"
}

// enter is the command that runs argv in the holder's namespaces:
// `nsenter --target PID --net [--user --preserve-credentials]`. Apptainer
// cannot join a namespace it did not make for an unprivileged user
// (--netns-path needs an apptainer.conf entry, and `exec instance://`
// from outside fails with "Failed to enter in network namespace"), so its
// client is started inside it; it then nests its own user namespace there
// (measured, ../shared/apptainer-facts.md "Networks"). nsenter execs the
// client without forking, so the client's pid stays the one sstack knows.
func (n Network) enter(argv []string) ([]string, error) {
	if n.Holder == 0 {
		return argv, nil
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("the project network needs nsenter (util-linux) on PATH: %w", err)
	}
	pre := []string{nsenter, "--target", strconv.Itoa(n.Holder), "--net"}
	if n.UserNS {
		pre = append(pre, "--user", "--preserve-credentials")
	}
	return append(pre, argv...), nil
}

// netArgs are instance start's flags for n.
func (n Network) netArgs() []string {
	if n.None {
		return []string{"--net", "--network", "none"}
	}
	return nil
}

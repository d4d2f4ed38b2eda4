package singularity

import (
	"fmt"
	"math"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// Rlimit is a resource limit of a service process (compose ulimits): Soft
// and Hard, -1 for unlimited.
type Rlimit struct {
	Name       string
	Soft, Hard int64
}

// rlimitResources are the resources compose ulimits name, as prlimit(1)
// (util-linux) and setrlimit(2) know them.
var rlimitResources = map[string]int{
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU,
	"data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE, "locks": 10, // RLIMIT_LOCKS
	"memlock": unix.RLIMIT_MEMLOCK, "msgqueue": 12, // RLIMIT_MSGQUEUE
	"nice": 13, "nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC,
	"rss": unix.RLIMIT_RSS, "rtprio": 14, "rttime": 15, "sigpending": 11,
	"stack": unix.RLIMIT_STACK,
}

// ValidateRlimit refuses a resource Linux does not have and a soft limit
// above the hard one.
func ValidateRlimit(l Rlimit) error {
	if _, ok := rlimitResources[l.Name]; !ok {
		return fmt.Errorf("%s: not a resource limit; use as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending or stack", l.Name)
	}
	if l.Soft < -1 || l.Hard < -1 {
		return fmt.Errorf("%s: give a number of 0 or more, or -1 for unlimited", l.Name)
	}
	if l.Hard != -1 && (l.Soft == -1 || l.Soft > l.Hard) {
		return fmt.Errorf("%s: soft limit %d is above the hard limit %d", l.Name, l.Soft, l.Hard)
	}
	return nil
}

// HardLimit is this process's hard limit of resource name (-1:
// unlimited): a process can lower it for its children but, without
// CAP_SYS_RESOURCE, not raise it.
func HardLimit(name string) (int64, error) {
	res, ok := rlimitResources[name]
	if !ok {
		return 0, fmt.Errorf("%s: not a resource limit", name)
	}
	var r unix.Rlimit
	if err := unix.Getrlimit(res, &r); err != nil {
		return 0, err
	}
	if r.Max == unix.RLIM_INFINITY || r.Max > math.MaxInt64 {
		return -1, nil
	}
	return int64(r.Max), nil
}

// withRlimits runs argv under prlimit(1), which sets the limits on itself
// and execs argv: the apptainer client, its starter and the process it
// runs in the instance inherit them (measured), with the same pid.
func withRlimits(limits []Rlimit, argv []string) ([]string, error) {
	if len(limits) == 0 {
		return argv, nil
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		return nil, fmt.Errorf("ulimits need prlimit (util-linux) on PATH: %w", err)
	}
	pre := []string{prlimit}
	value := func(v int64) string {
		if v < 0 {
			return "unlimited"
		}
		return strconv.FormatInt(v, 10)
	}
	for _, l := range limits {
		if err := ValidateRlimit(l); err != nil {
			return nil, err
		}
		pre = append(pre, "--"+l.Name+"="+value(l.Soft)+":"+value(l.Hard))
	}
	return append(append(pre, "--"), argv...), nil
}

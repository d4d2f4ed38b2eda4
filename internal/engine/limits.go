package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/singularity"
)

// checkLimits runs before anything starts: a service with cgroup limits
// the host cannot apply is refused, naming its keys and what to do, since
// starting it without them would pretend the limits hold (and Apptainer
// would refuse the instance anyway). With noLimits every service's limits
// are dropped, each with a warning, and nothing is checked.
func checkLimits(ctx context.Context, plan *compose.Plan, rt *singularity.Apptainer, noLimits bool, warn warnFunc) error {
	var limited []*compose.Service
	for i := range plan.Services {
		if plan.Services[i].Resources != nil {
			limited = append(limited, &plan.Services[i])
		}
	}
	if len(limited) == 0 {
		return nil
	}
	if noLimits {
		for _, s := range limited {
			warn(api.Warning(s.Name, "%s: not applied (--no-limits): the service runs without cgroup limits", strings.Join(s.Resources.Keys, ", ")))
			s.Resources = nil
		}
		return nil
	}
	err := rt.CheckLimits(ctx)
	if err == nil {
		dropBlkioWeight(limited, rt.CheckBlkioWeight(ctx), warn)
		return nil
	}
	var errs []error
	for _, s := range limited {
		errs = append(errs, fmt.Errorf("service %q: %s: cgroup limits cannot be applied here: %v; or start without limits: sstack up --no-limits", s.Name, strings.Join(s.Resources.Keys, ", "), err))
	}
	return errors.Join(errs...)
}

// clampUlimits lowers, for a user who may not raise hard limits (not
// root), a ulimit above this process's own hard limit to it, with a
// warning: setting it would fail the service's start.
func clampUlimits(plan *compose.Plan, selected []string, warn warnFunc) {
	if os.Geteuid() == 0 {
		return
	}
	for i := range plan.Services {
		s := &plan.Services[i]
		if !slices.Contains(selected, s.Name) {
			continue
		}
		for j := range s.Ulimits {
			u := &s.Ulimits[j]
			max, err := singularity.HardLimit(u.Name)
			if err != nil || max < 0 || u.Hard >= 0 && u.Hard <= max {
				continue
			}
			warn(api.Warning(s.Name, "ulimits.%s: hard limit %s is above this user's own (%d), which only root may raise: set to %d", u.Name, limitText(u.Hard), max, max))
			u.Hard = max
			if u.Soft < 0 || u.Soft > max {
				u.Soft = max
			}
		}
	}
}

func limitText(v int64) string {
	if v < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(v, 10)
}

// dropBlkioWeight removes blkio_config.weight from the services that set
// it when the host cannot apply it (missing says why), with a warning
// each, as Docker discards a weight its kernel does not support: the
// instance would otherwise fail at its start.
func dropBlkioWeight(limited []*compose.Service, missing error, warn warnFunc) {
	if missing == nil {
		return
	}
	for _, s := range limited {
		r := s.Resources
		if r.BlkioWeight == 0 {
			continue
		}
		warn(api.Warning(s.Name, "blkio_config.weight: not applied: %v; the service runs without it, as Docker discards it on such a host", missing))
		r.BlkioWeight = 0
		r.Keys = slices.DeleteFunc(r.Keys, func(k string) bool { return k == "blkio_config.weight" })
		if len(r.Keys) == 0 {
			s.Resources = nil
		}
	}
}

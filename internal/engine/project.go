package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"sstack/compose"
	"sstack/internal/statedir"
	"sstack/singularity"
)

// What up checks and keeps of a project outside the stack: clashes with
// instances that run, the images' runscripts, the lock of its state
// directory, and the rows it leaves for ps -a.

// Listing answers `instance list` for a project's instances; up may ask
// for it ahead, beside the load of the compose file (Options.Listed).
type Listing func() ([]singularity.InstanceInfo, error)

// checkClash refuses to start a project whose instances already run: a
// second sstack, or leftovers of one that was killed. ahead, when not
// nil, is a listing asked before up took the project's lock: one that
// shows a clash is asked again, since a teardown may have ended in
// between (the lock is released only once its instances are gone).
func checkClash(ctx context.Context, rt *singularity.Apptainer, project, stateDir string, ahead Listing) error {
	if n := len(singularity.StartsInFlight(statedir.Recorded(stateDir))); n > 0 {
		return fmt.Errorf("project %q: %d instance starts of an sstack that was killed are still running; run 'sstack down -n %s' to wait for them and remove their instances", project, n, project)
	}
	now := func() ([]singularity.InstanceInfo, error) { return rt.ListInstances(ctx, project+".*") }
	list := now
	if ahead != nil {
		list = ahead
	}
	names, err := instancesOf(project, list)
	if err == nil && len(names) > 0 && ahead != nil {
		names, err = instancesOf(project, now)
	}
	if err != nil || len(names) == 0 {
		return err
	}
	return fmt.Errorf("project %q is already running: instances %s exist (another sstack, or left over from one that was killed); run 'sstack down -n %s' to remove them, or choose another name with -n",
		project, strings.Join(names, ", "), project)
}

// instancesOf is the sorted names of project's instances that list gives.
func instancesOf(project string, list Listing) ([]string, error) {
	infos, err := list()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, i := range infos {
		if strings.HasPrefix(i.Name, project+".") {
			names = append(names, i.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// inspectImages reads, in parallel, which images have a runscript, and
// refuses services that then have nothing to run.
func inspectImages(ctx context.Context, rt *singularity.Apptainer, plan *compose.Plan) (map[string]bool, error) {
	type result struct {
		has bool
		err error
	}
	images := map[string]*result{}
	var unique []string
	for _, s := range plan.Services {
		if _, err := os.Stat(s.Image); err != nil {
			continue // of a service not started now (CheckImages passed)
		}
		if _, ok := images[s.Image]; !ok {
			images[s.Image] = nil
			unique = append(unique, s.Image)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, img := range unique {
		wg.Add(1)
		go func(img string) {
			defer wg.Done()
			has, err := rt.HasRunscript(ctx, img)
			mu.Lock()
			images[img] = &result{has, err}
			mu.Unlock()
		}(img)
	}
	wg.Wait()
	out := map[string]bool{}
	var errs []error
	for _, s := range plan.Services {
		r := images[s.Image]
		if r == nil {
			continue // not there yet: a service not started now
		}
		if r.err != nil {
			errs = append(errs, fmt.Errorf("service %q: image %s: %w", s.Name, s.Image, r.err))
			continue
		}
		out[s.Name] = r.has
		if !r.has && s.Entrypoint == nil && len(s.Command) == 0 {
			errs = append(errs, fmt.Errorf("service %q: image %s has no runscript and the service sets no command or entrypoint: nothing to run; set command or entrypoint in the compose file", s.Name, s.Image))
		}
	}
	return out, errors.Join(errs...)
}

// Attached are the services whose output up shows, as docker compose
// decides: those of --attach if given, else the services named (with
// their dependencies only with attachDeps), else all; less --no-attach.
// nil means all.
func Attached(plan *compose.Plan, services, attach, noAttach []string, attachDeps bool) map[string]bool {
	var from []string
	switch {
	case len(attach) > 0:
		from = attach
	case len(services) > 0 && attachDeps:
		from = plan.WithDependencies(services)
	case len(services) > 0:
		from = services
	case len(noAttach) == 0:
		return nil
	default:
		from = plan.ServiceNames()
	}
	out := map[string]bool{}
	for _, s := range from {
		out[s] = !slices.Contains(noAttach, s)
	}
	return out
}

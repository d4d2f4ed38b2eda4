package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/statedir"
	"sstack/singularity"
)

// What up checks and keeps of a project outside the stack: clashes with
// instances that run, the images' runscripts, the lock of its state
// directory, and the rows it leaves for ps -a.

// checkClash refuses to start a project whose instances already run: a
// second sstack, or leftovers of one that was killed.
func checkClash(ctx context.Context, rt *singularity.Apptainer, project, stateDir string) error {
	if n := len(singularity.StartsInFlight(statedir.Recorded(stateDir))); n > 0 {
		return fmt.Errorf("project %q: %d instance starts of an sstack that was killed are still running; run 'sstack down -n %s' to wait for them and remove their instances", project, n, project)
	}
	infos, err := rt.ListInstances(ctx, project+".*")
	if err != nil {
		return err
	}
	var names []string
	for _, i := range infos {
		if strings.HasPrefix(i.Name, project+".") {
			names = append(names, i.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return fmt.Errorf("project %q is already running: instances %s exist (another sstack, or left over from one that was killed); run 'sstack down -n %s' to remove them, or choose another name with -n",
		project, strings.Join(names, ", "), project)
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

// lockProject takes an exclusive lock in the project's state directory so
// two sstacks cannot start the same project at once.
func lockProject(stateDir string) (func(), error) {
	if err := statedir.Private(filepath.Dir(stateDir)); err != nil {
		return nil, err
	}
	if err := statedir.Private(stateDir); err != nil {
		return nil, err
	}
	path := statedir.Lock(stateDir)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, statedir.Problem(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("project state %s is locked by another sstack (%v); stop that one first ('sstack down -n %s'), or choose another name with -n", stateDir, err, filepath.Base(stateDir))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { _ = f.Truncate(0); f.Close() }, nil
}

// Locked reports whether an sstack holds the project's lock (is running it).
func Locked(stateDir string) bool {
	f, err := os.Open(statedir.Lock(stateDir))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
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

// recordLastRows keeps the replicas as the stack ended, so that ps -a
// still lists them with their last state and exit code until down, as
// docker lists exited containers ("exited (143)" for one the teardown
// stopped).
func recordLastRows(stateDir string, rows []api.Replica) {
	for i := range rows {
		rows[i].Pid = 0
		// Its instance is gone, as every one at the end: what docker
		// shows of a container is how its process exited.
		if rows[i].State == api.StateStopped && rows[i].Ran {
			rows[i].State = api.StateExited
		}
	}
	if b, err := json.Marshal(rows); err == nil {
		_ = os.WriteFile(statedir.LastPs(stateDir), b, 0o600)
	}
}

// LastRows are the replicas of a project as its stack ended (none when
// it never ran, or was taken down).
func LastRows(stateDir string) []api.Replica {
	b, err := os.ReadFile(statedir.LastPs(stateDir))
	if err != nil {
		return nil
	}
	var rows []api.Replica
	if json.Unmarshal(b, &rows) != nil {
		return nil
	}
	return rows
}

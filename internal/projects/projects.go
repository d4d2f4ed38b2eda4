// Package projects knows a project from outside its supervisor: whether an
// sstack holds it (the lock in its state directory), what it left (the
// instances of a killed sstack, the replicas as its stack ended), taking
// down what is left (down without a supervisor), and the list of
// projects (ls). Open gives the CLI a project's api.Stack: the control
// client when a supervisor answers, else Remains, the api.Stack of what
// the stack left. The engine takes the lock and records the last rows.
package projects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/control"
	"sstack/internal/stacknet"
	"sstack/internal/statedir"
	"sstack/singularity"
)

// Remove stops every instance of project still there (left by an sstack
// that was killed), each within grace, and removes its state; named
// volumes stay unless volumes. progress gets docker compose's
// "Stopping"/"Stopped" lines.
func Remove(ctx context.Context, rt *singularity.Apptainer, project, stateDir string, volumes bool, grace time.Duration, progress io.Writer) error {
	// An sstack killed during start-up may have left `instance start`
	// clients running: their instances appear later. Wait for them first.
	waitStarts(ctx, statedir.Recorded(stateDir), progress)
	if err := stopLeftovers(ctx, rt, project, nil, grace, progress); err != nil {
		return err
	}
	// The instances are gone: end their network's holder and forwarder.
	if stacknet.Cleanup(stateDir) {
		fmt.Fprintf(progress, "Network %s  Removed\n", project)
	}
	entries, err := os.ReadDir(stateDir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		if statedir.IsVolumes(e.Name()) && !volumes {
			continue
		}
		if err := os.RemoveAll(filepath.Join(stateDir, e.Name())); err != nil {
			return err
		}
	}
	_ = os.Remove(stateDir) // only when empty: named volumes stay
	return nil
}

// RemoveServices stops the instances of project's services left without
// a supervisor (down SERVICE...); the state stays.
func RemoveServices(ctx context.Context, rt *singularity.Apptainer, project string, services []string, grace time.Duration, progress io.Writer) error {
	return stopLeftovers(ctx, rt, project, services, grace, progress)
}

// stopLeftovers stops the instances of project (of services only, when
// given) in parallel, each within grace.
func stopLeftovers(ctx context.Context, rt *singularity.Apptainer, project string, services []string, grace time.Duration, progress io.Writer) error {
	infos, err := rt.ListInstances(ctx, project+".*")
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(infos))
	slots := make(chan struct{}, singularity.DefaultParallel())
	for i, info := range infos {
		p, svc, _, ok := compose.ParseInstanceName(info.Name)
		if !ok || p != project || len(services) > 0 && !slices.Contains(services, svc) {
			continue
		}
		wg.Add(1)
		go func(i int, name string) {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			fmt.Fprintln(progress, api.Event{Kind: api.EventStopping, Instance: name}.Line())
			err := rt.StopInstance(ctx, name, "SIGTERM", grace)
			switch {
			case err == nil:
				fmt.Fprintln(progress, api.Event{Kind: api.EventDestroyed, Instance: name}.Line())
			case !errors.Is(err, singularity.ErrNoInstance): // gone meanwhile: fine
				errs[i] = err
			}
		}(i, info.Name)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitStarts waits until no `instance start` of names runs any more.
func waitStarts(ctx context.Context, names []string, progress io.Writer) {
	if len(names) == 0 {
		return
	}
	for said := false; len(singularity.StartsInFlight(names)) > 0; said = true {
		if !said {
			fmt.Fprintf(progress, "Waiting for instance starts of a killed sstack to finish\n")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Unsupervised lists a project's instances as ps rows, for a project no
// supervisor runs.
func Unsupervised(ctx context.Context, rt *singularity.Apptainer, project string) ([]api.Replica, error) {
	infos, err := rt.ListInstances(ctx, project+".*")
	if err != nil {
		return nil, err
	}
	var rows []api.Replica
	for _, i := range infos {
		p, svc, n, ok := compose.ParseInstanceName(i.Name)
		if !ok || p != project {
			continue
		}
		rows = append(rows, api.Replica{
			Project: project, Service: svc, Replica: n, Instance: i.Name,
			Name: svc + "-" + i.Name[strings.LastIndexByte(i.Name, '.')+1:], State: api.StateRunning, Supervised: false,
		})
	}
	return rows, nil
}

// List lists the user's projects under stateBase: those whose
// supervisor answers, those with instances but no supervisor, and with
// all those that only have a state directory.
func List(ctx context.Context, rt *singularity.Apptainer, stateBase string, all bool) ([]api.ProjectInfo, error) {
	byName := map[string]*api.ProjectInfo{}
	entries, _ := os.ReadDir(stateBase)
	for _, e := range entries {
		if !e.IsDir() || !statedir.IsProject(e.Name()) {
			continue
		}
		dir := filepath.Join(stateBase, e.Name())
		if c, err := control.Dial(dir); err == nil {
			info, err := c.Info(ctx)
			c.Close()
			if err == nil {
				byName[info.Name] = &info
				continue
			}
		}
		if all {
			byName[e.Name()] = &api.ProjectInfo{Name: e.Name(), Status: "stopped", StateDir: dir}
		}
	}
	if rt != nil {
		infos, err := rt.ListInstances(ctx, "*")
		if err != nil {
			return nil, err
		}
		counts := map[string]int{}
		for _, i := range infos {
			if p, _, _, ok := compose.ParseInstanceName(i.Name); ok {
				counts[p]++
			}
		}
		for name, n := range counts {
			if p, ok := byName[name]; ok && p.Supervised {
				continue
			}
			byName[name] = &api.ProjectInfo{Name: name, Status: fmt.Sprintf("running(%d)", n)}
		}
	}
	out := make([]api.ProjectInfo, 0, len(byName))
	for _, p := range byName {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Lock takes an exclusive lock in the project's state directory so
// two sstacks cannot start the same project at once.
func Lock(stateDir string) (func(), error) {
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

// RecordLastRows keeps the replicas as the stack ended, so that ps -a
// still lists them with their last state and exit code until down, as
// docker lists exited containers ("exited (143)" for one the teardown
// stopped).
func RecordLastRows(stateDir string, rows []api.Replica) {
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

// Status is docker compose ls's status: "running(2), exited(1)".
func Status(rows []api.Replica) string {
	counts := map[string]int{}
	for _, r := range rows {
		st := string(r.State)
		if r.State == api.StateStopping || r.State == api.StateRestarting || r.State == api.StateStarting {
			st = string(api.StateRunning)
		}
		counts[st]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s(%d)", k, counts[k])
	}
	return strings.Join(parts, ", ")
}

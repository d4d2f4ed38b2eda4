// Package logs reads a project's stored logs as `sstack logs` shows them
// (docker compose's --tail, --since, --until, --index, -f, and
// singularity-stack's line filters), from the log store's files, and gives
// them to an api.LogConsumer: every api.Stack implements Logs with it, as
// the files are on this host whether or not a stack runs. Following ends
// once the caller says the stack no longer runs. It prints nothing: the
// CLI's consumer formats the lines.
package logs

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sstack/internal/api"
	"sstack/internal/logformat"
	"sstack/internal/logstore"
	"sstack/internal/statedir"
	"strconv"
	"time"
)

// Options are what to read: the project's logs as the options of Logs
// select them; errors name the flag at fault.
type Options struct {
	Project  string
	StateDir string
	api.LogsOptions
	// Running says whether the stack still runs: Follow ends once it no
	// longer does (after the lines written until then). Nil: it does not.
	Running func() bool
}

// Read gives consumer the stored logs of a project, as `docker compose
// logs` shows them: per replica, Tail lines from the end, merged in time
// order; with Follow it goes on with new lines until the stack has
// stopped, Until has passed or ctx ends (Ctrl-C).
func Read(ctx context.Context, o Options, consumer api.LogConsumer) error {
	project, services, stateDir := o.Project, o.Services, o.StateDir
	dir := statedir.Logs(stateDir)
	filter, err := newLineFilter(o.LogsOptions, time.Now())
	if err != nil {
		return err
	}
	tail := -1
	if o.Tail != "all" && o.Tail != "" {
		if tail, err = strconv.Atoi(o.Tail); err != nil || tail < 0 {
			return fmt.Errorf("--tail %q: use a number of lines or \"all\"", o.Tail)
		}
	}
	display := displayNames(dir)
	// A replica is selected by its service, its SERVICE-N name or its
	// display name (container_name).
	selects := func(s, name string) bool {
		return s == logformat.SourceFromName(name).Service || s == name || s == display(name)
	}
	want := func(name string) bool {
		if !filter.keepReplica(name) {
			return false
		}
		if len(services) == 0 {
			return true
		}
		for _, s := range services {
			if selects(s, name) {
				return true
			}
		}
		return false
	}
	names, err := logstore.Names(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return fmt.Errorf("no logs for project %q in %s: it has not run here, or 'sstack down' removed them", project, dir)
	}
	for _, s := range services {
		found, replica := false, false
		for _, n := range names {
			if selects(s, n) {
				found = true
				replica = replica || filter.keepReplica(n)
			}
		}
		if !found {
			if slices.Contains(o.Known, s) {
				continue
			}
			return fmt.Errorf("no logs for service %q in project %q", s, project)
		}
		if !replica {
			return fmt.Errorf("--index %d: service %q has no logs of replica %d in project %q", filter.index, s, filter.index, project)
		}
	}
	if len(services) == 0 && filter.index > 0 && !slices.ContainsFunc(names, want) {
		return fmt.Errorf("--index %d: no service of project %q has logs of replica %d", filter.index, project, filter.index)
	}
	for _, n := range names {
		if want(n) {
			consumer.Register(display(n))
		}
	}

	var all []logstore.Line
	offsets := map[string]*follower{}
	for _, n := range names {
		if !want(n) {
			continue
		}
		// The current file is read through its follower, so that -f goes
		// on exactly where the history ended (a rotation at this very
		// moment could show some lines twice, never lose one).
		fl, err := openFollower(dir, n)
		if err != nil {
			closeAll(offsets)
			return err
		}
		lines, err := logstore.ReadRotated(dir, n, logstore.DefaultKeep)
		if err != nil {
			fl.f.Close()
			closeAll(offsets)
			return err
		}
		lines = append(lines, fl.read()...)
		if o.Follow {
			offsets[n] = fl
		} else {
			fl.f.Close()
		}
		// Filter first: --tail 20 --include ERROR shows the last 20 errors.
		lines = filter.filter(lines)
		if tail >= 0 && len(lines) > tail {
			lines = lines[len(lines)-tail:]
		}
		all = append(all, lines...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	for _, l := range all {
		give(consumer, l, display)
	}
	if !o.Follow {
		return nil
	}
	running := o.Running
	if running == nil {
		running = func() bool { return false }
	}
	return follow(ctx, dir, offsets, want, filter, running, consumer, display)
}

// give hands one stored line to consumer.
func give(consumer api.LogConsumer, l logstore.Line, display func(string) string) {
	src := logformat.SourceFromName(l.Name)
	consumer.Log(api.LogLine{Service: src.Service, Replica: src.Replica, Name: display(l.Name), Stream: l.Stream, Time: l.Time, Text: l.Text})
}

// displayNames returns the display name of a replica's logs in dir
// (container_name, else SERVICE-N), read once per replica.
func displayNames(dir string) func(string) string {
	names := map[string]string{}
	return func(n string) string {
		d, ok := names[n]
		if !ok {
			d = logstore.DisplayName(dir, n)
			names[n] = d
		}
		return d
	}
}

// follower reads a replica's current log file from where the last read
// ended, and notices rotation (a new file at the path).
type follower struct {
	name   string
	path   string
	f      *os.File
	offset int64 // bytes of whole lines consumed
}

// openFollower opens a replica's current log file from its start.
func openFollower(dir, name string) (*follower, error) {
	path := logstore.Path(dir, name)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &follower{name: name, path: path, f: f}, nil
}

// read returns the whole lines appended since the last read; a partial
// line is left for the next one.
func (fl *follower) read() []logstore.Line {
	var out []logstore.Line
	for {
		if _, err := fl.f.Seek(fl.offset, io.SeekStart); err != nil {
			return out
		}
		lines, used, _ := logstore.ReadFrom(fl.f, fl.name)
		fl.offset += used
		out = append(out, lines...)
		if !fl.rotated() {
			return out
		}
		// Rotated: the old file was read to its end above; go on with the
		// new one from its start.
		nf, err := os.Open(fl.path)
		if err != nil {
			return out
		}
		fl.f.Close()
		fl.f, fl.offset = nf, 0
	}
}

func (fl *follower) rotated() bool {
	a, err1 := fl.f.Stat()
	b, err2 := os.Stat(fl.path)
	return err1 == nil && err2 == nil && !os.SameFile(a, b)
}

// follow gives consumer the lines appended to the replicas' logs until
// the stack has stopped, --until has passed or ctx ends.
func follow(ctx context.Context, dir string, fls map[string]*follower, want func(string) bool, filter lineFilter, running func() bool, consumer api.LogConsumer, display func(string) string) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		// Replicas that started logging since.
		if names, err := logstore.Names(dir); err == nil {
			for _, n := range names {
				if _, ok := fls[n]; !ok && want(n) {
					if fl, err := openFollower(dir, n); err == nil {
						fls[n] = fl
					}
				}
			}
		}
		// Checked before reading, so that what was written until then is
		// given.
		stackRuns := running()
		more := stackRuns && !filter.ended(time.Now())
		var batch []logstore.Line
		for _, fl := range fls {
			batch = append(batch, filter.filter(fl.read())...)
		}
		sort.SliceStable(batch, func(i, j int) bool { return batch[i].Time.Before(batch[j].Time) })
		for _, l := range batch {
			give(consumer, l, display)
		}
		if !more {
			if !stackRuns {
				consumer.Status("", api.LogsStopped)
			}
			closeAll(fls)
			return nil // the stack has stopped (or --until passed) and everything is given
		}
		select {
		case <-ctx.Done():
			closeAll(fls)
			return nil
		case <-tick.C:
		}
	}
}

func closeAll(fls map[string]*follower) {
	for _, fl := range fls {
		fl.f.Close()
	}
}

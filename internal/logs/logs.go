// Package logs shows a project's stored logs as `sstack logs` does
// (docker compose's --tail, --since, --until, --index, -f, and
// singularity-stack's line filters), from the log store's files, with or
// without a running stack: following ends once no sstack holds the
// project. The CLI fills Options from its flags.
package logs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sstack/internal/logformat"
	"sstack/internal/logstore"
	"sstack/internal/projects"
	"sstack/internal/statedir"
	"strconv"
	"time"
)

// Options are what `sstack logs` shows, its flags as given; errors name
// the flag at fault.
type Options struct {
	Project  string
	StateDir string
	// Services, when given, select replicas by service, SERVICE-N name or
	// display name (container_name).
	Services []string
	// Known are the project's services when its compose file is at hand:
	// one of them without logs (it printed nothing) shows nothing, as
	// docker compose's logs, where an unknown name is an error.
	Known []string
	// Tail is the number of lines from the end of each replica's logs
	// ("all" or "": every line).
	Tail   string
	Follow bool
	// Since and Until: docker's forms, a time or a duration ago.
	Since, Until string
	// Index keeps replica N only (from 1; 0: all).
	Index int
	// Stdout, Stderr keep that stream only (both or neither: both).
	Stdout, Stderr bool
	// Include: every one must match; Exclude: none may.
	Include, Exclude []string
	// Format is how lines are printed (Width and Project are set here).
	Format logformat.Format
}

// Show prints the stored logs of a project to w, as `docker compose logs`
// does: per replica, --tail lines from the end, merged in time order; with
// Follow it goes on printing new lines until the stack has stopped, Until
// has passed or ctx ends (Ctrl-C).
func Show(ctx context.Context, o Options, w io.Writer) error {
	project, services, stateDir := o.Project, o.Services, o.StateDir
	dir := statedir.Logs(stateDir)
	filter, err := newLineFilter(o, time.Now())
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
	width := 0
	for _, n := range names {
		if want(n) && len(display(n)) > width {
			width = len(display(n))
		}
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
	format := o.Format
	format.Width, format.Project = width, project
	printer := logformat.NewPrinter(format)
	out := bufio.NewWriterSize(w, 64<<10)
	defer out.Flush()

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
			return err
		}
		lines, err := logstore.ReadRotated(dir, n, logstore.DefaultKeep)
		if err != nil {
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
		printLine(printer, out, l, display)
	}
	if !o.Follow {
		return nil
	}
	return follow(ctx, dir, stateDir, offsets, want, filter, printer, out, display)
}

func printLine(p *logformat.Printer, out *bufio.Writer, l logstore.Line, display func(string) string) {
	src := logformat.SourceFromName(l.Name)
	src.Name = display(l.Name)
	p.WriteLines(out, src, l.Stream, l.Time, [][]byte{l.Text})
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

// follow prints the lines appended to the replicas' logs until the stack
// has stopped, --until has passed or ctx ends.
func follow(ctx context.Context, dir, stateDir string, fls map[string]*follower, want func(string) bool, filter lineFilter, p *logformat.Printer, out *bufio.Writer, display func(string) string) error {
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
		// printed.
		running := projects.Locked(stateDir) && !filter.ended(time.Now())
		var batch []logstore.Line
		for _, fl := range fls {
			batch = append(batch, filter.filter(fl.read())...)
		}
		sort.SliceStable(batch, func(i, j int) bool { return batch[i].Time.Before(batch[j].Time) })
		for _, l := range batch {
			printLine(p, out, l, display)
		}
		_ = out.Flush()
		if !running {
			return nil // the stack has stopped (or --until passed) and everything is printed
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

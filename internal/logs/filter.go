package logs

// Which stored lines `sstack logs` prints: docker compose's --since,
// --until and --index, and singularity-stack's line filters (-i/--include,
// -x/--exclude, --stdout, --stderr).

import (
	"fmt"
	"regexp"
	"sstack/internal/api"
	"sstack/internal/logformat"
	"sstack/internal/logstore"
	"strconv"
	"time"
)

// lineFilter decides which lines of the selected replicas are shown. The
// zero value keeps every line.
type lineFilter struct {
	since, until time.Time // zero: unbounded; both ends included
	// index keeps replica index only (from 1); 0 keeps every replica.
	index int
	// stdout, stderr: keep only that stream; both or neither keep both.
	stdout, stderr bool
	// include: every one must match; exclude: none may match. Unanchored,
	// as grep: write ^ to match at the start of the line.
	include, exclude []*regexp.Regexp
}

// newLineFilter checks and compiles the logs options; errors name the
// flag at fault.
func newLineFilter(o api.LogsOptions, now time.Time) (lineFilter, error) {
	var f lineFilter
	var err error
	if f.since, err = parseTime("--since", o.Since, now); err != nil {
		return f, err
	}
	if f.until, err = parseTime("--until", o.Until, now); err != nil {
		return f, err
	}
	if !f.since.IsZero() && !f.until.IsZero() && f.until.Before(f.since) {
		return f, fmt.Errorf("--until %s is before --since %s: nothing to show", o.Until, o.Since)
	}
	if o.Index < 0 {
		return f, fmt.Errorf("--index %d: give a replica number from 1", o.Index)
	}
	f.index = o.Index
	f.stdout, f.stderr = o.Stdout, o.Stderr
	if f.include, err = compileAll("--include", o.Include); err != nil {
		return f, err
	}
	if f.exclude, err = compileAll("--exclude", o.Exclude); err != nil {
		return f, err
	}
	return f, nil
}

func compileAll(flag string, exprs []string) ([]*regexp.Regexp, error) {
	var out []*regexp.Regexp
	for _, e := range exprs {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, fmt.Errorf("%s %q: not a regular expression: %w", flag, e, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// keepReplica reports whether the replica whose display name is name
// (e.g. "web-2") passes --index.
func (f lineFilter) keepReplica(name string) bool {
	return f.index == 0 || logformat.SourceFromName(name).Replica == f.index
}

// keep reports whether line l is shown.
func (f lineFilter) keep(l logstore.Line) bool {
	if !f.keepReplica(l.Name) {
		return false
	}
	if !f.since.IsZero() && l.Time.Before(f.since) || !f.until.IsZero() && l.Time.After(f.until) {
		return false
	}
	if f.stdout != f.stderr && (f.stdout && l.Stream != "stdout" || f.stderr && l.Stream != "stderr") {
		return false
	}
	for _, re := range f.include {
		if !re.Match(l.Text) {
			return false
		}
	}
	for _, re := range f.exclude {
		if re.Match(l.Text) {
			return false
		}
	}
	return true
}

// filter keeps the lines f keeps, in place.
func (f lineFilter) filter(lines []logstore.Line) []logstore.Line {
	out := lines[:0]
	for _, l := range lines {
		if f.keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// ended reports whether --until has passed: -f stops following then.
func (f lineFilter) ended(now time.Time) bool {
	return !f.until.IsZero() && now.After(f.until)
}

// parseTime accepts docker's forms for --since and --until: an RFC 3339
// time, a date, a Unix time in seconds or a duration ago.
func parseTime(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: use a time like 2026-01-02T13:23:37Z or a duration like 42m", flag, s)
}

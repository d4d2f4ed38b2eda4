package logs

import (
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
	"sstack/internal/logstore"
)

func TestLineFilterKeep(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 13, 0, 0, 0, time.UTC)
	line := func(name, stream string, at time.Duration, text string) logstore.Line {
		return logstore.Line{Time: t0.Add(at), Name: name, Stream: stream, Text: []byte(text)}
	}
	out := line("web-1", "stdout", 0, "GET /index 200")
	errl := line("web-2", "stderr", time.Minute, "ERROR db down")
	late := line("web-1", "stdout", time.Hour, "GET /late 500")
	all := []logstore.Line{out, errl, late}

	for _, c := range []struct {
		name string
		o    api.LogsOptions
		want []logstore.Line
	}{
		{"no filter", api.LogsOptions{}, all},
		{"--since", api.LogsOptions{Since: t0.Add(time.Minute).Format(time.RFC3339)}, []logstore.Line{errl, late}},
		{"--until", api.LogsOptions{Until: t0.Add(time.Minute).Format(time.RFC3339)}, []logstore.Line{out, errl}},
		{"--since and --until", api.LogsOptions{Since: "2026-01-02T13:00:30Z", Until: "2026-01-02T13:30:00Z"}, []logstore.Line{errl}},
		{"--index 1", api.LogsOptions{Index: 1}, []logstore.Line{out, late}},
		{"--index 2", api.LogsOptions{Index: 2}, []logstore.Line{errl}},
		{"--index 3", api.LogsOptions{Index: 3}, nil},
		{"--stdout", api.LogsOptions{Stdout: true}, []logstore.Line{out, late}},
		{"--stderr", api.LogsOptions{Stderr: true}, []logstore.Line{errl}},
		{"--stdout --stderr", api.LogsOptions{Stdout: true, Stderr: true}, all},
		{"--include", api.LogsOptions{Include: []string{"GET"}}, []logstore.Line{out, late}},
		{"--include is unanchored", api.LogsOptions{Include: []string{"down"}}, []logstore.Line{errl}},
		{"--include twice: both must match", api.LogsOptions{Include: []string{"GET", "500$"}}, []logstore.Line{late}},
		{"--include anchored", api.LogsOptions{Include: []string{"^ERROR"}}, []logstore.Line{errl}},
		{"--exclude", api.LogsOptions{Exclude: []string{"ERROR"}}, []logstore.Line{out, late}},
		{"--exclude twice: either excludes", api.LogsOptions{Exclude: []string{"index", "late"}}, []logstore.Line{errl}},
		{"--include and --exclude", api.LogsOptions{Include: []string{"GET"}, Exclude: []string{"500"}}, []logstore.Line{out}},
		{"everything", api.LogsOptions{Index: 1, Stdout: true, Include: []string{"GET"}, Exclude: []string{"index"}, Until: "2026-01-02T15:00:00Z"}, []logstore.Line{late}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := newLineFilter(c.o, t0)
			if err != nil {
				t.Fatal(err)
			}
			var got []logstore.Line
			for _, l := range all {
				if f.keep(l) {
					got = append(got, l)
				}
			}
			if texts(got) != texts(c.want) {
				t.Errorf("kept %s, want %s", texts(got), texts(c.want))
			}
			if filtered := f.filter(append([]logstore.Line(nil), all...)); texts(filtered) != texts(c.want) {
				t.Errorf("filter kept %s, want %s", texts(filtered), texts(c.want))
			}
		})
	}
}

func texts(lines []logstore.Line) string {
	var s []string
	for _, l := range lines {
		s = append(s, string(l.Text))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

func TestLineFilterErrors(t *testing.T) {
	now := time.Date(2026, 1, 2, 13, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		o    api.LogsOptions
		want string
	}{
		{api.LogsOptions{Include: []string{"("}}, `--include "(": not a regular expression`},
		{api.LogsOptions{Include: []string{"ok"}, Exclude: []string{"a[b"}}, `--exclude "a[b": not a regular expression`},
		{api.LogsOptions{Since: "yesterday"}, `--since "yesterday": use a time like`},
		{api.LogsOptions{Until: "soon"}, `--until "soon": use a time like`},
		{api.LogsOptions{Since: "1m", Until: "1h"}, `--until 1h is before --since 1m`},
		{api.LogsOptions{Index: -1}, `--index -1: give a replica number from 1`},
	} {
		_, err := newLineFilter(c.o, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.o, err, c.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 1, 2, 13, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"42m", now.Add(-42 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"2026-01-02T12:00:00Z", time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)},
		{"2026-01-02T12:00:00.5+01:00", time.Date(2026, 1, 2, 11, 0, 0, 5e8, time.UTC)},
		{"2026-01-02T12:00:00", time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)},
		{"2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"1767355200", time.Unix(1767355200, 0)},
	} {
		got, err := parseTime("--until", c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestLineFilterEnded(t *testing.T) {
	now := time.Date(2026, 1, 2, 13, 0, 0, 0, time.UTC)
	if (lineFilter{}).ended(now) {
		t.Error("no --until: ended")
	}
	f := lineFilter{until: now}
	if f.ended(now) || !f.ended(now.Add(time.Nanosecond)) {
		t.Error("--until: ended only after it")
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"

	"sstack/internal/api"
)

// psView is what a `ps --format` template sees of a replica: every field
// of the JSON output, plus docker compose's ID (the instance), RunningFor
// and CreatedAt.
type psView struct {
	api.Replica
	Status     string `json:"Status"`
	ID         string `json:"-"`
	RunningFor string `json:"-"`
	CreatedAt  string `json:"-"`
}

func newPsView(r api.Replica, now time.Time) psView {
	v := psView{Replica: r, Status: r.Status(), ID: r.Instance}
	if !r.Since.IsZero() {
		v.RunningFor = ago(now.Sub(r.Since))
		v.CreatedAt = r.Since.Format("2006-01-02 15:04:05 -0700 MST")
	}
	return v
}

// templateFuncs are those of docker's --format templates (docker/cli's
// templates package).
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		r := []rune(s)
		r[0] = unicode.ToUpper(r[0])
		return string(r)
	},
	"pad": func(s string, left, right int) string {
		return strings.Repeat(" ", left) + s + strings.Repeat(" ", right)
	},
	"truncate": func(s string, n int) string {
		if r := []rune(s); len(r) > n {
			return string(r[:n])
		}
		return s
	},
}

// psTemplate parses a --format value that is neither "table" nor "json":
// "table TEMPLATE" prints a header and aligns columns, as docker compose.
func psTemplate(format string) (tmpl *template.Template, table bool, err error) {
	text := format
	if rest, ok := strings.CutPrefix(format, "table "); ok {
		text, table = rest, true
	}
	// docker accepts `\t` written out in a shell's single quotes.
	text = strings.ReplaceAll(text, `\t`, "\t")
	tmpl, err = template.New("format").Funcs(templateFuncs).Option("missingkey=zero").Parse(text)
	if err != nil {
		return nil, false, &usageError{fmt.Errorf("--format: %w", err)}
	}
	return tmpl, table, nil
}

// printPsTemplate prints one line per replica through tmpl; a table gets
// a header whose columns are the fields' names in capitals ("EXIT CODE").
func printPsTemplate(w io.Writer, tmpl *template.Template, table bool, rows []api.Replica, now time.Time) error {
	out := w
	var tw *tabwriter.Writer
	if table {
		tw = newTable(w)
		out = tw
		var header strings.Builder
		if tmpl.Execute(&header, psHeaders()) == nil {
			fmt.Fprintln(out, header.String())
		}
	}
	for _, r := range rows {
		var line strings.Builder
		if err := tmpl.Execute(&line, newPsView(r, now)); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
		fmt.Fprintln(out, line.String())
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// psHeaders maps each field a template can name to its column header.
func psHeaders() map[string]string {
	h := map[string]string{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous {
				add(f.Type)
				continue
			}
			h[f.Name] = headerOf(f.Name)
		}
	}
	add(reflect.TypeOf(psView{}))
	h["RunningFor"] = "CREATED"
	h["ID"] = "INSTANCE"
	return h
}

// headerOf writes a field name as a column header: ExitCode is EXIT CODE.
func headerOf(name string) string {
	var b strings.Builder
	r := []rune(name)
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(c))
	}
	return b.String()
}

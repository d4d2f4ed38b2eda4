package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// formatFlag adds --format to c, allowed[0] its default, and refuses
// before c runs a value that is none of those c prints.
func formatFlag(c *cobra.Command, format *string, help string, allowed ...string) {
	c.Flags().StringVar(format, "format", allowed[0], help)
	c.PreRunE = func(*cobra.Command, []string) error {
		if slices.Contains(allowed, *format) {
			return nil
		}
		return &usageError{fmt.Errorf("--format %q: use %s", *format, strings.Join(allowed, " or "))}
	}
}

// newTable is the writer of every table sstack prints (docker's spacing:
// three blanks between columns), with its header line written.
func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if len(header) > 0 {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	return tw
}

// listing is how a list command (ls, images) prints its rows: the key of
// each with --quiet, the rows as JSON with --format json, else a table.
type listing[R any] struct {
	header []string
	key    func(R) string
	cells  func(R) []string
}

func (l listing[R]) print(w io.Writer, format string, quiet bool, rows []R) error {
	switch {
	case quiet:
		for _, r := range rows {
			fmt.Fprintln(w, l.key(r))
		}
	case format == "json":
		return json.NewEncoder(w).Encode(rows)
	default:
		tw := newTable(w, l.header...)
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(l.cells(r), "\t"))
		}
		_ = tw.Flush()
	}
	return nil
}

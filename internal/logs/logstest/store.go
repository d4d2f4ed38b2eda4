package logstest

import (
	"strings"
	"testing"
	"time"

	"sstack/internal/logstore"
	"sstack/internal/statedir"
)

// T0 is when the first record Store writes was logged; record i was
// logged i seconds later.
var T0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Record is a piece of a replica's output: one or more lines, each ending
// in "\n".
type Record struct{ Name, Stream, Text string }

// Store opens the log store of the project whose state is in stateDir, as
// its supervisor writes it, and writes records into it, flushed.
func Store(t testing.TB, stateDir string, records ...Record) *logstore.Writer {
	t.Helper()
	w, err := logstore.NewWriter(statedir.Logs(stateDir), 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range records {
		w.Write(r.Name, r.Stream, T0.Add(time.Duration(i)*time.Second), []byte(r.Text), strings.Count(r.Text, "\n"))
	}
	w.Flush()
	return w
}

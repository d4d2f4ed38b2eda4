package logstest

import (
	"context"
	"strings"
	"testing"
	"time"

	"sstack/internal/api"
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

// Follow runs logs with opts.Follow while w gets the line "later" for
// name: it must go on following until end is called, and then end, with
// nothing more written. It returns what the follow gave.
func Follow(t testing.TB, logs func(context.Context, api.LogsOptions, api.LogConsumer) error, opts api.LogsOptions, w *logstore.Writer, name string, end func()) *LogLines {
	t.Helper()
	got := &LogLines{}
	done := make(chan error, 1)
	opts.Follow = true
	go func() { done <- logs(context.Background(), opts, got) }()
	time.Sleep(300 * time.Millisecond)
	w.Write(name, "stdout", T0.Add(time.Minute), []byte("later\n"), 1)
	w.Flush()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("logs -f ended before the stack: %v", err)
	default:
	}
	end()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("logs -f went on after the stack ended")
	}
	return got
}

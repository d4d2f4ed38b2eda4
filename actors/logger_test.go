package actors

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sstack/internal/console"
	"sstack/internal/logformat"
	"sstack/internal/testutil"
	"sstack/metrics"
)

// A bug while recording a batch (here a metrics label function that
// panics) is reported, and the batch still reaches stdout and is released:
// its pump, and up's end, must not wait for it forever.
func TestLoggerSurvivesAPanicWhileRecording(t *testing.T) {
	var out, status testutil.Buffer
	c := console.New(&out, &status, "proj")
	m := metrics.NewPlaced("proj", func(string, int) string { panic("label bug") })
	l := &Logger{printer: logformat.NewPrinter(logformat.Format{Prefix: true, Width: 5}), console: c, metrics: m}
	done := make(chan struct{}, inFlight)
	l.writeBatch(linesBatch(1, 2, done))
	l.writeBatch(linesBatch(3, 3, done))
	for range 2 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a batch was not released after the panic")
		}
	}
	c.Close()
	if !strings.Contains(out.String(), "1\n") || !strings.Contains(out.String(), "3\n") {
		t.Errorf("stdout: %q", out.String())
	}
	if s := status.String(); strings.Count(s, "internal error while recording web-1's logs") != 1 || !strings.Contains(s, "label bug") {
		t.Errorf("status: %q", s)
	}
}

// linesBatch is a batch of lines from..to of web-1, released on done.
func linesBatch(from, to int, done chan struct{}) *LogBatch {
	var data []byte
	for i := from; i <= to; i++ {
		data = fmt.Appendf(data, "%d\n", i)
	}
	return &LogBatch{Source: &logformat.Source{Service: "web", Replica: 1, Name: "web-1"}, Stream: Stdout,
		Data: data, Count: to - from + 1, Time: pumpTime, Done: done}
}

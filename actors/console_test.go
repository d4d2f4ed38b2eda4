package actors

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"sstack/metrics"
)

// gateWriter blocks every write until open is closed, as a stdout whose
// reader stopped reading; it records what it was given.
type gateWriter struct {
	open chan struct{}
	rec  *recorder
	tag  string
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.open != nil {
		<-g.open
	}
	g.rec.add(g.tag, p)
	return len(p), nil
}

// recorder keeps the writes to stdout and stderr in the order they happened.
type recorder struct {
	mu     sync.Mutex
	writes []string
	out    bytes.Buffer
	status bytes.Buffer
}

func (r *recorder) add(tag string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, tag+":"+string(p))
	if tag == "out" {
		r.out.Write(p)
	} else {
		r.status.Write(p)
	}
}

func (r *recorder) get() (out, status string, writes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String(), r.status.String(), append([]string(nil), r.writes...)
}

// newTestConsole returns a console whose stdout blocks until the returned
// channel is closed (blocked) or never blocks.
func newTestConsole(blocked bool) (*console, *recorder, chan struct{}) {
	rec := &recorder{}
	var gate chan struct{}
	if blocked {
		gate = make(chan struct{})
	}
	c := newConsole(&gateWriter{open: gate, rec: rec, tag: "out"}, &gateWriter{rec: rec, tag: "err"}, "proj")
	return c, rec, gate
}

// numberedBatch is a batch of lines from..to of web-1, released on done.
func numberedBatch(from, to int, done chan struct{}) *LogBatch {
	var data []byte
	for i := from; i <= to; i++ {
		data = fmt.Appendf(data, "%d\n", i)
	}
	return &LogBatch{Source: &LogSource{Service: "web", Replica: 1, Name: "web-1"}, Stream: Stdout,
		Data: data, Count: to - from + 1, Time: pumpTime, Done: done}
}

var testPrinter = func() *Printer { return NewPrinter(LogFormat{Prefix: true, Width: 5}) }

func released(done chan struct{}, within time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(within):
		return false
	}
}

// While the stack runs, a batch is released only once stdout has taken
// it, so a reader that stops holds the services back; it gets every line.
func TestConsoleHoldsBatchesUntilWritten(t *testing.T) {
	c, rec, gate := newTestConsole(true)
	done := make(chan struct{}, inFlight)
	c.batch(testPrinter(), numberedBatch(1, 3, done), "stdout")
	if released(done, 300*time.Millisecond) {
		t.Fatal("the batch was released before stdout took it")
	}
	close(gate)
	if !released(done, 5*time.Second) {
		t.Fatal("the batch was not released once written")
	}
	closed := make(chan struct{})
	go func() { c.close(); close(closed) }()
	if !released(closed, 5*time.Second) {
		t.Fatal("close did not return")
	}
	out, status, _ := rec.get()
	if out != "web-1 | 1\nweb-1 | 2\nweb-1 | 3\n" {
		t.Errorf("stdout %q", out)
	}
	if status != "" {
		t.Errorf("status %q, want nothing (every line was shown)", status)
	}
}

// Once the teardown is asked for, a stopped stdout holds nothing: the
// batches are released at once, kept within the backlog or dropped and
// counted; close waits while stdout makes no progress only consoleStuck,
// and reports every line not shown.
func TestConsoleStopReleasesAndCountsLinesNotShown(t *testing.T) {
	c, rec, _ := newTestConsole(true)
	p := testPrinter()
	done := make(chan struct{}, 1<<10)
	c.batch(p, numberedBatch(1, 1000, done), "stdout")
	c.batch(p, numberedBatch(1001, 2000, done), "stdout")
	if released(done, 200*time.Millisecond) {
		t.Fatal("a batch was released before the teardown while stdout does not take it")
	}
	c.stop(false)
	for i := 0; i < 2; i++ {
		if !released(done, time.Second) {
			t.Fatal("stop did not release the batches held")
		}
	}
	// Far more than the backlog: the rest is dropped, every batch released.
	n := 2000
	for i := 0; i < 100; i++ {
		c.batch(p, numberedBatch(n+1, n+1000, done), "stdout")
		n += 1000
		if !released(done, time.Second) {
			t.Fatalf("batch %d was not released after stop", i)
		}
	}
	start := time.Now()
	c.close()
	took := time.Since(start)
	if took > consoleStuck+time.Second {
		t.Errorf("close took %v with stdout stopped, want about %v", took, consoleStuck)
	}
	_, status, _ := rec.get()
	want := fmt.Sprintf("%d lines not shown on the console; see sstack logs -n proj\n", n)
	if status != want {
		t.Errorf("status %q, want %q", status, want)
	}
}

// After a kill, close does not wait for stdout at all.
func TestConsoleKillDoesNotWait(t *testing.T) {
	c, rec, _ := newTestConsole(true)
	done := make(chan struct{}, 4)
	c.batch(testPrinter(), numberedBatch(1, 10, done), "stdout")
	c.stop(true)
	start := time.Now()
	c.close()
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("close took %v after a kill", took)
	}
	if _, status, _ := rec.get(); !strings.HasPrefix(status, "10 lines not shown") {
		t.Errorf("status %q", status)
	}
}

// While the stack runs, close waits for a stdout that lags, however long:
// the lines reach it.
func TestConsoleCloseWaitsForLaggingReader(t *testing.T) {
	c, rec, gate := newTestConsole(true)
	done := make(chan struct{}, 4)
	c.batch(testPrinter(), numberedBatch(1, 10, done), "stdout")
	go func() {
		time.Sleep(consoleStuck + time.Second)
		close(gate)
	}()
	start := time.Now()
	c.close()
	if took := time.Since(start); took < consoleStuck+time.Second {
		t.Errorf("close gave up on a stdout that lags after %v", took)
	}
	out, status, _ := rec.get()
	if strings.Count(out, "\n") != 10 || status != "" {
		t.Errorf("stdout %q, status %q", out, status)
	}
}

// A status line waits a little for the service lines before it, so that
// both show in order, but not for a stdout that does not take them.
func TestConsoleStatusLines(t *testing.T) {
	t.Run("in order", func(t *testing.T) {
		c, rec, _ := newTestConsole(false)
		done := make(chan struct{}, 4)
		c.batch(testPrinter(), numberedBatch(1, 2, done), "stdout")
		c.statusLine("web-1 exited with code 0")
		c.close()
		_, _, writes := rec.get()
		if got := strings.Join(writes, ""); got != "out:web-1 | 1\nweb-1 | 2\nerr:web-1 exited with code 0\n" {
			t.Errorf("writes %q", writes)
		}
	})
	t.Run("stdout stopped", func(t *testing.T) {
		c, rec, gate := newTestConsole(true)
		defer close(gate)
		done := make(chan struct{}, 4)
		c.batch(testPrinter(), numberedBatch(1, 2, done), "stdout")
		start := time.Now()
		c.statusLine("Instance p.web.1  Stopped")
		for {
			if _, status, _ := rec.get(); status != "" {
				break
			}
			if time.Since(start) > statusPatience+2*time.Second {
				t.Fatal("the status line waits behind a stdout that is not read")
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Later ones do not wait again once stdout is known to be stalled.
		start = time.Now()
		c.statusLine("second")
		for {
			if _, status, _ := rec.get(); strings.Contains(status, "second") {
				break
			}
			if time.Since(start) > statusPatience/2 {
				t.Fatal("a status line waited for a stalled stdout")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("flush marker", func(t *testing.T) {
		c, rec, _ := newTestConsole(false)
		c.statusLine("one")
		flushed := make(chan string, 1)
		c.afterStatus(func() { _, s, _ := rec.get(); flushed <- s })
		select {
		case s := <-flushed:
			if s != "one\n" {
				t.Errorf("at the flush marker, status %q", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the flush marker was not reached")
		}
		c.close()
	})
}

// A bug while recording a batch (here a metrics label function that
// panics) is reported, and the batch still reaches stdout and is released:
// its pump, and up's end, must not wait for it forever.
func TestLoggerSurvivesAPanicWhileRecording(t *testing.T) {
	c, rec, _ := newTestConsole(false)
	m := metrics.NewPlaced("proj", func(string, int) string { panic("label bug") })
	l := &Logger{printer: testPrinter(), console: c, metrics: m}
	done := make(chan struct{}, inFlight)
	l.writeBatch(numberedBatch(1, 2, done))
	l.writeBatch(numberedBatch(3, 3, done))
	for i := 0; i < 2; i++ {
		if !released(done, 5*time.Second) {
			t.Fatal("a batch was not released after the panic")
		}
	}
	c.close()
	out, status, _ := rec.get()
	if !strings.Contains(out, "1\n") || !strings.Contains(out, "3\n") {
		t.Errorf("stdout: %q", out)
	}
	if strings.Count(status, "internal error while recording web-1's logs") != 1 || !strings.Contains(status, "label bug") {
		t.Errorf("status: %q", status)
	}
}

package console

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sstack/internal/logformat"
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
func newTestConsole(blocked bool) (*Console, *recorder, chan struct{}) {
	rec := &recorder{}
	var gate chan struct{}
	if blocked {
		gate = make(chan struct{})
	}
	c := New(&gateWriter{open: gate, rec: rec, tag: "out"}, &gateWriter{rec: rec, tag: "err"}, "proj")
	return c, rec, gate
}

// numberedBatch is a batch of lines from..to of web-1, released on done.
func numberedBatch(from, to int, done chan struct{}) Batch {
	var data []byte
	for i := from; i <= to; i++ {
		data = fmt.Appendf(data, "%d\n", i)
	}
	return Batch{Source: &logformat.Source{Service: "web", Replica: 1, Name: "web-1"}, Stream: "stdout",
		Data: data, Count: to - from + 1, Time: batchTime, Done: done}
}

// batchTime stamps the test batches.
var batchTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

var testPrinter = func() *logformat.Printer { return logformat.NewPrinter(logformat.Format{Prefix: true, Width: 5}) }

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
	done := make(chan struct{}, 2)
	c.Show(testPrinter(), numberedBatch(1, 3, done))
	if released(done, 300*time.Millisecond) {
		t.Fatal("the batch was released before stdout took it")
	}
	close(gate)
	if !released(done, 5*time.Second) {
		t.Fatal("the batch was not released once written")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
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
	c.Show(p, numberedBatch(1, 1000, done))
	c.Show(p, numberedBatch(1001, 2000, done))
	if released(done, 200*time.Millisecond) {
		t.Fatal("a batch was released before the teardown while stdout does not take it")
	}
	c.Stop(false)
	for i := 0; i < 2; i++ {
		if !released(done, time.Second) {
			t.Fatal("stop did not release the batches held")
		}
	}
	// Far more than the backlog: the rest is dropped, every batch released.
	n := 2000
	for i := 0; i < 100; i++ {
		c.Show(p, numberedBatch(n+1, n+1000, done))
		n += 1000
		if !released(done, time.Second) {
			t.Fatalf("batch %d was not released after stop", i)
		}
	}
	start := time.Now()
	c.Close()
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
	c.Show(testPrinter(), numberedBatch(1, 10, done))
	c.Stop(true)
	start := time.Now()
	c.Close()
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
	c.Show(testPrinter(), numberedBatch(1, 10, done))
	go func() {
		time.Sleep(consoleStuck + time.Second)
		close(gate)
	}()
	start := time.Now()
	c.Close()
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
		c.Show(testPrinter(), numberedBatch(1, 2, done))
		c.StatusLine("web-1 exited with code 0")
		c.Close()
		_, _, writes := rec.get()
		if got := strings.Join(writes, ""); got != "out:web-1 | 1\nweb-1 | 2\nerr:web-1 exited with code 0\n" {
			t.Errorf("writes %q", writes)
		}
	})
	t.Run("stdout stopped", func(t *testing.T) {
		c, rec, gate := newTestConsole(true)
		defer close(gate)
		done := make(chan struct{}, 4)
		c.Show(testPrinter(), numberedBatch(1, 2, done))
		start := time.Now()
		c.StatusLine("Instance p.web.1  Stopped")
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
		c.StatusLine("second")
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
		c.StatusLine("one")
		flushed := make(chan string, 1)
		c.AfterStatus(func() { _, s, _ := rec.get(); flushed <- s })
		select {
		case s := <-flushed:
			if s != "one\n" {
				t.Errorf("at the flush marker, status %q", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the flush marker was not reached")
		}
		c.Close()
	})
}

// shownLines is "web-1 | N\n" for N in from..to, as the console prints
// numberedBatch.
func shownLines(from, to int) string {
	var sb strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&sb, "web-1 | %d\n", i)
	}
	return sb.String()
}

// pipeConsole is a console whose stdout is a pipe (r its read end, closed
// at the end of the test) and whose stderr is recorded.
func pipeConsole(t *testing.T) (c *Console, rec *recorder, r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rec = &recorder{}
	return New(w, &gateWriter{rec: rec, tag: "err"}, "proj"), rec, r, w
}

// On a pipe stdout takes whole batches at once (see outWriter), written by
// the logger itself while the reader keeps up and by the stdout writer
// when it does not: the reader gets every line once, in order.
func TestConsolePipeStdout(t *testing.T) {
	c, rec, r, w := pipeConsole(t)
	if !c.outw.direct() {
		t.Fatal("stdout on a pipe is not written non-blocking")
	}
	read := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); read <- b }()
	p := testPrinter()
	done := make(chan struct{}, 1<<10)
	// Batches of about 130 KiB: more than a pipe holds.
	for n := 0; n < 50_000; n += 10_000 {
		c.Show(p, numberedBatch(n+1, n+10_000, done))
	}
	c.Close()
	w.Close()
	if got := string(<-read); got != shownLines(1, 50_000) {
		t.Errorf("stdout has %d lines, not 1..50000 in order", strings.Count(got, "\n"))
	}
	if _, status, _ := rec.get(); status != "" {
		t.Errorf("status %q", status)
	}
}

// A pipe whose reader stopped: once the teardown is asked for, the count
// of lines not shown is exact although a write carries more than 4 KiB:
// what the reader finds in the pipe afterwards and the count add up to
// every line.
func TestConsolePipeStdoutStoppedReader(t *testing.T) {
	c, rec, r, w := pipeConsole(t)
	p := testPrinter()
	done := make(chan struct{}, 1<<10)
	const total = 30_000
	for n := 0; n < total; n += 10_000 {
		c.Show(p, numberedBatch(n+1, n+10_000, done))
	}
	c.Stop(false)
	c.Close() // gives up on the stopped reader after consoleStuck
	// As at sstack's exit: the stdout writer, still waiting for room in
	// the pipe, writes no more.
	c.outw.close()
	w.Close()
	_, status, _ := rec.get()
	m := regexp.MustCompile(`^(\d+) lines not shown on the console; see sstack logs -n proj\n$`).FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("status %q", status)
	}
	hidden, _ := strconv.Atoi(m[1])
	// What the pipe holds: lines 1..shown, maybe the start of the next,
	// cut where the pipe was full, which is counted as not shown.
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(r)
	shown := bytes.Count(b, newline)
	if want := shownLines(1, shown); string(b[:len(want)]) != want {
		t.Fatalf("the pipe does not hold lines 1..%d", shown)
	}
	t.Logf("%d lines in the pipe (%d bytes), %d reported not shown", shown, len(b), hidden)
	if shown+hidden != total {
		t.Errorf("%d lines in the pipe and %d reported not shown, of %d", shown, hidden, total)
	}
}

// A regular file as stdout gets whole batches, every line.
func TestConsoleFileStdout(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := New(f, io.Discard, "proj")
	done := make(chan struct{}, 16)
	c.Show(testPrinter(), numberedBatch(1, 10_000, done))
	c.Show(testPrinter(), numberedBatch(10_001, 20_000, done))
	c.Close()
	if got, _ := os.ReadFile(f.Name()); string(got) != shownLines(1, 20_000) {
		t.Errorf("the file has %d lines, not 1..20000 in order", bytes.Count(got, newline))
	}
}

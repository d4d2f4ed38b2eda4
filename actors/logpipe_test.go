package actors

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sstack/internal/logformat"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/sys/unix"
)

var pumpTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return pumpTime }

// newBatchSink spawns a stand-in for the logger that hands every LogBatch,
// unacknowledged, to the returned channel.
func newBatchSink(t *testing.T) (*actor.RootContext, *actor.PID, chan *LogBatch) {
	t.Helper()
	system := actor.NewActorSystem(actor.WithLoggerFactory(quietLogger))
	t.Cleanup(system.Shutdown)
	ch := make(chan *LogBatch, 1<<16)
	pid := system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if b, ok := c.Message().(*LogBatch); ok {
			ch <- b
		}
	}))
	return system.Root, pid, ch
}

type pumped struct {
	batches [][]string // copies of each batch's lines, in arrival order
	sizes   []int      // bytes of data in each batch
}

// batchLines copies the lines of b, without their newline, and checks that
// b holds whole lines, each ending with a newline, and counts them right.
func batchLines(t *testing.T, b *LogBatch) []string {
	t.Helper()
	if len(b.Data) > 0 && b.Data[len(b.Data)-1] != '\n' {
		t.Errorf("batch data does not end with a newline: %q", lastBytes(b.Data))
	}
	if n := bytes.Count(b.Data, []byte{'\n'}); n != b.Count {
		t.Errorf("batch Count %d, but it holds %d lines", b.Count, n)
	}
	var lines []string
	for d := b.Data; len(d) > 0; {
		i := bytes.IndexByte(d, '\n')
		if i < 0 {
			i = len(d) - 1 // reported above
		}
		lines = append(lines, string(d[:i]))
		d = d[i+1:]
	}
	return lines
}

// receiveLines takes the batches sent to ch, acknowledging each, until
// they hold n lines or within has passed; all says whether n came.
func receiveLines(t *testing.T, ch <-chan *LogBatch, n int, within time.Duration) (got []string, all bool) {
	t.Helper()
	deadline := time.After(within)
	for len(got) < n {
		select {
		case b := <-ch:
			got = append(got, batchLines(t, b)...)
			b.Done <- struct{}{}
		case <-deadline:
			return got, false
		}
	}
	return got, true
}

// ackUntil acknowledges every batch sent to ch until finished is closed
// (pumpLines returned), failing if neither a batch nor the end comes for
// quiet.
func ackUntil(t *testing.T, ch <-chan *LogBatch, finished <-chan struct{}, quiet time.Duration) {
	t.Helper()
	for {
		select {
		case b := <-ch:
			b.Done <- struct{}{}
		case <-finished:
			return
		case <-time.After(quiet):
			t.Fatal("pumpLines did not return at EOF")
		}
	}
}

func lastBytes(b []byte) []byte {
	if len(b) > 40 {
		return b[len(b)-40:]
	}
	return b
}

func (p *pumped) lines() []string {
	var out []string
	for _, b := range p.batches {
		out = append(out, b...)
	}
	return out
}

// pump runs pumpLines over r to EOF with a logger that copies each batch
// and acknowledges it at once, as the real logger does once written.
func pump(t *testing.T, r io.Reader) *pumped {
	t.Helper()
	root, pid, ch := newBatchSink(t)
	src := &logformat.Source{Service: "web", Replica: 2, Name: "web-2"}
	res := &pumped{}
	var mu sync.Mutex
	stop := make(chan struct{})
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for {
			select {
			case b := <-ch:
				if b.Source != src || b.Stream != Stderr || !b.Time.Equal(pumpTime) || b.Done == nil {
					t.Errorf("batch with source %+v stream %v time %v done %v", b.Source, b.Stream, b.Time, b.Done)
				}
				lines := batchLines(t, b)
				mu.Lock()
				res.batches = append(res.batches, lines)
				res.sizes = append(res.sizes, len(b.Data))
				mu.Unlock()
				b.Done <- struct{}{}
			case <-stop:
				return
			}
		}
	}()
	finished := make(chan struct{})
	go func() {
		pumpLines(root, pid, src, Stderr, r, fixedNow)
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("pumpLines did not return at EOF")
	}
	// pumpLines returns once every batch is acknowledged, so all are in.
	close(stop)
	<-collected
	mu.Lock()
	defer mu.Unlock()
	for i, b := range res.batches {
		if len(b) == 0 {
			t.Errorf("batch %d is empty", i)
		}
	}
	return res
}

func numbered(n int) (string, []string) {
	var sb strings.Builder
	want := make([]string, n)
	for i := range want {
		want[i] = "line " + strconv.Itoa(i+1)
		sb.WriteString(want[i])
		sb.WriteByte('\n')
	}
	return sb.String(), want
}

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d lines, want %d", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			g, w := got[i], want[i]
			if len(g) > 60 {
				g = g[:60] + "…(" + strconv.Itoa(len(got[i])) + " bytes)"
			}
			if len(w) > 60 {
				w = w[:60] + "…(" + strconv.Itoa(len(want[i])) + " bytes)"
			}
			t.Errorf("line %d = %q, want %q", i, g, w)
			return
		}
	}
}

// TestPumpLinesBatches: many short lines arrive complete and in order, in
// batches of about batchBytes rather than one message per line.
func TestPumpLinesBatches(t *testing.T) {
	in, want := numbered(200_000)
	res := pump(t, strings.NewReader(in))
	equalLines(t, res.lines(), want)
	maxBatches := 2*len(in)/batchBytes + 2
	if len(res.batches) < 2 || len(res.batches) > maxBatches {
		t.Errorf("%d batches for %d bytes, want between 2 and %d", len(res.batches), len(in), maxBatches)
	}
	for i, size := range res.sizes {
		if size > batchBytes+16 {
			t.Errorf("batch %d holds %d bytes, more than batchBytes (%d) plus one line", i, size, batchBytes)
		}
	}
}

// TestPumpLinesSmallReads: a writer that delivers a byte at a time still
// gives whole lines.
func TestPumpLinesSmallReads(t *testing.T) {
	in, want := numbered(2000)
	res := pump(t, iotest.OneByteReader(strings.NewReader(in)))
	equalLines(t, res.lines(), want)
}

// TestPumpLinesLongLines: lines longer than the read buffer arrive whole,
// as do lines at and around the buffer size.
func TestPumpLinesLongLines(t *testing.T) {
	want := []string{
		strings.Repeat("x", 1<<20),
		"short",
		strings.Repeat("a", batchBytes-1),
		strings.Repeat("b", batchBytes),
		strings.Repeat("c", batchBytes+1),
		"",
		strings.Repeat("d", 3*batchBytes+7),
		"end",
	}
	res := pump(t, strings.NewReader(strings.Join(want, "\n")+"\n"))
	equalLines(t, res.lines(), want)
}

// TestPumpLinesHugeLineSplit: a line longer than maxLine is passed on in
// pieces (memory stays bounded) that together are the whole line, and the
// next line is intact.
func TestPumpLinesHugeLineSplit(t *testing.T) {
	huge := make([]byte, maxLine+12345)
	for i := range huge {
		huge[i] = 'a' + byte(i%26)
	}
	in := string(huge) + "\nafter\n"
	res := pump(t, strings.NewReader(in))
	got := res.lines()
	if len(got) < 3 || got[len(got)-1] != "after" {
		t.Fatalf("got %d lines, the last %q; want the huge line in pieces, then \"after\"", len(got), lastOf(got))
	}
	pieces := got[:len(got)-1]
	if joined := strings.Join(pieces, ""); joined != string(huge) {
		t.Errorf("the pieces (%d, %d bytes) are not the huge line (%d bytes)", len(pieces), len(joined), len(huge))
	}
	for i, p := range pieces {
		if len(p) > maxLine+batchBytes {
			t.Errorf("piece %d holds %d bytes, above maxLine (%d) plus a buffer", i, len(p), maxLine)
		}
	}
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	l := s[len(s)-1]
	if len(l) > 40 {
		l = l[:40] + "…"
	}
	return l
}

// TestPumpLinesEdges: a last line without newline is flushed at EOF (and
// at a read error); empty lines are kept; no input sends nothing; bytes
// that are not UTF-8 are passed through untouched.
func TestPumpLinesEdges(t *testing.T) {
	for _, c := range []struct {
		name string
		in   io.Reader
		want []string
	}{
		{"last line without newline", strings.NewReader("a\nb\nlast"), []string{"a", "b", "last"}},
		{"only a partial line", strings.NewReader("partial"), []string{"partial"}},
		{"empty input", strings.NewReader(""), nil},
		{"empty lines", strings.NewReader("\n\nx\n\n"), []string{"", "", "x", ""}},
		{"invalid utf-8", strings.NewReader("ok\n\xff\xfe bad\n"), []string{"ok", "\xff\xfe bad"}},
		{"carriage return kept", strings.NewReader("dos\r\n"), []string{"dos\r"}},
		{"long partial last line", strings.NewReader("a\n" + strings.Repeat("z", 3*batchBytes)), []string{"a", strings.Repeat("z", 3*batchBytes)}},
		{"read error", io.MultiReader(strings.NewReader("x\npartial"), iotest.ErrReader(errors.New("boom"))), []string{"x", "partial"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := pump(t, c.in)
			equalLines(t, res.lines(), c.want)
			if c.want == nil && len(res.batches) != 0 {
				t.Errorf("%d batches for no input", len(res.batches))
			}
		})
	}
}

// lineGen is an endless source of numbered lines that counts what was read
// from it; it ends (EOF) once stopped.
type lineGen struct {
	read    atomic.Int64
	stopped atomic.Bool
	next    int
	pending []byte
}

func (g *lineGen) Read(p []byte) (int, error) {
	if g.stopped.Load() && len(g.pending) == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) {
		if len(g.pending) == 0 {
			if g.stopped.Load() {
				break
			}
			g.next++
			g.pending = []byte("line " + strconv.Itoa(g.next) + "\n")
		}
		c := copy(p[n:], g.pending)
		g.pending = g.pending[c:]
		n += c
	}
	g.read.Add(int64(n))
	return n, nil
}

// TestPumpLinesBackPressure: while the logger has not written (acknowledged)
// inFlight batches, pumpLines reads nothing more, so a flooding service is
// held by its pipe instead of filling memory; batches in flight are not
// overwritten; each acknowledgement lets exactly one more batch through.
func TestPumpLinesBackPressure(t *testing.T) {
	root, pid, ch := newBatchSink(t)
	gen := &lineGen{}
	finished := make(chan struct{})
	go func() {
		pumpLines(root, pid, &logformat.Source{Service: "web", Replica: 1, Name: "web-1"}, Stdout, gen, fixedNow)
		close(finished)
	}()

	receive := func() *LogBatch {
		t.Helper()
		select {
		case b := <-ch:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no batch arrived")
			return nil
		}
	}
	// quiet asserts that no batch arrives and nothing is read for a while.
	quiet := func(what string) {
		t.Helper()
		before := gen.read.Load()
		select {
		case b := <-ch:
			t.Fatalf("%s: a batch of %d lines arrived beyond the %d in flight", what, b.Count, inFlight)
		case <-time.After(300 * time.Millisecond):
		}
		if after := gen.read.Load(); after != before {
			t.Fatalf("%s: pumpLines went on reading (%d → %d bytes) with %d batches unwritten", what, before, after, inFlight)
		}
	}
	snapshot := func(b *LogBatch) []string { return batchLines(t, b) }

	var held []*LogBatch
	var copies [][]string
	for i := 0; i < inFlight; i++ {
		b := receive()
		held = append(held, b)
		copies = append(copies, snapshot(b))
	}
	quiet("logger holding every batch")
	bound := int64(inFlight+1)*(batchBytes+4096) + batchBytes
	if n := gen.read.Load(); n > bound {
		t.Errorf("read %d bytes ahead of the logger, want at most %d", n, bound)
	}
	for i, b := range held {
		if got := snapshot(b); strings.Join(got, "\n") != strings.Join(copies[i], "\n") {
			t.Fatalf("batch %d was overwritten while in flight", i)
		}
	}

	// One acknowledgement: one more batch, then quiet again.
	held[0].Done <- struct{}{}
	held = append(held[1:], receive())
	quiet("after one acknowledgement")

	// Lines stay in order across the held batches.
	var all []string
	for _, b := range held {
		all = append(all, snapshot(b)...)
	}
	first, _ := strconv.Atoi(strings.TrimPrefix(all[0], "line "))
	for i, l := range all {
		if l != "line "+strconv.Itoa(first+i) {
			t.Fatalf("line %d of the held batches is %q, want %q", i, l, "line "+strconv.Itoa(first+i))
		}
	}

	// End the stream: pumpLines drains and returns once all are written.
	gen.stopped.Store(true)
	for _, b := range held {
		b.Done <- struct{}{}
	}
	ackUntil(t, ch, finished, 10*time.Second)
}

// TestPumpLinesWaitsForLogger: pumpLines does not return (and so the
// service's exit is not reported) before its last batch is written.
func TestPumpLinesWaitsForLogger(t *testing.T) {
	root, pid, ch := newBatchSink(t)
	finished := make(chan struct{})
	go func() {
		pumpLines(root, pid, &logformat.Source{Name: "web-1"}, Stdout, bytes.NewReader([]byte("one\ntwo\n")), fixedNow)
		close(finished)
	}()
	var b *LogBatch
	select {
	case b = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch")
	}
	heldUntilWritten(t, finished, b, 200*time.Millisecond, "pumpLines returned")
}

// heldUntilWritten checks that ended is still open after hold, while b is
// not written (its Done not signalled), and that it ends once b is.
func heldUntilWritten(t *testing.T, ended <-chan struct{}, b *LogBatch, hold time.Duration, what string) {
	t.Helper()
	select {
	case <-ended:
		t.Fatalf("%s before its batch was written", what)
	case <-time.After(hold):
	}
	b.Done <- struct{}{}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("not %s after its batch was written", what)
	}
}

// TestPumpLinesSendsBeforeBlocking: whole lines are passed on as soon as
// they are read, even when part of the next line came with them and the
// rest of it comes much later (a prompt, a buffered writer's flush in the
// middle of a line).
func TestPumpLinesSendsBeforeBlocking(t *testing.T) {
	for _, c := range []struct {
		name  string
		first string
		want  []string
	}{
		{"partial line after whole lines", "a\nb\npar", []string{"a", "b"}},
		{"long partial line after a whole line", "a\n" + strings.Repeat("x", 3*batchBytes), []string{"a"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, pid, ch := newBatchSink(t)
			pr, pw := io.Pipe()
			finished := make(chan struct{})
			go func() {
				pumpLines(root, pid, &logformat.Source{Name: "web-1"}, Stdout, pr, fixedNow)
				close(finished)
			}()
			go func() { _, _ = io.WriteString(pw, c.first) }()
			got, all := receiveLines(t, ch, len(c.want), 5*time.Second)
			if !all {
				t.Fatalf("lines %q still held back while the rest of the next line is awaited (got %q)", c.want, got)
			}
			equalLines(t, got, c.want)
			_, _ = io.WriteString(pw, "tial\n")
			pw.Close()
			ackUntil(t, ch, finished, 5*time.Second)
		})
	}
}

// TestPipeTrackerWaitsForSlowLogger: wait does not return while a pump's
// lines wait for the logger (stdout read slowly), however long that is,
// and returns as soon as the pump is done.
func TestPipeTrackerWaitsForSlowLogger(t *testing.T) {
	tr := newPipeTracker()
	root, pid, ch := newBatchSink(t)
	r, done := tr.track(strings.NewReader("one\ntwo\n"))
	go func() {
		defer done()
		pumpLines(root, pid, &logformat.Source{Name: "web-1"}, Stdout, r, fixedNow)
	}()
	b := <-ch // held: the logger is "writing" it
	waited := make(chan struct{})
	go func() { tr.wait(100 * time.Millisecond); close(waited) }()
	heldUntilWritten(t, waited, b, 500*time.Millisecond, "wait returned")
}

// TestPipeTrackerGivesUpOnSilentPipe: a pipe held open by a process that
// outlived its instance does not keep wait from returning: it gives up
// after idle, counted from the call.
func TestPipeTrackerGivesUpOnSilentPipe(t *testing.T) {
	tr := newPipeTracker()
	root, pid, ch := newBatchSink(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	r, done := tr.track(pr)
	go func() {
		defer done()
		pumpLines(root, pid, &logformat.Source{Name: "web-1"}, Stdout, r, fixedNow)
	}()
	go func() { _, _ = io.WriteString(pw, "before\n") }()
	b := <-ch
	b.Done <- struct{}{}
	time.Sleep(300 * time.Millisecond) // blocked in Read longer than idle already
	start := time.Now()
	tr.wait(200 * time.Millisecond)
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Errorf("wait took %s with a silent pipe, want about the idle time (200ms) from the call", took)
	}
	// An untracked or nil tracker never blocks.
	var none *pipeTracker
	r2, done2 := none.track(strings.NewReader("x"))
	done2()
	none.wait(time.Hour)
	if r2 == nil {
		t.Error("nil tracker returned no reader")
	}
	empty := newPipeTracker()
	start = time.Now()
	empty.wait(time.Hour)
	if time.Since(start) > time.Second {
		t.Error("wait with nothing tracked blocked")
	}
}

// TestPumpLinesAfterBurst: after a burst, which makes pumpLines wait a
// little before reading again so that a fast writer's output comes in few
// batches, a line written next is still passed on at once when the writer
// then goes quiet.
func TestPumpLinesAfterBurst(t *testing.T) {
	root, pid, ch := newBatchSink(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go pumpLines(root, pid, &logformat.Source{Name: "web-1"}, Stdout, pr, fixedNow)
	burst, want := numbered(1000) // well above busyRead
	if len(burst) < 2*busyRead {
		t.Fatalf("burst of %d bytes too small", len(burst))
	}
	go func() {
		_, _ = io.WriteString(pw, burst)
		_, _ = io.WriteString(pw, "ready\nprompt> ")
	}()
	want = append(want, "ready")
	got, all := receiveLines(t, ch, len(want), 5*time.Second)
	if !all {
		t.Fatalf("after a burst, %d of %d lines passed on while the writer waits", len(got), len(want))
	}
	equalLines(t, got, want)
}

// TestLogPipe: the pipe for a process's output carries its bytes and ends
// at EOF once the write end is closed; its read end is not in Go's poller
// (see logPipe), so it has no deadlines.
func TestLogPipe(t *testing.T) {
	r, w, err := logPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.SetReadDeadline(time.Now()); !errors.Is(err, os.ErrNoDeadline) {
		t.Errorf("read end is pollable: SetReadDeadline = %v", err)
	}
	go func() {
		_, _ = io.WriteString(w, "one\ntwo")
		w.Close()
	}()
	data, err := io.ReadAll(r)
	if err != nil || string(data) != "one\ntwo" {
		t.Errorf("read %q, %v", data, err)
	}
}

// growPipe grows a busy stream's pipe (logPipe's, tracked or not), never
// more than maxBusyPipes at once, and leaves other readers alone.
func TestGrowPipeBounded(t *testing.T) {
	if growPipe(strings.NewReader("x")) {
		t.Fatal("grew a reader that is no pipe")
	}
	grown := 0
	defer func() { busyPipes.Add(-int32(grown)) }()
	for i := 0; i < maxBusyPipes+2; i++ {
		r, w, err := logPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		var rd io.Reader = r
		if i%2 == 1 {
			rd, _ = newPipeTracker().track(r)
		}
		if !growPipe(rd) {
			if i < maxBusyPipes {
				t.Fatalf("pipe %d not grown", i)
			}
			continue
		}
		grown++
		if size, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0); err != nil || size != busyPipeSize {
			t.Fatalf("pipe %d: size %d (%v), want %d", i, size, err, busyPipeSize)
		}
	}
	if grown != maxBusyPipes {
		t.Fatalf("%d pipes grown, want at most %d", grown, maxBusyPipes)
	}
}

// quickReader: data already in the pipe is read at once (at most as much
// as asked), an empty pipe waits for its writer, the end is EOF, and a
// reader that is no pipe is read as it is.
func TestQuickReader(t *testing.T) {
	r, w, err := logPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd, done := newPipeTracker().track(r)
	defer done()
	q := newQuickReader(rd)
	if q.rc == nil {
		t.Fatal("logPipe's read end not read quickly")
	}
	if _, err := io.WriteString(w, "one\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := q.read(rd, buf[:5]); err != nil || string(buf[:n]) != "one\nt" {
		t.Fatalf("read %q, %v; want \"one\\nt\"", buf[:n], err)
	}
	if n, err := q.read(rd, buf); err != nil || string(buf[:n]) != "wo\n" {
		t.Fatalf("read %q, %v; want \"wo\\n\"", buf[:n], err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = io.WriteString(w, "three\n")
		w.Close()
	}()
	if n, err := q.read(rd, buf); err != nil || string(buf[:n]) != "three\n" {
		t.Fatalf("read from an empty pipe: %q, %v; want \"three\\n\"", buf[:n], err)
	}
	if n, err := q.read(rd, buf); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v; want EOF", n, err)
	}

	s := strings.NewReader("plain")
	q = newQuickReader(s)
	if q.rc != nil {
		t.Fatal("a strings.Reader taken for a pipe")
	}
	if n, err := q.read(s, buf); err != nil || string(buf[:n]) != "plain" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

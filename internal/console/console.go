// Package console is the one writer of sstack's stdout and stderr while a
// stack runs in the foreground: service lines, formatted by logformat, to
// stdout and status lines to stderr, each from its own goroutine, with the
// rules for a reader that stops reading (the services are held back while
// the stack runs; after a stop, lines beyond a backlog are counted, not
// shown). The logger actor (package actors) hands it batches; it knows no
// actor.
package console

import (
	"bytes"
	"fmt"
	"io"
	"sstack/internal/logformat"
	"sync"
	"time"
)

// The console: service lines to stdout and status lines to stderr, each
// from its own goroutine, with the rules for a reader that stops.

const (
	// consoleBacklog bounds the bytes of service lines the console holds
	// once the teardown was asked for and it no longer holds the services
	// back; lines beyond are not shown (they are in the store).
	consoleBacklog = 256 << 10
	// consoleChunk: stdout is written this much at a time (PIPE_BUF, which
	// a pipe takes whole or not at all), so that the console knows how far
	// a reader that stopped got, and notices that it stopped; more where
	// that is known all the same (see outWriter).
	consoleChunk = 4096
	// consoleStuck: a write to stdout or stderr that has not progressed for
	// this long means its reader stopped reading.
	consoleStuck = 2 * time.Second
	// statusPatience: a status line waits at most this long for the
	// service lines handed to the console before it to reach stdout, so
	// that a terminal shows both in order; it does not wait for a reader
	// that does not keep up.
	statusPatience = 500 * time.Millisecond
)

var newline = []byte{'\n'}

type consoleMode uint8

// console writes service lines to stdout and status lines to stderr, each
// from its own goroutine, so that neither the logger actor nor a status
// line waits for a stdout that is not read. The logger hands it formatted
// copies of its batches; their Done is signalled once written while the
// stack runs (the services' pipes push back), at once after stop or kill.
// All fields below mu are guarded by it.
type Console struct {
	out, status io.Writer
	project     string
	outw        *outWriter // writes to out, as much at once as it may

	mu      sync.Mutex
	outWake *sync.Cond // the stdout writer: an item, or closing
	queue   []*consoleItem
	cur     *consoleItem // being written
	curOff  int          // bytes of cur written
	// progress: when the stdout writer last started an item or finished
	// a chunk.
	progress time.Time
	backlog  int // bytes in queue and cur
	mode     consoleMode
	hidden   int // lines dropped from the console or whose write failed
	// queued and written count stdout items, to order status lines
	// after the service lines handed over before them.
	queued, written uint64
	gaveUp          bool // the end of up no longer waits for stdout
	closed          bool
	free            [][]byte // item buffers to reuse

	statusQ     []statusItem
	statusWake  chan struct{} // capacity 1: the status writer has news
	statusBusy  bool
	statusSince time.Time // when the status write in progress began
}

type consoleItem struct {
	buf   []byte
	lines int
	done  chan<- struct{} // the batch's, nil once signalled
	off   int             // bytes of buf already written (see writeDirect)
}

type statusItem struct {
	text  string // with its newline; "" for a marker
	after uint64 // stdout items queued before it
	at    time.Time
	then  func() // called once written (and what came before)
}

func New(out, status io.Writer, project string) *Console {
	c := &Console{out: out, status: status, project: project, outw: newOutWriter(out), statusWake: make(chan struct{}, 1)}
	c.outWake = sync.NewCond(&c.mu)
	go c.writeOut()
	go c.writeStatus()
	return c
}

// Batch is lines of one replica's stream as its pump read them: Count
// whole lines in Data, read at Time; Done, when not nil, is signalled
// once the console no longer holds them (see Console).
type Batch struct {
	Source *logformat.Source
	Stream string // "stdout" or "stderr"
	Time   time.Time
	Data   []byte
	Count  int
	Done   chan<- struct{}
}

// Show hands the lines of b to the console, formatted by p.
func (c *Console) Show(p *logformat.Printer, b Batch) {
	if c.out == io.Discard { // a detached stack shows nothing
		release(b.Done)
		return
	}
	c.mu.Lock()
	if c.mode != consoleRunning && c.backlog+len(b.Data) > consoleBacklog {
		c.hidden += b.Count
		c.mu.Unlock()
		release(b.Done)
		return
	}
	var buf []byte
	if n := len(c.free); n > 0 {
		buf, c.free = c.free[n-1][:0], c.free[:n-1]
	}
	c.mu.Unlock()
	buf = p.AppendData(buf, b.Source, b.Stream, b.Time, b.Data, b.Count)
	it := &consoleItem{buf: buf, lines: b.Count, done: b.Done}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mode != consoleRunning {
		release(it.done)
		it.done = nil
	}
	if len(buf) == 0 {
		release(it.done)
		return
	}
	c.backlog += len(buf)
	c.queued++
	if c.cur == nil && len(c.queue) == 0 && !c.closed && c.outw.direct() {
		c.writeDirect(it)
		return
	}
	c.queue = append(c.queue, it)
	c.outWake.Signal()
}

// writeDirect is batch's way when stdout is idle and takes a write
// without blocking (a pipe, see outWriter): the logger writes it itself,
// which saves waking the stdout writer and being woken back for each
// batch while the reader keeps up. What the pipe does not take at once
// goes to the stdout writer. Called with mu held; the stdout writer waits
// while cur is set.
func (c *Console) writeDirect(it *consoleItem) {
	c.cur, c.curOff, c.progress = it, 0, time.Now()
	c.mu.Unlock()
	n, err := c.outw.tryWrite(it.buf)
	c.mu.Lock()
	c.cur = nil
	switch {
	case err != nil: // the reader is gone (EPIPE): what is left is not shown
		c.hidden += bytes.Count(it.buf[n:], newline)
		c.finish(it)
	case n == len(it.buf):
		c.progress = time.Now()
		c.finish(it)
	default:
		if n > 0 {
			it.off, c.progress = n, time.Now()
		}
		c.queue = append(c.queue, it)
	}
	c.outWake.Signal() // the rest, or the end of up, is the stdout writer's
}

func release(done chan<- struct{}) {
	if done != nil {
		done <- struct{}{} // room for every batch of its reader in flight
	}
}

// writeOut writes the queued items to stdout (see outWriter).
func (c *Console) writeOut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		// cur set here: batch is writing one itself (writeDirect).
		for len(c.queue) == 0 && !c.closed || c.cur != nil {
			c.outWake.Wait()
		}
		if len(c.queue) == 0 {
			c.outw.close()
			return
		}
		it := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.cur, c.curOff, c.progress = it, it.off, time.Now()
		for c.curOff < len(it.buf) {
			off := c.curOff
			c.mu.Unlock()
			n, err := c.outw.write(it.buf[off:])
			c.mu.Lock()
			if err != nil { // the reader is gone (EPIPE): what is left is not shown
				c.hidden += bytes.Count(it.buf[off+n:], newline)
				break
			}
			c.curOff, c.progress = off+n, time.Now()
		}
		c.cur = nil
		c.finish(it)
	}
}

// finish accounts for an item written (or given up on); with mu held.
func (c *Console) finish(it *consoleItem) {
	c.backlog -= len(it.buf)
	c.written++
	release(it.done)
	it.done = nil
	if len(c.free) < 4 && cap(it.buf) <= 1<<20 {
		c.free = append(c.free, it.buf)
	}
	if len(c.statusQ) > 0 { // one may wait for these lines
		c.pokeStatus()
	}
}

// pokeStatus wakes the status writer; call with mu held or not.
func (c *Console) pokeStatus() {
	select {
	case c.statusWake <- struct{}{}:
	default:
	}
}

// statusLine queues one of sstack's own lines for stderr.
func (c *Console) StatusLine(text string) {
	c.queueStatus(statusItem{text: text + "\n"})
}

// afterStatus calls then once every status line queued before is written.
func (c *Console) AfterStatus(then func()) {
	c.queueStatus(statusItem{then: then})
}

func (c *Console) queueStatus(s statusItem) {
	c.mu.Lock()
	s.after, s.at = c.queued, time.Now()
	c.statusQ = append(c.statusQ, s)
	c.mu.Unlock()
	c.pokeStatus()
}

// writeStatus writes the status lines to stderr, each once the service
// lines handed over before it are on stdout, or once it has waited
// statusPatience for them, or at once when stdout is stalled.
func (c *Console) writeStatus() {
	for {
		c.mu.Lock()
		if len(c.statusQ) == 0 {
			closed := c.closed
			c.mu.Unlock()
			if closed {
				return
			}
			<-c.statusWake
			continue
		}
		s := c.statusQ[0]
		wait := time.Until(s.at.Add(statusPatience))
		stalled := c.cur != nil && time.Since(c.progress) >= statusPatience
		if c.written < s.after && !stalled && c.mode != consoleKilled && !c.gaveUp && wait > 0 {
			c.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-c.statusWake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		c.statusQ = c.statusQ[1:]
		c.statusBusy, c.statusSince = true, time.Now()
		c.mu.Unlock()
		if s.text != "" {
			_, _ = io.WriteString(c.status, s.text)
		}
		if s.then != nil {
			s.then()
		}
		c.mu.Lock()
		c.statusBusy = false
		c.mu.Unlock()
	}
}

// stop tells the console that the user asked for the teardown (kill: at
// once): from now on it no longer holds the services back, and the end of
// up waits for it only while it makes progress (kill: not at all).
func (c *Console) Stop(kill bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if kill {
		c.mode = consoleKilled
	} else if c.mode == consoleRunning {
		c.mode = consoleStopping
	}
	// The items hold copies of the lines: their batches can go.
	if c.cur != nil {
		release(c.cur.done)
		c.cur.done = nil
	}
	for _, it := range c.queue {
		release(it.done)
		it.done = nil
	}
	c.pokeStatus()
}

// close is the end of up: it waits until stdout has taken every line, but
// once the teardown was asked for only while stdout makes progress, and
// after a kill not at all; then it reports on stderr the lines stdout did
// not take (they are in the store) and waits for the status lines while
// stderr takes them.
func (c *Console) Close() {
	for {
		c.mu.Lock()
		empty := c.cur == nil && len(c.queue) == 0
		stuck := c.cur != nil && time.Since(c.progress) >= consoleStuck
		mode := c.mode
		c.mu.Unlock()
		if empty || mode == consoleKilled || mode == consoleStopping && stuck {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	c.gaveUp, c.closed = true, true
	n := c.hidden
	if c.cur != nil {
		n += bytes.Count(c.cur.buf[c.curOff:], newline)
	}
	for _, it := range c.queue {
		if it.off > 0 {
			n += bytes.Count(it.buf[it.off:], newline)
		} else {
			n += it.lines
		}
	}
	if n > 0 {
		// Queued with closed set under one lock: the status writer ends
		// only on an empty queue once closed, so it cannot miss this line.
		what := "lines"
		if n == 1 {
			what = "line"
		}
		text := fmt.Sprintf("%d %s not shown on the console; see sstack logs -n %s\n", n, what, c.project)
		c.statusQ = append(c.statusQ, statusItem{text: text, after: c.queued, at: time.Now()})
	}
	c.outWake.Signal()
	c.mu.Unlock()
	c.pokeStatus()
	for {
		c.mu.Lock()
		idle := len(c.statusQ) == 0 && !c.statusBusy
		stuck := c.statusBusy && time.Since(c.statusSince) >= consoleStuck
		c.mu.Unlock()
		if idle || stuck {
			c.pokeStatus() // the status writer ends once idle
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const (
	// consoleRunning: a batch is released once written, so a slow reader
	// slows the services and a reader that lags gets every line.
	consoleRunning consoleMode = iota
	// consoleStopping: the user asked for the teardown; batches are
	// released at once, copied into the backlog or not shown.
	consoleStopping
	// consoleKilled: as stopping, and the end of up does not wait for
	// the console at all.
	consoleKilled
)

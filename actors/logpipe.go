package actors

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

const (
	batchBytes = 64 << 10 // a batch is sent once it holds this much
	// maxLine bounds one line in memory; a longer line is passed on in
	// pieces of this size rather than growing without limit.
	maxLine = 8 << 20
	// inFlight batches per stream: the reader blocks (and so does the
	// service's pipe) when the logger is this far behind.
	inFlight = 2
)

type lineBatch struct {
	data  []byte
	lines [][]byte
}

func (b *lineBatch) add(line []byte) {
	start := len(b.data)
	b.data = append(b.data, line...)
	b.lines = append(b.lines, b.data[start:len(b.data):len(b.data)])
}

func (b *lineBatch) reset() {
	if cap(b.data) > 4*batchBytes {
		b.data = make([]byte, 0, batchBytes+4096) // give back a long line's memory
	}
	b.data = b.data[:0]
	b.lines = b.lines[:0]
}

// pumpLines reads r until EOF and hands whole lines to the logger in
// batches. It blocks while the logger has inFlight batches of this stream
// unwritten, so memory stays bounded and a flooding service is slowed by
// its pipe instead of filling a queue. A last line without newline is sent
// at EOF.
func pumpLines(sender actor.SenderContext, logger *actor.PID, src *LogSource, stream Stream, r io.Reader, now func() time.Time) {
	br := bufio.NewReaderSize(r, batchBytes)
	done := make(chan struct{}, inFlight)
	free := make([]*lineBatch, 0, inFlight)
	for i := 0; i < inFlight; i++ {
		free = append(free, &lineBatch{data: make([]byte, 0, batchBytes+4096)})
	}
	var pending []*lineBatch // sent, not yet written
	cur := free[0]
	free = free[1:]

	send := func() {
		if len(cur.lines) == 0 {
			return
		}
		lines := make([][]byte, len(cur.lines))
		copy(lines, cur.lines)
		sender.Send(logger, &LogBatch{Source: src, Stream: stream, Lines: lines, Time: now(), Done: done})
		pending = append(pending, cur)
		if len(free) == 0 {
			<-done // the oldest batch is written: reuse it
			free = append(free, pending[0])
			pending = pending[1:]
		}
		cur = free[len(free)-1]
		free = free[:len(free)-1]
		cur.reset()
	}

	var long []byte // a line longer than the reader's buffer, being assembled
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line := chunk[:len(chunk)-1]
			if long != nil {
				line = append(long, line...)
				long = nil
			}
			cur.add(line)
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, chunk...)
			if len(long) >= maxLine {
				cur.add(long)
				long = nil
				send()
			}
			continue
		default: // EOF or a read error: flush what is left
			if len(chunk) > 0 || long != nil {
				cur.add(append(long, chunk...))
			}
			send()
			for range pending {
				<-done
			}
			return
		}
		// Send before the next read can block: when the buffer holds no
		// other whole line. Lines followed by only part of the next must
		// not wait for the rest of it, which may come much later.
		if len(cur.data) >= batchBytes || !lineBuffered(br) {
			send()
		}
	}
}

// lineBuffered reports whether br holds a whole line, so that the next
// ReadSlice returns without reading. It scans only up to the first
// newline: the next line.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// pipeTracker lets the stack wait, before it stops the logger at the end
// of up, until every line the processes wrote has been written to stdout,
// however slowly stdout is read: a service that printed a burst and
// exited while a pager or a slow terminal lagged must not lose its last
// lines. It gives up only on a pipe that is still open but silent (a
// process that outlived its instance holds it), never on one whose lines
// wait for the logger. A nil *pipeTracker tracks nothing.
type pipeTracker struct {
	mu    sync.Mutex
	pipes map[*trackedPipe]struct{}
}

func newPipeTracker() *pipeTracker {
	return &pipeTracker{pipes: map[*trackedPipe]struct{}{}}
}

// trackedPipe is a reader that records whether it is blocked waiting for
// its writer.
type trackedPipe struct {
	t         *pipeTracker
	r         io.Reader
	readSince time.Time // set while blocked in Read, under t.mu
}

func (p *trackedPipe) Read(b []byte) (int, error) {
	p.t.mu.Lock()
	p.readSince = time.Now()
	p.t.mu.Unlock()
	n, err := p.r.Read(b)
	p.t.mu.Lock()
	p.readSince = time.Time{}
	p.t.mu.Unlock()
	return n, err
}

// track registers r before its pump starts (call it synchronously, before
// the process can be reported as exited) and returns the reader the pump
// reads and the function to call once the pump has returned.
func (t *pipeTracker) track(r io.Reader) (io.Reader, func()) {
	if t == nil {
		return r, func() {}
	}
	p := &trackedPipe{t: t, r: r}
	t.mu.Lock()
	t.pipes[p] = struct{}{}
	t.mu.Unlock()
	return p, func() {
		t.mu.Lock()
		delete(t.pipes, p)
		t.mu.Unlock()
	}
}

// wait returns once every tracked pump has returned, or once each one
// left has been blocked reading its pipe (not waiting for the logger) for
// idle, counted from the call at the earliest: the pipe's writer has just
// been killed and its EOF is on the way. Call it after every instance was
// stopped.
func (t *pipeTracker) wait(idle time.Duration) {
	if t == nil {
		return
	}
	start := time.Now()
	for {
		t.mu.Lock()
		stuck := 0
		for p := range t.pipes {
			if !p.readSince.IsZero() && time.Since(p.readSince) >= idle && time.Since(start) >= idle {
				stuck++
			}
		}
		left := len(t.pipes)
		t.mu.Unlock()
		if left == stuck {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

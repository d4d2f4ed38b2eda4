package actors

import (
	"bufio"
	"errors"
	"io"
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
		if len(cur.data) >= batchBytes || br.Buffered() == 0 {
			send()
		}
	}
}

package actors

import (
	"bytes"
	"io"
	"os"
	"sstack/internal/logformat"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/sys/unix"
)

const (
	batchBytes = 64 << 10 // a read fills at most this much of a batch
	// busyBatchBytes replaces batchBytes once a stream is busy (its pipe
	// grown: see growPipe): the wait after each read can grow to maxCoalesce
	// and a batch holds what the service wrote meanwhile, so a fast
	// service makes half as many batches, each with the same costs
	// (wake-ups, writes) whatever its size, with its lines waiting no
	// longer than before.
	busyBatchBytes = 128 << 10
	// maxLine bounds one line in memory; a longer line is passed on in
	// pieces of this size rather than growing without limit.
	maxLine = 8 << 20
	// inFlight batches per stream: the reader blocks (and so does the
	// service's pipe) when the logger is this far behind.
	inFlight = 2
	// After a read of at least busyRead bytes that did not fill the
	// buffer, the reader waits (coalesce, or longer: see maxCoalesce)
	// before reading again, so that a service writing fast has its output
	// passed on in a few large batches rather than one per write: each
	// batch costs the logger a write to stdout and to the store and
	// several goroutine wake-ups, far more than its lines. The lines
	// already read are sent before the wait; only what the service writes
	// during it waits, at most maxCoalesce.
	busyRead = 2 << 10
	coalesce = time.Millisecond
	// The wait grows, up to maxCoalesce, while what it gathers stays
	// under a third of a batch, and shrinks once it gathers two thirds:
	// a service writing a steady few MB/s gets batches of tens of KiB
	// (each batch's wake-ups cost the same whatever its size), and a
	// faster one never fills its pipe (64 KiB) while the reader waits.
	maxCoalesce = 4 * time.Millisecond
)

// newBatchBuf is a batch's buffer: batchBytes to read into, after the
// start of a line carried over from the batch before (up to carryBytes),
// and one byte to spare for the newline added after a last line or a piece
// of a line longer than maxLine.
func newBatchBuf() []byte { return make([]byte, 0, carryBytes+batchBytes+1) }

// carryBytes: room in a batch's buffer for the start of a line that the
// read before cut, so that the buffers are reused as they are. Without it
// nearly every batch of a busy service, which ends within a line, took a
// fresh buffer: zeroed, faulted in page by page, and collected later,
// which cost more than the copies of its lines.
const carryBytes = 4 << 10

// pumpLines reads r until EOF and hands whole lines to the logger in
// batches: the bytes as read, cut after the last newline, so a batch is
// the pipe's data read straight into its buffer, and never splits a line.
// It blocks while the logger has inFlight batches of this stream unwritten,
// so memory stays bounded and a flooding service is slowed by its pipe
// instead of filling a queue. A last line without newline is sent, with
// one, at EOF.
func pumpLines(sender actor.SenderContext, logger *actor.PID, src *logformat.Source, stream Stream, r io.Reader, now func() time.Time) {
	done := make(chan struct{}, inFlight)
	free := make([][]byte, 0, inFlight)
	for i := 0; i < inFlight; i++ {
		free = append(free, newBatchBuf())
	}
	var pending [][]byte // sent, not yet written
	batch := batchBytes  // a read's most: busyBatchBytes once the pipe is grown
	cur := free[len(free)-1]
	free = free[:len(free)-1]

	// send passes on cur[:n], n lines ending with a newline, and carries
	// the rest of cur (the start of the next line) over into the next
	// buffer, waiting for the logger to give one back if none is free.
	send := func(n, count int) {
		sender.Send(logger, &LogBatch{Source: src, Stream: stream, Data: cur[:n:n], Count: count, Time: now(), Done: done})
		pending = append(pending, cur)
		if len(free) == 0 {
			<-done // the oldest batch is written: reuse it
			free = append(free, pending[0])
			pending = pending[1:]
		}
		next := free[len(free)-1]
		free = free[:len(free)-1]
		if cap(next) > 4*batchBytes+carryBytes {
			next = newBatchBuf() // give back a long line's memory
		}
		// The logger reads only cur[:n]: the rest is still ours.
		rest := cur[n:]
		if cap(next) < len(rest)+batch+1 {
			next = make([]byte, 0, max(len(rest), carryBytes)+batch+1)
		}
		cur = append(next[:0], rest...)
	}

	fast := newQuickReader(r)
	wait := false // the last read found the service writing fast
	pause := coalesce
	tried, grown := false, false // growPipe
	defer func() {
		if grown {
			busyPipes.Add(-1)
		}
	}()
	for {
		if len(cur) == cap(cur)-1 { // full of one partial line
			if len(cur) >= maxLine {
				cur = append(cur, '\n')
				send(len(cur), 1)
				continue
			}
			grown := make([]byte, len(cur), min(2*len(cur), maxLine)+1)
			copy(grown, cur)
			cur = grown
		}
		start := len(cur)
		waited := wait
		if wait {
			time.Sleep(pause)
		}
		// A read takes at most batch, whatever room the buffer has.
		end := min(cap(cur)-1, start+batch)
		n, err := fast.read(r, cur[start:end])
		wait = n >= busyRead && start+n < end
		switch {
		case !wait:
			pause = coalesce
		case waited && n < batch/3:
			pause = min(2*pause, maxCoalesce)
		case n > 2*batch/3:
			pause = max(pause/2, coalesce)
		}
		if wait && !tried {
			tried, grown = true, growPipe(r)
			if grown {
				batch = busyBatchBytes
			}
		}
		cur = cur[:start+n]
		// Whole lines are sent before the next read, which may block:
		// lines followed by part of the next must not wait for the rest of
		// it, which may come much later (a prompt).
		if i := bytes.LastIndexByte(cur[start:], '\n'); i >= 0 {
			end := start + i + 1
			send(end, bytes.Count(cur[start:end], newline))
		}
		if err != nil { // EOF or a read error: flush what is left
			if len(cur) > 0 {
				cur = append(cur, '\n')
				send(len(cur), 1)
			}
			for range pending {
				<-done
			}
			return
		}
	}
}

var newline = []byte{'\n'}

// A busy stream's pipe is grown from the 64 KiB it starts with to
// busyPipeSize: the service writes on while its pump waits out coalesce,
// and each read takes a whole batch. Measured with BenchmarkLogPath
// (2026-12-07, load 25), sstack's CPU per line went from 57-68 to 35-39 ns
// with the host's seq and from 58 to 39-51 ns paced. Pipes count against
// the user's pipe-user-pages-soft (64 MiB by default), beyond which every
// new pipe of the user gets 8 KiB: at most maxBusyPipes are grown at once.
const (
	busyPipeSize = 1 << 20 // fs.pipe-max-size's default
	maxBusyPipes = 16
)

// busyPipes counts the pipes grown now.
var busyPipes atomic.Int32

// growPipe grows r's pipe, if r is one (logPipe's, tracked or not) and
// fewer than maxBusyPipes are grown, and tells whether it did.
func growPipe(r io.Reader) bool {
	if p, ok := r.(*trackedPipe); ok {
		r = p.r
	}
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	if busyPipes.Add(1) > maxBusyPipes {
		busyPipes.Add(-1)
		return false
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, busyPipeSize); err != nil {
		busyPipes.Add(-1)
		return false
	}
	return true
}

// logPipe returns a pipe for a process's output whose read end is read
// with plain blocking reads, not through Go's poller as os.Pipe's is: the
// poller watches a pipe edge-triggered, so every write of a busy service
// would wake a thread even while pumpLines waits out coalesce and is not
// reading, which costs more than the lines. A reader blocked on a silent
// pipe holds a thread; close the read end only once its reader returned.
func logPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	// Blocking descriptors: os.NewFile leaves them out of the poller.
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// pipeTracker lets the stack wait, before it stops the logger at the end
// of up, until every line the processes wrote has been taken by the
// logger (in the store, and on stdout unless the user asked for the
// teardown: see console), however slowly stdout is read: a service that
// printed a burst and exited while a pager or a slow terminal lagged must
// not lose its last lines. It gives up only on a pipe that is still open
// but silent (a process that outlived its instance holds it), never on
// one whose lines wait for the logger. A nil *pipeTracker tracks nothing.
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

// quickReader reads the data a pipe (logPipe's, tracked or not) already
// holds without telling Go's scheduler about the system call: one it is
// told of wakes the runtime's monitor thread (sysmon) if it sleeps, as it
// does each time the process was idle, and sysmon then wakes every 20 µs
// while the process works. A busy service's pump reads once per batch,
// hundreds of times a second, after a wait (coalesce) while the process
// was idle: sysmon's wake-ups were most of the gap between the log path
// alone and the same path in a real up. A read that finds the pipe empty,
// and may block, is a plain Read as before (tracked, and seen by the
// scheduler, which hands the thread's P on while it blocks).
type quickReader struct {
	rc syscall.RawConn // nil: every read is a plain Read
}

func newQuickReader(r io.Reader) quickReader {
	if p, ok := r.(*trackedPipe); ok {
		r = p.r
	}
	f, ok := r.(*os.File)
	if !ok {
		return quickReader{}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return quickReader{}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return quickReader{}
	}
	return quickReader{rc: rc}
}

// read reads into b what the pipe holds now, if anything, with raw system
// calls that cannot block (FIONREAD, then a read of at most that much: the
// pump is its pipe's only reader), else reads r: a plain, blocking Read
// that waits for the writer, or sees EOF or an error.
func (q quickReader) read(r io.Reader, b []byte) (int, error) {
	if q.rc == nil || len(b) == 0 {
		return r.Read(b)
	}
	n := 0
	err := q.rc.Read(func(fd uintptr) bool {
		var avail int32 // TIOCINQ is FIONREAD: the bytes the pipe holds
		if _, _, e := unix.RawSyscall(unix.SYS_IOCTL, fd, unix.TIOCINQ, uintptr(unsafe.Pointer(&avail))); e != 0 || avail <= 0 {
			return true
		}
		k, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(min(int(avail), len(b))))
		if e == 0 {
			n = int(k)
		}
		return true
	})
	if err != nil || n == 0 {
		return r.Read(b)
	}
	return n, nil
}

package console

import (
	"errors"
	"io"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// outWriter writes the console's service lines to stdout. The console must
// know how far a reader that stopped got (to count the lines it did not
// show) and notice that it stopped, so a write must not block with part of
// its data taken: the plain way is writes of consoleChunk (PIPE_BUF, which
// a pipe takes whole or not at all). But one write per 4 KiB is most of
// what relaying a fast service costs, so:
//   - on a pipe (the usual stdout of a script or a test), stdout is opened
//     a second time, non-blocking (its own open file description: the
//     shared one, and so the reader's and the shell's view of it, keeps
//     its flags), and each write hands the pipe as much as it takes at
//     once, waiting in Go's poller while it is full;
//   - a regular file never waits for a reader: a batch is one write;
//   - anything else (a terminal, a socket, a test's writer) gets writes of
//     consoleChunk, as before.
type outWriter struct {
	w     io.Writer
	pipe  *os.File        // stdout reopened non-blocking, when it is a pipe
	raw   syscall.RawConn // pipe's
	whole bool            // w never blocks on a reader (a regular file)
}

func newOutWriter(w io.Writer) *outWriter {
	o := &outWriter{w: w}
	f, ok := w.(*os.File)
	if !ok {
		return o
	}
	st, err := f.Stat()
	if err != nil {
		return o
	}
	switch mode := st.Mode(); {
	case mode.IsRegular():
		o.whole = true
	case mode&os.ModeNamedPipe != 0: // os.Pipe's and the shell's pipes too
		if p := reopenNonblock(f); p != nil {
			if raw, err := p.SyscallConn(); err == nil {
				o.pipe, o.raw = p, raw
			} else {
				p.Close()
			}
		}
	}
	return o
}

// reopenNonblock opens f's pipe anew, write-only and non-blocking, or
// returns nil (a pipe of another user, no /proc): f is then written in
// chunks.
func reopenNonblock(f *os.File) *os.File {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var p *os.File
	_ = raw.Control(func(fd uintptr) {
		path := "/proc/self/fd/" + strconv.Itoa(int(fd))
		nfd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		// Non-blocking: os.NewFile puts it in the poller.
		p = os.NewFile(uintptr(nfd), f.Name())
	})
	return p
}

// write writes a first part of b, as much as may go at once (see
// outWriter), and returns how much went.
func (o *outWriter) write(b []byte) (int, error) {
	switch {
	case o.raw != nil:
		var n int
		var werr error
		err := o.raw.Write(func(fd uintptr) bool {
			n, werr = rawWrite(fd, b)
			// A full pipe: wait in the poller until it has room.
			return !errors.Is(werr, syscall.EAGAIN) && !errors.Is(werr, syscall.EINTR)
		})
		n = max(n, 0)
		if werr != nil {
			return n, werr
		}
		return n, err
	case o.whole:
		return o.w.Write(b)
	default:
		return o.w.Write(b[:min(len(b), consoleChunk)])
	}
}

// direct tells whether tryWrite never blocks.
func (o *outWriter) direct() bool { return o.raw != nil }

// tryWrite writes as much of b as the pipe takes now, maybe nothing,
// without waiting; only where direct.
func (o *outWriter) tryWrite(b []byte) (int, error) {
	var n int
	var werr error
	err := o.raw.Write(func(fd uintptr) bool {
		n, werr = rawWrite(fd, b)
		return !errors.Is(werr, syscall.EINTR)
	})
	n = max(n, 0)
	if errors.Is(werr, syscall.EAGAIN) {
		return n, nil
	}
	if werr != nil {
		return n, werr
	}
	return n, err
}

// close closes what newOutWriter opened; never stdout itself.
func (o *outWriter) close() {
	if o.pipe != nil {
		o.pipe.Close()
	}
}

// rawWrite writes b to the non-blocking fd without telling Go's scheduler
// (a raw system call: it cannot block). A system call the scheduler is told
// of wakes its monitor thread (sysmon) if it sleeps, as it does whenever
// the process was idle, and sysmon then wakes every 20 µs while the
// process works: for a busy service, at hundreds of batches a second,
// that costs more than the writes.
func rawWrite(fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

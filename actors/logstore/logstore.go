// Package logstore keeps every service's output on disk, rotated by size,
// so `sstack logs` can show it while the stack runs and after it stopped.
//
// One file per replica, <dir>/<service>-<replica>.log, rotated to .1, .2 …
// Each line is "<RFC3339Nano time> <o|e> <text>": the time and stream are
// kept so `logs` can merge replicas, filter by --since and show -t.
package logstore

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	// DefaultMaxSize and DefaultKeep bound the disk used by one replica:
	// (DefaultKeep+1) * DefaultMaxSize.
	DefaultMaxSize = 16 << 20
	DefaultKeep    = 3
)

// Writer appends lines to the per-replica files. Not safe for concurrent
// use: the logger actor is its only user.
type Writer struct {
	dir     string
	maxSize int64
	keep    int
	files   map[string]*file
	err     error // the first write error, reported once
}

type file struct {
	f    *os.File
	w    *bufio.Writer
	size int64
}

// NewWriter stores logs in dir, rotating each file at maxSize bytes and
// keeping keep rotated files.
func NewWriter(dir string, maxSize int64, keep int) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Writer{dir: dir, maxSize: maxSize, keep: keep, files: map[string]*file{}}, nil
}

// Path of the current file of a replica.
func Path(dir, name string) string { return filepath.Join(dir, name+".log") }

func (w *Writer) open(name string) (*file, error) {
	if f := w.files[name]; f != nil {
		return f, nil
	}
	path := Path(w.dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	fl := &file{f: f, w: bufio.NewWriterSize(f, 64<<10), size: st.Size()}
	w.files[name] = fl
	return fl, nil
}

func (w *Writer) rotate(name string, fl *file) error {
	if err := fl.w.Flush(); err != nil {
		return err
	}
	fl.f.Close()
	delete(w.files, name)
	base := Path(w.dir, name)
	_ = os.Remove(fmt.Sprintf("%s.%d", base, w.keep))
	for i := w.keep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", base, i), fmt.Sprintf("%s.%d", base, i+1))
	}
	if w.keep > 0 {
		return os.Rename(base, base+".1")
	}
	return os.Remove(base)
}

// Write appends lines of one stream ("stdout" or "stderr") of a replica.
// Errors are remembered, not returned per call: losing the disk copy must
// not stop the console output. Err reports the first one.
func (w *Writer) Write(name, stream string, t time.Time, lines [][]byte) {
	if w == nil {
		return
	}
	fl, err := w.open(name)
	if err != nil {
		w.fail(err)
		return
	}
	tag := []byte(" o ")
	if stream == "stderr" {
		tag = []byte(" e ")
	}
	var ts [64]byte
	stamp := t.UTC().AppendFormat(ts[:0], time.RFC3339Nano)
	for _, line := range lines {
		if fl.size >= w.maxSize {
			if err := w.rotate(name, fl); err != nil {
				w.fail(err)
				return
			}
			if fl, err = w.open(name); err != nil {
				w.fail(err)
				return
			}
		}
		n, _ := fl.w.Write(stamp)
		m, _ := fl.w.Write(tag)
		k, _ := fl.w.Write(line)
		_ = fl.w.WriteByte('\n')
		fl.size += int64(n + m + k + 1)
	}
}

// Flush writes buffered lines to the files.
func (w *Writer) Flush() {
	if w == nil {
		return
	}
	for _, fl := range w.files {
		if err := fl.w.Flush(); err != nil {
			w.fail(err)
		}
	}
}

// Close flushes and closes every file.
func (w *Writer) Close() {
	if w == nil {
		return
	}
	w.Flush()
	for name, fl := range w.files {
		fl.f.Close()
		delete(w.files, name)
	}
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Err is the first error met while writing, if any.
func (w *Writer) Err() error {
	if w == nil {
		return nil
	}
	return w.err
}

// Line is one stored line.
type Line struct {
	Time   time.Time
	Name   string // replica display name, e.g. "web-1"
	Stream string // "stdout" or "stderr"
	Text   []byte
}

// Parse reads one stored line; ok is false for a malformed one.
func Parse(name string, raw []byte) (Line, bool) {
	sp := bytes.IndexByte(raw, ' ')
	if sp < 0 || len(raw) < sp+3 || raw[sp+2] != ' ' {
		return Line{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(raw[:sp]))
	if err != nil {
		return Line{}, false
	}
	stream := "stdout"
	if raw[sp+1] == 'e' {
		stream = "stderr"
	}
	return Line{Time: t, Name: name, Stream: stream, Text: raw[sp+3:]}, true
}

// Names lists the replicas that have logs in dir, sorted.
func Names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadAll returns a replica's stored lines, oldest first, rotated files
// included.
func ReadAll(dir, name string, keep int) ([]Line, error) {
	base := Path(dir, name)
	var paths []string
	for i := keep; i >= 1; i-- {
		paths = append(paths, fmt.Sprintf("%s.%d", base, i))
	}
	paths = append(paths, base)
	var out []Line
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		lines, _, err := ReadFrom(f, name)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, lines...)
	}
	return out, nil
}

// ReadFrom reads whole lines from r and returns them with the number of
// bytes consumed (a trailing partial line is left for the next read).
func ReadFrom(r io.Reader, name string) ([]Line, int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []Line
	var used int64
	for {
		raw, err := br.ReadBytes('\n')
		if err != nil {
			if err == io.EOF {
				return out, used, nil
			}
			return out, used, err
		}
		used += int64(len(raw))
		if l, ok := Parse(name, raw[:len(raw)-1]); ok {
			out = append(out, l)
		}
	}
}

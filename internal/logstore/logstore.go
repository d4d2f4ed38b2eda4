// Package logstore keeps every service's output on disk, rotated by size,
// so `sstack logs` can show it while the stack runs and after it stopped.
//
// One file per replica, <dir>/<service>-<replica>.log, rotated to .1, .2 …;
// a replica shown under another name (compose container_name) has that
// name in <dir>/<service>-<replica>.name.
// A file is a series of batches: a header "<RFC3339Nano time> <o|e> <n>"
// and the n lines that arrived together, each ending with a newline, as
// the logger got them: one write per batch. The time and stream are kept
// so `logs` can merge replicas, filter by --since and show -t; writing
// them once per batch rather than per line halves the cost of keeping logs.
//
// A file format, no actor: the logger actor writes it, `sstack logs`
// reads it, with or without a running stack.
package logstore

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
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
	named   map[string]bool // display names recorded
	err     error           // the first write error, reported once
}

type file struct {
	f    *os.File
	w    *bufio.Writer
	size int64
}

// NewWriter stores logs in dir, rotating each file at maxSize bytes and
// keeping keep rotated files.
func NewWriter(dir string, maxSize int64, keep int) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Writer{dir: dir, maxSize: maxSize, keep: keep, files: map[string]*file{}, named: map[string]bool{}}, nil
}

// Path of the current file of a replica.
func Path(dir, name string) string { return filepath.Join(dir, name+".log") }

func namePath(dir, name string) string { return filepath.Join(dir, name+".name") }

// SetDisplayName records that replica name is shown as display (its
// container_name), once per writer.
func (w *Writer) SetDisplayName(name, display string) {
	if w == nil || display == name || w.named[name] {
		return
	}
	w.named[name] = true
	if err := os.WriteFile(namePath(w.dir, name), []byte(display+"\n"), 0o600); err != nil {
		w.fail(err)
	}
}

// DisplayName is the name replica name is shown as: the one recorded by
// SetDisplayName, else name itself.
func DisplayName(dir, name string) string {
	b, err := os.ReadFile(namePath(dir, name))
	if d := strings.TrimSpace(string(b)); err == nil && d != "" {
		return d
	}
	return name
}

func (w *Writer) open(name string) (*file, error) {
	if f := w.files[name]; f != nil {
		return f, nil
	}
	path := Path(w.dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	fl := &file{f: f, w: bufio.NewWriterSize(f, 256<<10), size: st.Size()}
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

// Write appends count lines of one stream ("stdout" or "stderr") of a
// replica: data is the lines, each ending with a newline. Errors are
// remembered, not returned per call: losing the disk copy must not stop the
// console output. Err reports the first one.
func (w *Writer) Write(name, stream string, t time.Time, data []byte, count int) {
	if w == nil || len(data) == 0 {
		return
	}
	if data[len(data)-1] != '\n' { // not a whole line: stored with a newline
		data = append(data[:len(data):len(data)], '\n')
		count = bytes.Count(data, newline)
	}
	fl, err := w.open(name)
	if err != nil {
		w.fail(err)
		return
	}
	tag := byte('o')
	if stream == "stderr" {
		tag = 'e'
	}
	for len(data) > 0 {
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
		// As many lines as fit before the size limit, at least one: up to
		// the end of the line that reaches it.
		part, n := data, count
		if room := w.maxSize - fl.size; int64(len(data)) > room {
			end := int(room) - 1 + bytes.IndexByte(data[room-1:], '\n') + 1
			part = data[:end]
			n = bytes.Count(part, newline)
			count -= n
		}
		var hdr [96]byte
		h := t.UTC().AppendFormat(hdr[:0], time.RFC3339Nano)
		h = append(h, ' ', tag, ' ')
		h = strconv.AppendInt(h, int64(n), 10)
		h = append(h, '\n')
		k, _ := fl.w.Write(h)
		fl.size += int64(k)
		k, _ = fl.w.Write(part)
		fl.size += int64(k)
		data = data[len(part):]
	}
}

var newline = []byte{'\n'}

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
	Name   string // the replica, e.g. "web-1" (see DisplayName)
	Stream string // "stdout" or "stderr"
	Text   []byte
}

// parseHeader reads a batch header: time, stream and line count.
func parseHeader(raw []byte) (t time.Time, stream string, n int, ok bool) {
	f := bytes.Fields(raw)
	if len(f) != 3 || len(f[1]) != 1 {
		return t, "", 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return t, "", 0, false
	}
	n, err = strconv.Atoi(string(f[2]))
	if err != nil || n < 0 {
		return t, "", 0, false
	}
	stream = "stdout"
	if f[1][0] == 'e' {
		stream = "stderr"
	}
	return t, stream, n, true
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
	return readFiles(append(rotatedPaths(dir, name, keep), Path(dir, name)), name)
}

// ReadRotated returns the lines of a replica's rotated files only, oldest
// first; the current file is read by whoever follows it.
func ReadRotated(dir, name string, keep int) ([]Line, error) {
	return readFiles(rotatedPaths(dir, name, keep), name)
}

func rotatedPaths(dir, name string, keep int) []string {
	var paths []string
	for i := keep; i >= 1; i-- {
		paths = append(paths, fmt.Sprintf("%s.%d", Path(dir, name), i))
	}
	return paths
}

func readFiles(paths []string, name string) ([]Line, error) {
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

// ReadFrom reads whole batches from r and returns their lines with the
// number of bytes consumed; a batch not yet completely written is left for
// the next read. A malformed header ends the read.
func ReadFrom(r io.Reader, name string) ([]Line, int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []Line
	var used int64
	for {
		hdr, err := br.ReadBytes('\n')
		if err != nil {
			return out, used, ignoreEOF(err)
		}
		t, stream, n, ok := parseHeader(hdr[:len(hdr)-1])
		if !ok {
			return out, used, fmt.Errorf("%s: malformed log record at byte %d", name, used)
		}
		size := int64(len(hdr))
		batch := make([]Line, 0, n)
		for i := 0; i < n; i++ {
			raw, err := br.ReadBytes('\n')
			if err != nil {
				return out, used, ignoreEOF(err) // incomplete batch
			}
			size += int64(len(raw))
			batch = append(batch, Line{Time: t, Name: name, Stream: stream, Text: raw[:len(raw)-1]})
		}
		out = append(out, batch...)
		used += size
	}
}

func ignoreEOF(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

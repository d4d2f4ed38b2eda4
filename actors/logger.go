package actors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/internal/api"
	"sstack/internal/logstore"
	"sstack/metrics"
)

// LogFormat selects how service lines are printed.
type LogFormat struct {
	Prefix     bool // "web-1  | " before each line (docker compose's default)
	Color      bool // colour the prefix per service (a terminal without NO_COLOR)
	Timestamps bool // RFC3339 time after the prefix
	JSON       bool // one JSON object per line instead of text
	Project    string
	// Width is the length of the longest display name, to pad prefixes.
	Width int
	// StoreDir, when set, keeps every line on disk for `sstack logs`.
	StoreDir string
	// Attached are the services whose lines the console shows (up
	// --attach, --no-attach, up SERVICE); nil: all. Every line is stored.
	Attached map[string]bool
}

// Printer formats service lines the way `up` and `logs` show them.
type Printer struct {
	format  LogFormat
	colours map[string]string
	next    int
	// The last time formatted and the last JSON head: the lines of a
	// batch, and those `logs` prints from one stored batch, share them.
	lastTime time.Time
	lastText string
	head     jsonHead
}

// jsonHead is a JSON line up to its text, `{"time":...,"line":`, for one
// replica's stream at one time.
type jsonHead struct {
	service string
	replica int
	stream  string
	t       time.Time
	text    []byte
}

// NewPrinter returns a printer for format.
func NewPrinter(format LogFormat) *Printer {
	return &Printer{format: format, colours: map[string]string{}}
}

// docker compose's rotation of prefix colours.
var palette = []string{"36", "33", "32", "35", "34", "96", "93", "92", "95", "94"}

// Prefix is what goes before each line of a replica: "web-1  | "
// (coloured on a terminal) and the timestamp.
func (p *Printer) Prefix(name string, t time.Time) string {
	s := ""
	if p.format.Prefix {
		pad := p.format.Width - len(name)
		if pad < 0 {
			pad = 0
		}
		s = name + strings.Repeat(" ", pad) + " | "
		if p.format.Color {
			c, ok := p.colours[name]
			if !ok {
				c = palette[p.next%len(palette)]
				p.next++
				p.colours[name] = c
			}
			s = "\x1b[" + c + "m" + s + "\x1b[0m"
		}
	}
	if p.format.Timestamps {
		s += p.formatTime(t) + " "
	}
	return s
}

// formatTime formats t as timeFormat, once for a series of lines with the
// same time.
func (p *Printer) formatTime(t time.Time) string {
	if p.lastText == "" || !t.Equal(p.lastTime) {
		p.lastTime, p.lastText = t, t.UTC().Format(timeFormat)
	}
	return p.lastText
}

type jsonLine struct {
	Time    string `json:"time"`
	Project string `json:"project"`
	Service string `json:"service"`
	Replica int    `json:"replica"`
	Stream  string `json:"stream"`
	Line    string `json:"line"`
}

// WriteLines writes lines (without their newline) of one replica's stream
// to w.
func (p *Printer) WriteLines(w *bufio.Writer, src *LogSource, stream string, t time.Time, lines [][]byte) {
	if p.format.JSON {
		for _, line := range lines {
			_, _ = w.Write(p.appendJSON(w.AvailableBuffer(), src, stream, t, line))
		}
		return
	}
	prefix := p.Prefix(src.Name, t)
	for _, line := range lines {
		_, _ = w.WriteString(prefix)
		_, _ = w.Write(line)
		_ = w.WriteByte('\n')
	}
}

// AppendData appends count lines of one replica's stream, formatted, to
// buf. data is the lines, each ending with a newline. Without prefix nor
// timestamps, data is appended as it is.
func (p *Printer) AppendData(buf []byte, src *LogSource, stream string, t time.Time, data []byte, count int) []byte {
	if len(data) == 0 {
		return buf
	}
	var prefix string
	if !p.format.JSON {
		prefix = p.Prefix(src.Name, t)
		if prefix == "" {
			return append(buf, data...)
		}
	}
	if p.format.JSON {
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				i = len(data) // not a whole line: written with a newline all the same
				data = append(data[:i:i], '\n')
			}
			buf = p.appendJSON(buf, src, stream, t, data[:i])
			data = data[i+1:]
		}
		return buf
	}
	return appendPrefixed(buf, prefix, data)
}

// appendPrefixed appends every line of data with prefix before it, and
// a newline after a last line that has none. It is most of the CPU the
// log path spends per line, and most lines are short: a line that ends
// within its first 8 bytes is found and copied as one word, and a prefix
// of up to 16 bytes is copied as two, into room left after the end for
// those whole words; a longer line takes bytes.IndexByte and copy.
func appendPrefixed(buf []byte, prefix string, data []byte) []byte {
	const slack = 16 // the most a word store writes past the end
	lines := bytes.Count(data, newline)
	size := len(data) + lines*len(prefix)
	if data[len(data)-1] != '\n' {
		size += len(prefix) + 1
	}
	n0 := len(buf)
	buf = slices.Grow(buf, size+slack)
	out := buf[n0 : n0+size+slack]
	var p [16]byte
	short := copy(p[:], prefix) == len(prefix)
	p0, p1 := binary.LittleEndian.Uint64(p[:]), binary.LittleEndian.Uint64(p[8:])
	o, i := 0, 0
	for i < len(data) {
		if short {
			binary.LittleEndian.PutUint64(out[o:], p0)
			binary.LittleEndian.PutUint64(out[o+8:], p1)
			o += len(prefix)
		} else {
			o += copy(out[o:], prefix)
		}
		if len(data)-i >= 8 {
			w := binary.LittleEndian.Uint64(data[i:])
			// The lowest byte of w that is '\n' (the classic test for a
			// zero byte, on w XOR newlines; exact for the lowest one).
			x := w ^ 0x0a0a0a0a0a0a0a0a
			if t := (x - 0x0101010101010101) &^ x & 0x8080808080808080; t != 0 {
				binary.LittleEndian.PutUint64(out[o:], w)
				k := bits.TrailingZeros64(t)/8 + 1
				o, i = o+k, i+k
				continue
			}
		}
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 { // not a whole line: written with a newline all the same
			o += copy(out[o:], data[i:])
			out[o] = '\n'
			o++
			break
		}
		o += copy(out[o:], data[i:i+j+1])
		i += j + 1
	}
	return buf[:n0+o]
}

// appendJSON appends line as a JSON object and a newline to buf: the
// fields of jsonLine, as encoding/json writes them.
func (p *Printer) appendJSON(buf []byte, src *LogSource, stream string, t time.Time, line []byte) []byte {
	h := &p.head
	if h.text == nil || h.service != src.Service || h.replica != src.Replica || h.stream != stream || !h.t.Equal(t) {
		enc, _ := json.Marshal(jsonLine{
			Time:    p.formatTime(t),
			Project: p.format.Project,
			Service: src.Service,
			Replica: src.Replica,
			Stream:  stream,
		})
		*h = jsonHead{service: src.Service, replica: src.Replica, stream: stream, t: t,
			text: enc[:len(enc)-len(`""}`)]}
	}
	buf = append(buf, h.text...)
	buf = appendJSONText(buf, line)
	return append(buf, '}', '\n')
}

const hexDigits = "0123456789abcdef"

// appendJSONText appends line as a JSON string, as json.Marshal writes
// the string escapeInvalid makes of it: HTML characters, U+2028 and
// U+2029 escaped, and invalid UTF-8 bytes spelled \xNN (with the
// backslash escaped). TestJSONTextAsEncodingJSON holds it to that.
func appendJSONText(buf, line []byte) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(line); {
		b := line[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			buf = append(buf, line[start:i]...)
			switch b {
			case '"', '\\':
				buf = append(buf, '\\', b)
			case '\b':
				buf = append(buf, '\\', 'b')
			case '\f':
				buf = append(buf, '\\', 'f')
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(line[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, line[start:i]...)
			buf = append(buf, '\\', '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, line[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	buf = append(buf, line[start:]...)
	return append(buf, '"')
}

// timeFormat is RFC 3339 with a fixed nine-digit fraction, as docker
// prints -t timestamps, so prefixes keep one width.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Key names the replica's logs on disk: SERVICE-N whatever its display
// name, so that `sstack logs SERVICE` and --index find them.
func (s *LogSource) Key() string {
	if s.Replica == 0 {
		return s.Name
	}
	return s.Service + "-" + strconv.Itoa(s.Replica)
}

// SourceFromName parses a log store name "web-1" (LogSource.Key) back into
// a LogSource.
func SourceFromName(name string) *LogSource {
	src := &LogSource{Service: name, Name: name}
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if r, err := strconv.Atoi(name[i+1:]); err == nil {
			src.Service, src.Replica = name[:i], r
		}
	}
	return src
}

// Logger keeps every service line on disk and hands it to the console,
// the only writer of service output (stdout) and of sstack's status lines
// (stderr), so lines never interleave mid-way. It writes the store first
// and never blocks on the console: a reader of stdout that stops reading
// slows the services while the stack runs, but cannot keep the store,
// the status lines or the teardown waiting.
type Logger struct {
	printer *Printer
	console *console
	metrics *metrics.Metrics
	store   *logstore.Writer
	warned  bool
	// panicked: an internal error was reported (once).
	panicked bool
	// root and self, once started, to send the logger flushStore; without
	// them (a Logger used directly) every batch is flushed at once.
	root *actor.RootContext
	self *actor.PID
	// flushAt: a flushStore is on its way (see storeFlushDelay); flushed:
	// when the store was last flushed.
	flushAt *time.Timer
	flushed time.Time
}

// storeFlushDelay: the store writes its files at most once per this
// long: a batch that comes later is written at once (a quiet service's
// line is on disk before the console shows it), one that comes sooner
// waits for the end of that time, with those after it. Each write to a
// file on ext4 updates its times in the journal, which cost a busy service
// about as much as formatting its lines. `logs -f` reads every 200 ms;
// FlushLogs and the logger's stop write everything at once.
const storeFlushDelay = 20 * time.Millisecond

// newLogger returns the props of a logger writing to console.
func newLogger(format LogFormat, c *console, m *metrics.Metrics) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		l := &Logger{
			printer: NewPrinter(format),
			console: c,
			metrics: m,
		}
		if format.StoreDir != "" {
			store, err := logstore.NewWriter(format.StoreDir, logstore.DefaultMaxSize, logstore.DefaultKeep)
			if err != nil {
				c.statusLine(fmt.Sprintf("sstack: logs will not be kept on disk: %v", err))
			}
			l.store = store
		}
		return l
	})
}

func (l *Logger) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		l.root, l.self = ctx.ActorSystem().Root, ctx.Self()
	case *LogBatch:
		l.writeBatch(msg)
	case *flushStore:
		l.flushAt = nil
		l.flushStore()
	case *api.Event:
		// The console's view of an event: its one status line.
		if line := msg.Line(); line != "" {
			l.console.statusLine(line)
		}
	case *FlushLogs:
		l.flushStore()
		if sender := ctx.Sender(); sender != nil {
			root := ctx.ActorSystem().Root
			l.console.afterStatus(func() { root.Send(sender, &FlushLogs{}) })
		}
	case *actor.Stopping:
		if l.flushAt != nil {
			l.flushAt.Stop()
		}
		l.store.Close()
		l.checkStore()
	}
}

func (l *Logger) writeBatch(b *LogBatch) {
	stream := b.Stream.String()
	l.record(b, stream)
	if a := l.printer.format.Attached; a != nil && !a[b.Source.Service] {
		release(b.Done)
		return
	}
	l.console.batch(l.printer, b, stream)
}

// record counts and stores a batch. A panic here (a bug) would stop the
// logger with the batch never released and its pump, and so up's end,
// blocked for good: it is reported once and the lines still reach the
// console.
func (l *Logger) record(b *LogBatch, stream string) {
	defer func() {
		if r := recover(); r != nil && !l.panicked {
			l.panicked = true
			l.console.statusLine(fmt.Sprintf("sstack: internal error while recording %s's logs (please report it; the console output goes on): %v\n%s", b.Source.Name, r, debug.Stack()))
		}
	}()
	l.metrics.LogLines(b.Source.Service, b.Source.Replica, stream, b.Count)
	key := b.Source.Key()
	l.store.SetDisplayName(key, b.Source.Name)
	l.store.Write(key, stream, b.Time, b.Data, b.Count)
	switch wait := storeFlushDelay - time.Since(l.flushed); {
	case l.flushAt != nil: // the lines go with those before them
	case l.root == nil || wait <= 0:
		l.flushStore()
	default:
		root, self := l.root, l.self
		l.flushAt = time.AfterFunc(wait, func() { root.Send(self, &flushStore{}) })
	}
}

// flushStore writes the store's buffered lines to its files.
func (l *Logger) flushStore() {
	l.store.Flush()
	l.flushed = time.Now()
	l.checkStore()
}

// checkStore reports, once, that keeping logs on disk failed.
func (l *Logger) checkStore() {
	if err := l.store.Err(); err != nil && !l.warned {
		l.warned = true
		l.console.statusLine(fmt.Sprintf("sstack: keeping logs on disk failed, the console output goes on: %v", err))
	}
}

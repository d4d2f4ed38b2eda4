package actors

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/actors/logstore"
	"sstack/internal/api"
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
}

// Printer formats service lines the way `up` and `logs` show them.
type Printer struct {
	format  LogFormat
	colours map[string]string
	next    int
	buf     []byte // WriteData's output, reused
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
		s += t.UTC().Format(timeFormat) + " "
	}
	return s
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

// WriteData writes count lines of one replica's stream to w in one write.
// data is the lines, each ending with a newline. Without prefix nor
// timestamps, data is written as it is.
func (p *Printer) WriteData(w io.Writer, src *LogSource, stream string, t time.Time, data []byte, count int) {
	if len(data) == 0 {
		return
	}
	var prefix string
	if !p.format.JSON {
		prefix = p.Prefix(src.Name, t)
		if prefix == "" {
			_, _ = w.Write(data)
			return
		}
	}
	buf := p.buf[:0]
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
	} else {
		buf = slices.Grow(buf, len(data)+count*len(prefix))
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n') + 1
			if i == 0 {
				i = len(data)
				data = append(data[:i:i], '\n')
				i++
			}
			buf = append(buf, prefix...)
			buf = append(buf, data[:i]...)
			data = data[i:]
		}
	}
	_, _ = w.Write(buf)
	if cap(buf) > 1<<20 {
		buf = nil // give back a long line's memory
	}
	p.buf = buf
}

// appendJSON appends line as a JSON object and a newline to buf.
func (p *Printer) appendJSON(buf []byte, src *LogSource, stream string, t time.Time, line []byte) []byte {
	text := string(line)
	if !utf8.ValidString(text) {
		text = escapeInvalid(line)
	}
	enc, _ := json.Marshal(jsonLine{
		Time:    t.UTC().Format(timeFormat),
		Project: p.format.Project,
		Service: src.Service,
		Replica: src.Replica,
		Stream:  stream,
		Line:    text,
	})
	buf = append(buf, enc...)
	return append(buf, '\n')
}

// escapeInvalid spells invalid UTF-8 bytes as \xNN: encoding/json would
// replace them with U+FFFD and lose what they were.
func escapeInvalid(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&sb, "\\x%02x", b[0])
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
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

// Logger is the only writer of service output (stdout) and of sstack's
// status lines (stderr), so lines never interleave mid-way. It also keeps
// every line on disk.
type Logger struct {
	printer *Printer
	out     io.Writer // written once per batch: no buffer needed
	status  io.Writer
	metrics *metrics.Metrics
	store   *logstore.Writer
	warned  bool
}

// NewLogger returns the props of a logger writing service output to out and
// status lines to status.
func NewLogger(format LogFormat, out, status io.Writer, m *metrics.Metrics) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		l := &Logger{
			printer: NewPrinter(format),
			out:     out,
			status:  status,
			metrics: m,
		}
		if format.StoreDir != "" {
			store, err := logstore.NewWriter(format.StoreDir, logstore.DefaultMaxSize, logstore.DefaultKeep)
			if err != nil {
				fmt.Fprintf(status, "sstack: logs will not be kept on disk: %v\n", err)
			}
			l.store = store
		}
		return l
	})
}

func (l *Logger) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *LogBatch:
		l.writeBatch(msg)
	case *api.Event:
		// The console's view of an event: its one status line.
		if line := msg.Line(); line != "" {
			_, _ = io.WriteString(l.status, line+"\n")
		}
	case *FlushLogs:
		l.store.Flush()
		if ctx.Sender() != nil {
			ctx.Respond(&FlushLogs{})
		}
	case *actor.Stopping:
		l.store.Close()
	}
}

func (l *Logger) writeBatch(b *LogBatch) {
	defer func() {
		if b.Done != nil {
			b.Done <- struct{}{}
		}
	}()
	stream := b.Stream.String()
	l.metrics.LogLines(b.Source.Service, b.Source.Replica, stream, b.Count)
	l.printer.WriteData(l.out, b.Source, stream, b.Time, b.Data, b.Count)
	key := b.Source.Key()
	l.store.SetDisplayName(key, b.Source.Name)
	l.store.Write(key, stream, b.Time, b.Data, b.Count)
	l.store.Flush()
	if err := l.store.Err(); err != nil && !l.warned {
		l.warned = true
		fmt.Fprintf(l.status, "sstack: keeping logs on disk failed, the console output goes on: %v\n", err)
	}
}

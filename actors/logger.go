package actors

import (
	"bufio"
	"encoding/json"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/metrics"
)

// LogFormat selects how the logger prints service lines.
type LogFormat struct {
	Prefix     bool // "web-1  | " before each line (docker compose's default)
	Color      bool // colour the prefix per service (a terminal without NO_COLOR)
	Timestamps bool // RFC3339 time after the prefix
	JSON       bool // one JSON object per line instead of text
	Project    string
	// Width is the length of the longest display name, to pad prefixes.
	Width int
}

// Logger is the only writer of service output (stdout) and of sstack's
// status lines (stderr), so lines never interleave mid-way.
type Logger struct {
	format  LogFormat
	out     *bufio.Writer
	status  io.Writer
	metrics *metrics.Metrics
	colours map[string]string
	next    int
}

// docker compose's rotation of prefix colours.
var palette = []string{"36", "33", "32", "35", "34", "96", "93", "92", "95", "94"}

// NewLogger returns the props of a logger writing service output to out and
// status lines to status.
func NewLogger(format LogFormat, out, status io.Writer, m *metrics.Metrics) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &Logger{
			format:  format,
			out:     bufio.NewWriterSize(out, 256<<10),
			status:  status,
			metrics: m,
			colours: map[string]string{},
		}
	})
}

func (l *Logger) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *LogBatch:
		l.writeBatch(msg)
	case *StatusLine:
		_ = l.out.Flush()
		_, _ = io.WriteString(l.status, msg.Text+"\n")
	case *FlushLogs:
		_ = l.out.Flush()
		if ctx.Sender() != nil {
			ctx.Respond(&FlushLogs{})
		}
	case *actor.Stopping:
		_ = l.out.Flush()
	}
}

func (l *Logger) writeBatch(b *LogBatch) {
	defer func() {
		if b.Done != nil {
			b.Done <- struct{}{}
		}
	}()
	l.metrics.LogLines(b.Source.Service, b.Source.Replica, b.Stream.String(), len(b.Lines))
	if l.format.JSON {
		for _, line := range b.Lines {
			l.writeJSON(b, line)
		}
		_ = l.out.Flush()
		return
	}
	prefix := l.prefix(b)
	for _, line := range b.Lines {
		_, _ = l.out.WriteString(prefix)
		_, _ = l.out.Write(line)
		_ = l.out.WriteByte('\n')
	}
	_ = l.out.Flush()
}

// prefix builds "web-1  | " (coloured on a terminal) plus the timestamp.
func (l *Logger) prefix(b *LogBatch) string {
	p := ""
	if l.format.Prefix {
		name := b.Source.Name
		pad := l.format.Width - len(name)
		if pad < 0 {
			pad = 0
		}
		p = name + spaces(pad) + " | "
		if l.format.Color {
			c, ok := l.colours[name]
			if !ok {
				c = palette[l.next%len(palette)]
				l.next++
				l.colours[name] = c
			}
			p = "\x1b[" + c + "m" + p + "\x1b[0m"
		}
	}
	if l.format.Timestamps {
		p += b.Time.UTC().Format(time.RFC3339Nano) + " "
	}
	return p
}

func spaces(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = ' '
	}
	return string(b)
}

type jsonLine struct {
	Time    string `json:"time"`
	Project string `json:"project"`
	Service string `json:"service"`
	Replica int    `json:"replica"`
	Stream  string `json:"stream"`
	Line    string `json:"line"`
}

func (l *Logger) writeJSON(b *LogBatch, line []byte) {
	text := string(line)
	if !utf8.ValidString(text) {
		// encoding/json would replace invalid bytes silently; keep them
		// visible as a quoted escape instead of losing them.
		text = strconv.Quote(text)
	}
	enc, _ := json.Marshal(jsonLine{
		Time:    b.Time.UTC().Format(time.RFC3339Nano),
		Project: l.format.Project,
		Service: b.Source.Service,
		Replica: b.Source.Replica,
		Stream:  b.Stream.String(),
		Line:    text,
	})
	_, _ = l.out.Write(enc)
	_ = l.out.WriteByte('\n')
}

// Package logformat formats service lines as up and logs print them
// (docker compose's "web-1  | " prefix, colours, -t timestamps, JSON
// lines), and names the replica a line comes from. The logger actor uses
// it for the console, the CLI for `sstack logs`; it knows nothing of
// actors or of the log store's files.
package logformat

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Source is the replica a line comes from.
type Source struct {
	Service string
	Replica int
	Name    string // display name, e.g. "web-1", or its container_name
}

// Format selects how service lines are printed.
type Format struct {
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
	format  Format
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
func NewPrinter(format Format) *Printer {
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
func (p *Printer) WriteLines(w *bufio.Writer, src *Source, stream string, t time.Time, lines [][]byte) {
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
func (p *Printer) AppendData(buf []byte, src *Source, stream string, t time.Time, data []byte, count int) []byte {
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
// log path spends per line, and most lines are short: runs of lines that
// end within their first 8 bytes, with a prefix of up to 16 bytes, take
// shortLines; a longer line takes bytes.IndexByte and copy.
func appendPrefixed(buf []byte, prefix string, data []byte) []byte {
	lines := bytes.Count(data, newline)
	size := len(data) + lines*len(prefix)
	if data[len(data)-1] != '\n' {
		size += len(prefix) + 1
	}
	n0 := len(buf)
	buf = slices.Grow(buf, size+wordSlack)
	out := buf[n0 : n0+size+wordSlack]
	var p [16]byte
	short := copy(p[:], prefix) == len(prefix)
	p0, p1 := binary.LittleEndian.Uint64(p[:]), binary.LittleEndian.Uint64(p[8:])
	o, i := 0, 0
	for i < len(data) {
		if short {
			di, do := shortLines(out[o:], data[i:], p0, p1, len(prefix))
			i, o = i+di, o+do
			if i == len(data) {
				break
			}
		}
		o += copy(out[o:], prefix)
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

// wordSlack: room after the end of appendPrefixed's output, the most
// that shortLines's whole-word stores write past it.
const wordSlack = 16

// shortLines writes, from the start of data, the lines that end within
// their first 8 bytes, each after the prefix (the 16 bytes p0, p1, of
// which the first n count), as whole words, and returns how much of data
// it took and of out it wrote. It stops at the first longer line, with
// less than 8 bytes of data left, or near the end of out. A loop of its
// own, with no call in it and its slices cut as it goes, so that less of
// its state is kept on the stack than in appendPrefixed's loop, which
// calls IndexByte and copy: 7.3-8.1 ns per 8-byte line against 9.4-10.7
// (measured 2026-12-07).
func shortLines(out, data []byte, p0, p1 uint64, n int) (i, o int) {
	in, room := len(data), len(out)
	for len(data) >= 8 && len(out) >= 16+8 && n <= 16 {
		w := binary.LittleEndian.Uint64(data)
		// The lowest byte of w that is '\n' (the classic test for a
		// zero byte, on w XOR newlines; exact for the lowest one).
		x := w ^ 0x0a0a0a0a0a0a0a0a
		t := (x - 0x0101010101010101) &^ x & 0x8080808080808080
		if t == 0 {
			break
		}
		binary.LittleEndian.PutUint64(out, p0)
		binary.LittleEndian.PutUint64(out[8:], p1)
		binary.LittleEndian.PutUint64(out[n:], w)
		k := int(uint(bits.TrailingZeros64(t))/8 + 1)
		data, out = data[k:], out[n+k:]
	}
	return in - len(data), room - len(out)
}

// appendJSON appends line as a JSON object and a newline to buf: the
// fields of jsonLine, as encoding/json writes them.
func (p *Printer) appendJSON(buf []byte, src *Source, stream string, t time.Time, line []byte) []byte {
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

var newline = []byte{'\n'}

// timeFormat is RFC 3339 with a fixed nine-digit fraction, as docker
// prints -t timestamps, so prefixes keep one width.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Key names the replica's logs on disk: SERVICE-N whatever its display
// name, so that `sstack logs SERVICE` and --index find them.
func (s *Source) Key() string {
	if s.Replica == 0 {
		return s.Name
	}
	return s.Service + "-" + strconv.Itoa(s.Replica)
}

// SourceFromName parses a log store name "web-1" (Source.Key) back into
// a Source.
func SourceFromName(name string) *Source {
	src := &Source{Service: name, Name: name}
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if r, err := strconv.Atoi(name[i+1:]); err == nil {
			src.Service, src.Replica = name[:i], r
		}
	}
	return src
}

package logformat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// escapeInvalid spells invalid UTF-8 bytes as \xNN, as the JSON lines do:
// encoding/json would replace them with U+FFFD and lose what they were.
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

// referenceJSON is a JSON line as encoding/json writes it, which
// Printer.appendJSON must write byte for byte.
func referenceJSON(project string, src *Source, stream string, t time.Time, line []byte) string {
	text := string(line)
	if !utf8.ValidString(text) {
		text = escapeInvalid(line)
	}
	enc, _ := json.Marshal(jsonLine{
		Time:    t.UTC().Format(timeFormat),
		Project: project,
		Service: src.Service,
		Replica: src.Replica,
		Stream:  stream,
		Line:    text,
	})
	return string(enc) + "\n"
}

// TestJSONTextAsEncodingJSON: the JSON lines are written without
// encoding/json (one Marshal per line cost more than the rest of the log
// path), and must not differ from what it writes: every byte, every pair
// of bytes, the runes it escapes, and random lines.
func TestJSONTextAsEncodingJSON(t *testing.T) {
	var lines [][]byte
	for a := 0; a < 256; a++ {
		lines = append(lines, []byte{byte(a)}, []byte{'x', byte(a), 'y'})
		for b := 0; b < 256; b++ {
			lines = append(lines, []byte{byte(a), byte(b)})
		}
	}
	for _, s := range []string{"", "plain text", "\u2028\u2029", "a\u2028b", "\ufffd", "é, 日本, 🙂", "<a href=\"x\">&amp;</a>",
		"\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x80", "trailing \xe2", `back\slash \x41`, "\x7f\x1b[31mred"} {
		lines = append(lines, []byte(s))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		lines = append(lines, b)
	}
	p := NewPrinter(Format{JSON: true, Project: "proj"})
	src := &Source{Service: "web", Replica: 2, Name: "web-2"}
	at := time.Date(2026, 12, 7, 5, 6, 7, 80, time.FixedZone("X", 3600))
	for _, line := range lines {
		if got, want := string(p.appendJSON(nil, src, "stderr", at, line)), referenceJSON("proj", src, "stderr", at, line); got != want {
			t.Fatalf("line %q:\n got %s\nwant %s", line, got, want)
		}
	}
	// The head of a line follows the replica, the stream and the time.
	other := &Source{Service: "db", Replica: 1, Name: "db-1"}
	for i, c := range []struct {
		src    *Source
		stream string
		t      time.Time
	}{{src, "stdout", at}, {other, "stdout", at}, {other, "stdout", at.Add(time.Nanosecond)}, {src, "stdout", at}, {src, "stderr", at}} {
		if got, want := string(p.appendJSON(nil, c.src, c.stream, c.t, []byte("x"))), referenceJSON("proj", c.src, c.stream, c.t, []byte("x")); got != want {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestAppendPrefixed holds appendPrefixed's word-at-a-time copies to the
// plain way: every line with the prefix before it, a last line without
// newline given one, and what was in buf kept.
func TestAppendPrefixed(t *testing.T) {
	plain := func(buf []byte, prefix string, data []byte) []byte {
		for _, line := range bytes.SplitAfter(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			buf = append(append(buf, prefix...), line...)
			if line[len(line)-1] != '\n' {
				buf = append(buf, '\n')
			}
		}
		return buf
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var random []byte
	for range 2000 {
		for range rng.IntN(40) {
			random = append(random, byte('a'+rng.IntN(26)))
		}
		random = append(random, '\n')
	}
	datas := []string{"x", "\n", "\n\n\n", "a\nb", "1234567\n", "12345678\n", "1234567\n12345678\n123456789\n",
		"0123456789abcdef\n", "01234567\n89abcdef", "\n0123456789abcdef", "0123456789abcdefghijklmnopq\nab", string(random)}
	prefixes := []string{"x | ", "web-1  | ", "0123456789abcdef", "0123456789abcdefg", "a-very-long-service-name-12 | ", "\x1b[36mweb-1 | \x1b[0m2026-12-07T12:00:00.000000000Z "}
	for _, prefix := range prefixes {
		for _, data := range datas {
			for _, before := range []string{"", "earlier\n"} {
				want := plain([]byte(before), prefix, []byte(data))
				got := appendPrefixed([]byte(before), prefix, []byte(data))
				if !bytes.Equal(got, want) {
					t.Errorf("prefix %q, data %.40q after %q:\n got %.80q\nwant %.80q", prefix, data, before, got, want)
				}
			}
		}
	}
}

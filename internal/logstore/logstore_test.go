package logstore

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"
)

// lines returns n numbered lines, each ending with a newline, and n.
func lines(prefix string, n int) ([]byte, int) {
	var out []byte
	for i := 0; i < n; i++ {
		out = fmt.Appendf(out, "%s %d\n", prefix, i)
	}
	return out, n
}

func TestWriteReadRotate(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, 300, 2)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 123, time.UTC)
	data100, count100 := lines("out", 100)
	w.Write("web-1", "stdout", t0, data100, count100)
	w.Write("web-1", "stderr", t0.Add(time.Second), []byte("err # 3 not a header\n\n"), 2)
	w.Close()
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{Path(dir, "web-1"), Path(dir, "web-1") + ".1", Path(dir, "web-1") + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("rotation: %v", err)
		}
		if st.Size() > 300+64 {
			t.Errorf("%s is %d bytes, limit 300 (+ one line)", p, st.Size())
		}
	}
	if _, err := os.Stat(Path(dir, "web-1") + ".3"); err == nil {
		t.Error("more rotated files kept than asked")
	}
	got, err := ReadAll(dir, "web-1", 2)
	if err != nil {
		t.Fatal(err)
	}
	// The oldest lines were rotated away; what is left is the newest part,
	// in order, ending with the stderr batch.
	if len(got) < 10 {
		t.Fatalf("only %d lines kept", len(got))
	}
	last := got[len(got)-2:]
	if string(last[0].Text) != "err # 3 not a header" || last[0].Stream != "stderr" || len(last[1].Text) != 0 {
		t.Errorf("last lines %+v", last)
	}
	if !last[0].Time.Equal(t0.Add(time.Second)) {
		t.Errorf("time %v", last[0].Time)
	}
	first := got[0]
	var n int
	if _, err := fmt.Sscanf(string(first.Text), "out %d", &n); err != nil {
		t.Fatalf("first kept line %q", first.Text)
	}
	for i, l := range got[:len(got)-2] {
		if want := fmt.Sprintf("out %d", n+i); string(l.Text) != want || l.Stream != "stdout" || !l.Time.Equal(t0) {
			t.Fatalf("line %d = %q %s, want %q", i, l.Text, l.Stream, want)
		}
	}
	if n+len(got)-2 != 100 {
		t.Errorf("lines lost at the end: last stdout line is %d", n+len(got)-3)
	}
}

func TestReadFromLeavesIncompleteBatch(t *testing.T) {
	data := []byte("2026-11-26T10:00:00Z o 2\na\nb\n2026-11-26T10:00:01Z e 2\nc\n")
	got, used, err := ReadFrom(bytes.NewReader(data), "x-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[1].Text) != "b" || used != int64(len("2026-11-26T10:00:00Z o 2\na\nb\n")) {
		t.Errorf("got %d lines, used %d", len(got), used)
	}
	if _, _, err := ReadFrom(bytes.NewReader([]byte("garbage\n")), "x-1"); err == nil {
		t.Error("malformed header accepted")
	}
}

func TestDisplayName(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, DefaultMaxSize, DefaultKeep)
	if err != nil {
		t.Fatal(err)
	}
	w.SetDisplayName("db-1", "pg")
	w.SetDisplayName("web-1", "web-1")
	w.Write("db-1", "stdout", time.Now(), []byte("x\n"), 1)
	w.Close()
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	if got := DisplayName(dir, "db-1"); got != "pg" {
		t.Errorf("DisplayName(db-1) = %q, want pg", got)
	}
	if got := DisplayName(dir, "web-1"); got != "web-1" {
		t.Errorf("DisplayName(web-1) = %q", got)
	}
	if names, _ := Names(dir); len(names) != 1 || names[0] != "db-1" {
		t.Errorf("Names = %q, want [db-1]", names)
	}
}

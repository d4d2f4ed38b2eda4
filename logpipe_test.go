package main

// The log pipeline of up: every line of every service reaches stdout
// whole and in order, however fast and however many services print, with
// a slow or lagging reader, with long lines, odd bytes and a last line
// without newline, without holding a line behind a partial one and with
// bounded memory; and the documented log formats (text prefix, -t,
// --no-log-prefix, colours on a terminal, --log-format json).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineChecker verifies numbered lines "PREFIX N": per key, N must follow
// on from the previous line of that key without gap or repeat.
type lineChecker struct {
	t      *testing.T
	next   map[string]int
	errors int
}

func (c *lineChecker) see(key string, n int, line string) {
	if want := c.next[key]; n != want {
		c.errors++
		if c.errors <= 5 {
			c.t.Errorf("%s: got %d, want %d (line %q)", key, n, want, line)
		}
		c.next[key] = n + 1
		return
	}
	c.next[key]++
}

// One service printing a million numbered lines as fast as it can gives
// exactly a million whole lines, in order.
func TestLogPipeMillionLinesInOrder(t *testing.T) {
	p := newProject(t, oneService("svc", `["seq", "1", "1000000"]`))
	start := time.Now()
	code, out, errs := p.run()
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, errs)
	}
	lines := strings.Split(out, "\n")
	if last := lines[len(lines)-1]; last != "" {
		t.Errorf("output does not end with a newline: %q", last)
	}
	lines = lines[:len(lines)-1]
	if len(lines) != 1_000_000 {
		t.Errorf("%d lines, want 1000000", len(lines))
	}
	bad := 0
	for i, l := range lines {
		if want := "svc-1 | " + strconv.Itoa(i+1); l != want {
			if bad++; bad <= 5 {
				t.Errorf("line %d = %q, want %q", i, l, want)
			}
		}
	}
	t.Logf("1,000,000 lines through the race-built sstack in %s (whole up, instance start and stop included)", took.Round(time.Millisecond))
	assertNothingLeft(t, p.name)
}

// Three services each flood stdout and stderr at once; every stream of
// every service arrives complete and in order, and no line is torn or
// mixed with another.
func TestLogPipeConcurrentFloodsWholeAndInOrder(t *testing.T) {
	const n = 300_000
	cmd := fmt.Sprintf(`["sh", "-c", "seq 1 %d & seq 1000001 %d >&2; wait"]`, n, 1_000_000+n)
	p := newProject(t, `
services:
  alpha:
    image: busybox
    command: `+cmd+`
  beta:
    image: busybox
    command: `+cmd+`
  gamma:
    image: busybox
    command: `+cmd+`
`)
	start := time.Now()
	code, out, errs := p.run()
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, errs)
	}
	c := &lineChecker{t: t, next: map[string]int{}}
	for _, svc := range []string{"alpha-1", "beta-1", "gamma-1"} {
		c.next[svc+" stdout"] = 1
		c.next[svc+" stderr"] = 1_000_001
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	prefixes := []string{"alpha-1 | ", "beta-1  | ", "gamma-1 | "} // padded to the longest name
	for _, l := range lines {
		var num int
		err := errors.New("no prefix")
		name := ""
		for _, pre := range prefixes {
			if strings.HasPrefix(l, pre) {
				name = strings.TrimRight(pre[:7], " ")
				num, err = strconv.Atoi(l[len(pre):])
				break
			}
		}
		if err != nil {
			if c.errors++; c.errors <= 5 {
				t.Errorf("torn or foreign line %q", l)
			}
			continue
		}
		stream := "stdout"
		if num > 1_000_000 {
			stream = "stderr"
		}
		c.see(name+" "+stream, num, l)
	}
	for key, next := range c.next {
		want := n + 1
		if strings.HasSuffix(key, "stderr") {
			want = 1_000_001 + n
		}
		if next != want {
			t.Errorf("%s ended at %d, want %d", key, next-1, want-1)
		}
	}
	if len(lines) != 6*n {
		t.Errorf("%d lines, want %d", len(lines), 6*n)
	}
	t.Logf("%d lines from 3 services x 2 streams in %s", len(lines), took.Round(time.Millisecond))
	assertNothingLeft(t, p.name)
}

// A 1 MiB line arrives whole, bytes that are not UTF-8 are passed through
// in text mode and give valid JSON lines with --log-format json, and a
// last line without newline is flushed.
func TestLogPipeLongLineAndOddBytesPassThrough(t *testing.T) {
	p := newProject(t, `
services:
  odd:
    image: busybox
    command:
      - sh
      - -c
      - |
        head -c 1048576 /dev/zero | tr '\0' 'x'; echo
        printf 'bad \xff\xfe bytes\n'
        echo to-stderr >&2
        printf 'no newline at the end'
`)
	long := strings.Repeat("x", 1<<20)

	code, out, errs := p.run()
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, errs)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		got[l] = true
	}
	for _, want := range []string{"odd-1 | " + long, "odd-1 | bad \xff\xfe bytes", "odd-1 | to-stderr", "odd-1 | no newline at the end"} {
		if !got[want] {
			show := want
			if len(show) > 40 {
				show = show[:40] + "…"
			}
			t.Errorf("text output lacks the whole line %q", show)
		}
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 4 {
		t.Errorf("text output has %d lines, want 4 newline-terminated lines", strings.Count(out, "\n"))
	}

	code, out, errs = p.run("--log-format", "json")
	if code != 0 {
		t.Fatalf("json: exit code %d:\n%s", code, errs)
	}
	byLine := map[string]map[string]any{}
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		obj := checkJSONLine(t, i, l, p.name)
		if obj == nil {
			continue
		}
		if obj["service"] != "odd" || obj["replica"] != float64(1) {
			t.Errorf("json line %d: service %v replica %v, want odd 1", i, obj["service"], obj["replica"])
		}
		if s, ok := obj["line"].(string); ok {
			byLine[s] = obj
		}
	}
	if len(byLine) != 4 {
		t.Errorf("%d distinct json lines, want 4", len(byLine))
	}
	for text, stream := range map[string]string{long: "stdout", "to-stderr": "stderr", "no newline at the end": "stdout"} {
		obj := byLine[text]
		if obj == nil {
			t.Errorf("json lacks the line %.40q", text)
		} else if obj["stream"] != stream {
			t.Errorf("line %.40q: stream %v, want %s", text, obj["stream"], stream)
		}
	}
	// Invalid bytes are spelled \xNN rather than replaced with U+FFFD.
	_, found := byLine[`bad \xff\xfe bytes`]
	if !found {
		t.Errorf("json lacks the line with invalid bytes")
	}
	assertNothingLeft(t, p.name)
}

// A whole line written together with the start of the next one (a prompt,
// a buffered writer flushing mid-line) shows at once, not when the next
// line is completed; the partial line shows when the process ends.
func TestLogPipeLineNotHeldBehindPartialLine(t *testing.T) {
	p := newProject(t, oneService("svc", `["sh", "-c", "trap 'exit 0' TERM; printf 'ready\\nprompt> '; while true; do sleep 0.1; done"]`))
	r := p.up()
	r.waitFor(t, r.stdout.String, "svc-1 | ready\n", 20*time.Second)
	r.ctrlC(t)
	if out := r.stdout.String(); out != "svc-1 | ready\nsvc-1 | prompt> \n" {
		t.Errorf("stdout %q, want the line and then the partial line", out)
	}
	assertNothingLeft(t, p.name)
}

// checkJSONLine decodes one --log-format json line and checks it has
// exactly the documented fields with their types.
func checkJSONLine(t *testing.T, i int, l, project string) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(l), &obj); err != nil {
		t.Errorf("json line %d is not JSON: %v: %.80q", i, err, l)
		return nil
	}
	keys := []string{"time", "project", "service", "replica", "stream", "line"}
	if len(obj) != len(keys) {
		t.Errorf("json line %d has fields %v, want exactly %v", i, obj, keys)
	}
	for _, k := range keys {
		if _, ok := obj[k]; !ok {
			t.Errorf("json line %d lacks %q: %.80q", i, k, l)
		}
	}
	if ts, _ := obj["time"].(string); true {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("json line %d: time %q is not RFC 3339: %v", i, ts, err)
		}
	}
	if obj["project"] != project {
		t.Errorf("json line %d: project %v, want %s", i, obj["project"], project)
	}
	if _, ok := obj["replica"].(float64); !ok {
		t.Errorf("json line %d: replica %v is not a number", i, obj["replica"])
	}
	if s := obj["stream"]; s != "stdout" && s != "stderr" {
		t.Errorf("json line %d: stream %v", i, s)
	}
	return obj
}

// buildPlainSstack builds sstack without -race, whose memory use is the
// one users get (the race detector multiplies it).
func buildPlainSstack(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sstack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// procStatusKB reads a "Name:   N kB" field of /proc/PID/status.
func procStatusKB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				return strconv.Atoi(f[1])
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// While nobody reads sstack's stdout, the flooding service is held back by
// its pipe (sstack buffers a few batches, not the output); then a slow
// reader gets every line, in order, and sstack's peak RSS stays small
// throughout.
func TestLogPipeMemoryBoundedUnderSlowReader(t *testing.T) {
	bin := buildPlainSstack(t)
	p := newProject(t, oneService("svc", `["seq", "1", "1000000"]`))
	addr := freeAddr(t)
	r, pr := upPiped(t, p, bin, "--metrics-addr", addr)
	pid := r.cmd.Process.Pid
	var peakRSS, peakHWM int
	var peakMu sync.Mutex
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			rss, err1 := procStatusKB(pid, "VmRSS")
			hwm, err2 := procStatusKB(pid, "VmHWM")
			if err1 != nil || err2 != nil {
				return // exited (a zombie has no Vm* lines)
			}
			peakMu.Lock()
			peakRSS, peakHWM = max(peakRSS, rss), max(peakHWM, hwm)
			peakMu.Unlock()
			select {
			case <-r.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	// Nobody reads stdout: once the service runs, sstack may take in only
	// what fits in a few batches and pipe buffers.
	r.waitStderr(t, "Started")
	time.Sleep(3 * time.Second)
	stalled, _ := waitScrape(t, r, addr, 10*time.Second, func(scraped) string { return "" })
	held, _ := stalled.value("sstack_log_lines_total", replicaLabels(p.name, "svc", 1, "stream", "stdout"))
	if held > 100_000 {
		t.Errorf("sstack took in %v lines while its stdout was not read, want a few batches' worth", held)
	}
	if len(leftovers(p.name)) == 0 {
		t.Errorf("the service finished while sstack's stdout was not read: its output was buffered, not held back")
	}
	peakMu.Lock()
	stallRSS := peakRSS
	peakMu.Unlock()

	// A slow reader: 16 KiB at a time, pausing between reads.
	start := time.Now()
	br := bufio.NewReaderSize(&slowReader{r: pr, chunk: 16 << 10, pause: 2 * time.Millisecond}, 64<<10)
	c := &lineChecker{t: t, next: map[string]int{"svc": 1}}
	count := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			if l != "" {
				t.Errorf("last line without newline: %q", l)
			}
			break
		}
		count++
		n, convErr := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(l, "\n"), "svc-1 | "))
		if convErr != nil {
			if c.errors++; c.errors <= 5 {
				t.Errorf("bad line %q", l)
			}
			continue
		}
		c.see("svc", n, l)
	}
	readTook := time.Since(start)
	code := r.wait(t, time.Minute)
	<-sampled
	if code != 0 {
		t.Errorf("exit code %d", code)
	}
	if count != 1_000_000 || c.next["svc"] != 1_000_001 {
		t.Errorf("%d lines, up to %d; want 1000000", count, c.next["svc"]-1)
	}
	peakMu.Lock()
	defer peakMu.Unlock()
	t.Logf("non-race sstack: %v lines taken in during a 3 s stall, RSS %d kB then; peak RSS %d kB, VmHWM %d kB; slow read of 1M lines took %s",
		held, stallRSS, peakRSS, peakHWM, readTook.Round(time.Millisecond))
	const bound = 200 << 10 // kB
	if peakHWM > bound || peakRSS > bound {
		t.Errorf("peak RSS %d kB (VmHWM %d kB), want below %d kB", peakRSS, peakHWM, bound)
	}
	assertNothingLeft(t, p.name)
}

// slowReader reads at most chunk bytes at a time and pauses before each read.
type slowReader struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	if len(p) > s.chunk {
		p = p[:s.chunk]
	}
	return s.r.Read(p)
}

// A service prints a burst that fits in the pipes and exits at once, while
// whoever reads sstack's stdout lags for a few seconds (a pager, a slow
// terminal): the stack ends by itself, and every line still reaches stdout
// before sstack exits.
func TestLogPipeNothingLostWhenReaderLags(t *testing.T) {
	const n = 20_000
	p := newProject(t, oneService("svc", `["seq", "1", "`+strconv.Itoa(n)+`"]`))
	r, pr := upPiped(t, p, "")
	// Longer than everything sstack would wait for at exit before giving
	// up on stdout: the 2 s drain grace, the instance stop, the 5 s flush
	// and the 10 s logger stop timeouts.
	time.Sleep(20 * time.Second)
	out, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t, time.Minute); code != 0 {
		t.Errorf("exit code %d", code)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != n {
		t.Errorf("%d lines reached stdout, want %d; the last: %q", len(lines), n, lines[len(lines)-1])
	}
	for i, l := range lines {
		if want := "svc-1 | " + strconv.Itoa(i+1); l != want {
			t.Errorf("line %d = %q, want %q", i, l, want)
			break
		}
	}
	assertNothingLeft(t, p.name)
}

// The text prefix is docker compose's, padded to the longest name; -t puts
// an RFC 3339 time after it; --no-log-prefix drops it; colour only on a
// terminal and never with --no-color or NO_COLOR; --log-format json gives
// one object per line.
func TestLogFormats(t *testing.T) {
	compose := `
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hello web; echo oops web >&2"]
  database:
    image: busybox
    command: ["echo", "hello db"]
`
	wantSet := func(t *testing.T, out string, want ...string) {
		t.Helper()
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(got) != len(want) {
			t.Errorf("%d lines, want %d:\n%s", len(got), len(want), out)
		}
		have := map[string]bool{}
		for _, l := range got {
			have[l] = true
		}
		for _, w := range want {
			if !have[w] {
				t.Errorf("output lacks the line %q:\n%q", w, out)
			}
		}
	}
	stamped := func(t *testing.T, out string, re *regexp.Regexp, from, to time.Time) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Errorf("%d lines, want 3:\n%s", len(lines), out)
		}
		for _, l := range lines {
			m := re.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("line %q does not match %s", l, re)
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Errorf("timestamp %q is not RFC 3339: %v", m[1], err)
				continue
			}
			if !strings.HasSuffix(m[1], "Z") {
				t.Errorf("timestamp %q is not in UTC", m[1])
			}
			if ts.Before(from.Add(-time.Second)) || ts.After(to.Add(time.Second)) {
				t.Errorf("timestamp %s is outside the run (%s .. %s)", ts, from, to)
			}
		}
	}
	run := func(t *testing.T, args ...string) (string, time.Time, time.Time) {
		t.Helper()
		p := newProject(t, compose)
		from := time.Now()
		code, out, errs := p.run(args...)
		to := time.Now()
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, errs)
		}
		if strings.Contains(out, "\x1b") {
			t.Errorf("colour codes when stdout is not a terminal: %q", out)
		}
		assertNothingLeft(t, p.name)
		return out, from, to
	}

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		out, _, _ := run(t)
		wantSet(t, out, "web-1      | hello web", "web-1      | oops web", "database-1 | hello db")
	})
	t.Run("no-log-prefix", func(t *testing.T) {
		t.Parallel()
		out, _, _ := run(t, "--no-log-prefix")
		wantSet(t, out, "hello web", "oops web", "hello db")
	})
	t.Run("timestamps", func(t *testing.T) {
		t.Parallel()
		out, from, to := run(t, "--timestamps")
		stamped(t, out, regexp.MustCompile(`^(?:web-1     |database-1) \| (\S+) (?:hello web|oops web|hello db)$`), from, to)
	})
	t.Run("t no-log-prefix", func(t *testing.T) {
		t.Parallel()
		out, from, to := run(t, "--timestamps", "--no-log-prefix")
		stamped(t, out, regexp.MustCompile(`^(\S+) (?:hello web|oops web|hello db)$`), from, to)
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		p := newProject(t, compose)
		code, out, errs := p.run("--log-format", "json", "--no-color", "--timestamps")
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, errs)
		}
		got := map[string]string{}
		for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			obj := checkJSONLine(t, i, l, p.name)
			if obj == nil {
				continue
			}
			got[fmt.Sprintf("%v/%v/%v", obj["service"], obj["replica"], obj["stream"])] = fmt.Sprint(obj["line"])
		}
		want := map[string]string{"web/1/stdout": "hello web", "web/1/stderr": "oops web", "database/1/stdout": "hello db"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("json lines %v, want %v", got, want)
		}
		assertNothingLeft(t, p.name)
	})
	colour := regexp.MustCompile(`^\x1b\[[0-9;]+m(web-1     |database-1) \| \x1b\[0m(hello web|oops web|hello db)$`)
	t.Run("terminal colours", func(t *testing.T) {
		t.Parallel()
		p := newProject(t, compose)
		code, out, errs := runOnTerminal(t, p, nil)
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, errs)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		colours := map[string]string{}
		for _, l := range lines {
			if !colour.MatchString(l) {
				t.Errorf("line on a terminal %q is not a coloured prefix and the text", l)
				continue
			}
			name := colour.FindStringSubmatch(l)[1]
			code := l[:strings.IndexByte(l, 'm')]
			if c, ok := colours[name]; ok && c != code {
				t.Errorf("%s changes colour: %q then %q", name, c, code)
			}
			colours[name] = code
		}
		if len(lines) != 3 || len(colours) != 2 || colours["web-1     "] == colours["database-1"] {
			t.Errorf("want 3 lines and a colour per replica, got %q", out)
		}
		assertNothingLeft(t, p.name)
	})
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"terminal --no-color", nil, []string{"--no-color"}},
		{"terminal NO_COLOR", []string{"NO_COLOR=1"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := newProject(t, compose)
			code, out, errs := runOnTerminal(t, p, c.env, c.args...)
			if code != 0 {
				t.Fatalf("exit code %d:\n%s", code, errs)
			}
			if strings.Contains(out, "\x1b") {
				t.Errorf("colour codes: %q", out)
			}
			wantSet(t, out, "web-1      | hello web", "web-1      | oops web", "database-1 | hello db")
			assertNothingLeft(t, p.name)
		})
	}
}

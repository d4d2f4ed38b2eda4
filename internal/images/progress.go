package images

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// progress shows one line per image being pulled or built. On a terminal
// the lines are redrawn in place as docker compose's are (a spinner, the
// phase apptainer is in, the time so far; then the size and duration);
// elsewhere each line is printed once when it starts and once when it
// ends. A nil *progress shows nothing.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	width int
	now   func() time.Time
	rows  []*row
	drawn int // rows on screen (tty)
	tick  int
	stop  chan struct{}
	done  chan struct{}
	idW   int
}

type rowState int

const (
	rowWorking rowState = iota
	rowDone
	rowFailed
	rowSkipped
)

type row struct {
	p      *progress
	id     string // the services
	verb   string // Pulling, Building, Skipped...
	what   string // the source or definition
	status string // apptainer's latest INFO line
	start  time.Time
	state  rowState
	result string
}

func newProgress(w io.Writer, tty bool, width int, now func() time.Time) *progress {
	if width <= 0 {
		width = 80
	}
	p := &progress{w: w, tty: tty, width: width, now: now}
	if tty {
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.ticker()
	}
	return p
}

func (p *progress) ticker() {
	defer close(p.done)
	t := time.NewTicker(120 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.tick++
			p.redraw()
			p.mu.Unlock()
		}
	}
}

// add starts a line.
func (p *progress) add(id, verb, what string) *row {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &row{p: p, id: id, verb: verb, what: what, start: p.now()}
	p.rows = append(p.rows, r)
	p.idW = max(p.idW, utf8.RuneCountInString(id))
	if p.tty {
		p.redraw()
	} else {
		fmt.Fprintf(p.w, "%s %s %s\n", id, verb, what)
	}
	return r
}

// note adds a line that is over already (skipped, up to date).
func (p *progress) note(id, verb, what, detail string, state rowState) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &row{p: p, id: id, verb: verb, what: what, start: p.now(), state: state, result: detail}
	p.rows = append(p.rows, r)
	p.idW = max(p.idW, utf8.RuneCountInString(id))
	if p.tty {
		p.redraw()
	} else {
		fmt.Fprintf(p.w, "%s %s %s%s\n", r.id, r.verb, r.what, r.detail())
	}
}

// phase notes what apptainer is doing now.
func (r *row) phase(text string) {
	if r == nil {
		return
	}
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	r.status = text
	if r.p.tty {
		r.p.redraw()
	}
}

// finish ends a line: verb, when given, replaces the row's ("Pulled"),
// detail follows ("1.1 MB, 0.4s", or what to do after a failure).
func (r *row) finish(state rowState, verb, detail string) {
	if r == nil {
		return
	}
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	r.state, r.result = state, detail
	if verb != "" {
		r.verb = verb
	} else if state == rowFailed {
		r.verb = "Failed"
	}
	if p.tty {
		p.redraw()
		return
	}
	fmt.Fprintf(p.w, "%s %s %s%s\n", r.id, r.verb, r.what, r.detail())
}

func (r *row) detail() string {
	switch {
	case r.result == "":
		return ""
	case r.state == rowFailed:
		return ": " + r.result
	}
	return " (" + r.result + ")"
}

var spinner = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

// line renders a row for the terminal.
func (p *progress) line(r *row) string {
	var icon rune
	text := r.verb + " " + r.what
	switch r.state {
	case rowWorking:
		icon = spinner[p.tick%len(spinner)]
		if r.status != "" {
			text += "  " + r.status
		}
		text += fmt.Sprintf("  %.1fs", p.now().Sub(r.start).Seconds())
	case rowDone:
		icon = '✔'
	case rowFailed:
		icon = '✘'
	case rowSkipped:
		icon = '-'
	}
	text += r.detail()
	l := fmt.Sprintf(" %c %-*s %s", icon, p.idW, r.id, text)
	if utf8.RuneCountInString(l) >= p.width {
		l = string([]rune(l)[:p.width-2]) + "…"
	}
	return l
}

// redraw rewrites every line in place (cursor up, clear line). Lines are
// cut to the terminal's width so that none wraps and the count holds.
func (p *progress) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, r := range p.rows {
		b.WriteString("\r\x1b[2K")
		b.WriteString(p.line(r))
		b.WriteString("\n")
	}
	p.drawn = len(p.rows)
	_, _ = io.WriteString(p.w, b.String())
}

// close draws the last state and stops the ticker.
func (p *progress) close() {
	if p == nil || !p.tty {
		return
	}
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redraw()
}

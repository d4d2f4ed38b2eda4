// Package logstest is what tests of api.Stack's Logs share: a consumer
// that keeps what it is given, and a log store written as a supervisor
// writes it. Only tests import it.
package logstest

import (
	"slices"
	"sync"

	"sstack/internal/api"
)

// LogLines is an api.LogConsumer that keeps what it is given, safe to read
// while Logs still follows; each line as "NAME STREAM TEXT".
type LogLines struct {
	mu                   sync.Mutex
	names, lines, status []string
}

func (l *LogLines) Register(name string) { l.add(&l.names, name) }
func (l *LogLines) Log(line api.LogLine) {
	l.add(&l.lines, line.Name+" "+line.Stream+" "+string(line.Text))
}
func (l *LogLines) Status(_, text string) { l.add(&l.status, text) }

func (l *LogLines) add(to *[]string, s string) {
	l.mu.Lock()
	*to = append(*to, s)
	l.mu.Unlock()
}

// Names, Lines and Said are what was registered, logged and said (Status)
// so far.
func (l *LogLines) Names() []string { return l.get(l.names) }
func (l *LogLines) Lines() []string { return l.get(l.lines) }
func (l *LogLines) Said() []string  { return l.get(l.status) }

func (l *LogLines) get(s []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(s)
}

package actors

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"sstack/internal/api"
	"sstack/internal/console"
	"sstack/internal/logformat"
	"sstack/internal/logstore"
	"sstack/metrics"
)

// Logger keeps every service line on disk and hands it to the console,
// the only writer of service output (stdout) and of sstack's status lines
// (stderr), so lines never interleave mid-way. It writes the store first
// and never blocks on the console: a reader of stdout that stops reading
// slows the services while the stack runs, but cannot keep the store,
// the status lines or the teardown waiting.
type Logger struct {
	printer *logformat.Printer
	// attached are the services whose lines the console shows (nil: all).
	attached map[string]bool
	console  *console.Console
	metrics  *metrics.Metrics
	store    *logstore.Writer
	warned   bool
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
func newLogger(format logformat.Format, c *console.Console, m *metrics.Metrics) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		l := &Logger{
			printer:  logformat.NewPrinter(format),
			attached: format.Attached,
			console:  c,
			metrics:  m,
		}
		if format.StoreDir != "" {
			store, err := logstore.NewWriter(format.StoreDir, logstore.DefaultMaxSize, logstore.DefaultKeep)
			if err != nil {
				c.StatusLine(fmt.Sprintf("sstack: logs will not be kept on disk: %v", err))
			}
			l.store = store
		}
		return l
	}, actor.WithDispatcher(newLoopDispatcher()))
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
			l.console.StatusLine(line)
		}
	case *FlushLogs:
		l.flushStore()
		if sender := ctx.Sender(); sender != nil {
			root := ctx.ActorSystem().Root
			l.console.AfterStatus(func() { root.Send(sender, &FlushLogs{}) })
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
	if a := l.attached; a != nil && !a[b.Source.Service] {
		release(b.Done)
		return
	}
	l.console.Show(l.printer, console.Batch{Source: b.Source, Stream: stream, Time: b.Time, Data: b.Data, Count: b.Count, Done: b.Done})
}

// record counts and stores a batch. A panic here (a bug) would stop the
// logger with the batch never released and its pump, and so up's end,
// blocked for good: it is reported once and the lines still reach the
// console.
func (l *Logger) record(b *LogBatch, stream string) {
	defer func() {
		if r := recover(); r != nil && !l.panicked {
			l.panicked = true
			l.console.StatusLine(fmt.Sprintf("sstack: internal error while recording %s's logs (please report it; the console output goes on): %v\n%s", b.Source.Name, r, debug.Stack()))
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
		l.console.StatusLine(fmt.Sprintf("sstack: keeping logs on disk failed, the console output goes on: %v", err))
	}
}

// release signals a batch's Done, if it has one: its pump may reuse the
// buffer and read on.
func release(done chan<- struct{}) {
	if done != nil {
		done <- struct{}{} // room for every batch of its reader in flight
	}
}

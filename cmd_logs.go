package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/logformat"
)

func newLogs(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:               "logs [OPTIONS] [SERVICE...]",
		Short:             "Show the logs of a project's services, while it runs or after it stopped",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			project, plan, err := o.projectAndPlan()
			if err != nil {
				return err
			}
			opts := o.logs
			opts.Services = args
			if plan != nil {
				opts.Known = plan.ServiceNames()
			}
			st, closeFn, err := o.dialStack(compose.StateDirFor(project, o.loadOptions()))
			if err != nil {
				return err
			}
			defer closeFn()
			p := newLogPrinter(o.stdout, logformat.Format{
				Prefix:     !o.noLogPrefix,
				Color:      !o.noColor && os.Getenv("NO_COLOR") == "" && isTerminal(o.stdout),
				Timestamps: o.timestamps,
				Project:    project,
			})
			defer p.flush()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return st.Logs(ctx, opts, p)
		},
	}
	f := c.Flags()
	f.BoolVarP(&o.logs.Follow, "follow", "f", false, "Follow log output; ends when the stack stops")
	f.StringVar(&o.logs.Since, "since", "", "Show logs since a timestamp (2026-01-02T13:23:37Z) or relative (42m)")
	f.StringVar(&o.logs.Tail, "tail", "all", "Number of lines to show from the end of the logs of each replica")
	f.BoolVarP(&o.timestamps, "timestamps", "t", false, "Show timestamps")
	f.BoolVar(&o.noLogPrefix, "no-log-prefix", false, "Don't print a prefix in logs")
	f.BoolVar(&o.noColor, "no-color", false, "Produce monochrome output")
	f.StringVar(&o.logs.Until, "until", "", "Show logs before a timestamp (2026-01-02T13:23:37Z) or relative (42m)")
	f.IntVar(&o.logs.Index, "index", 0, "Only replica N (from 1) of the selected services")
	f.StringArrayVarP(&o.logs.Include, "include", "i", nil, "Only lines matching this regular expression (repeatable: all must match)")
	f.StringArrayVarP(&o.logs.Exclude, "exclude", "x", nil, "Leave out lines matching this regular expression (repeatable)")
	f.BoolVar(&o.logs.Stdout, "stdout", false, "Only what services wrote to stdout")
	f.BoolVar(&o.logs.Stderr, "stderr", false, "Only what services wrote to stderr")
	return c
}

// logFlushDelay is how long a line Logs gave may wait in the buffer for
// the next ones: a history is written in large writes, a followed line
// shows at once.
const logFlushDelay = 20 * time.Millisecond

// logPrinter is the api.LogConsumer of `sstack logs`: it prints the lines
// as docker compose logs does (prefixes padded to the longest name
// registered, colours, -t), buffered.
type logPrinter struct {
	mu      sync.Mutex
	format  logformat.Format
	printer *logformat.Printer // made at the first line, once every name is registered
	out     *bufio.Writer
	timer   *time.Timer // a flush to come, nil when none
}

func newLogPrinter(w io.Writer, format logformat.Format) *logPrinter {
	return &logPrinter{format: format, out: bufio.NewWriterSize(w, 64<<10)}
}

func (p *logPrinter) Register(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.format.Width = max(p.format.Width, len(name))
}

func (p *logPrinter) Log(l api.LogLine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printer == nil {
		p.printer = logformat.NewPrinter(p.format)
	}
	src := logformat.Source{Service: l.Service, Replica: l.Replica, Name: l.Name}
	p.printer.WriteLines(p.out, &src, l.Stream, l.Time, [][]byte{l.Text})
	if p.timer == nil {
		p.timer = time.AfterFunc(logFlushDelay, p.flush)
	}
}

// Status: `sstack logs -f` ends without a word when the stack stops, as
// docker compose's.
func (p *logPrinter) Status(string, string) {}

// flush writes what is buffered.
func (p *logPrinter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	_ = p.out.Flush()
}

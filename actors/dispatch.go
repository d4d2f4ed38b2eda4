package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// loopDispatcher runs an actor's mailbox on a goroutine that stays,
// parked, between runs, instead of protoactor's new goroutine per run: the
// logger of a busy service runs its mailbox hundreds of times a second,
// and each new goroutine costs a start and a grown stack. A goroutine
// idle for loopIdle ends; the next run starts another.
type loopDispatcher struct {
	runs chan func() // unbuffered: a send succeeds only to a parked loop
}

const loopIdle = time.Second

func newLoopDispatcher() *loopDispatcher { return &loopDispatcher{runs: make(chan func())} }

func (d *loopDispatcher) Schedule(fn func()) {
	select {
	case d.runs <- fn:
	default:
		go d.loop(fn)
	}
}

// Throughput is protoactor's default: messages per run before it yields.
func (d *loopDispatcher) Throughput() int { return 300 }

func (d *loopDispatcher) loop(fn func()) {
	idle := time.NewTimer(loopIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(loopIdle)
		select {
		case fn = <-d.runs:
		case <-idle.C:
			return
		}
	}
}

var _ actor.Dispatcher = (*loopDispatcher)(nil)

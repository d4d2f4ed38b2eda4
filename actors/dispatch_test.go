package actors

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// Every scheduled run runs; runs scheduled one after another share one
// goroutine, which ends once idle.
func TestLoopDispatcher(t *testing.T) {
	before := runtime.NumGoroutine()
	d := newLoopDispatcher()
	done := make(chan string)
	goroutines := map[string]bool{}
	for i := range 100 {
		d.Schedule(func() { done <- goroutineID() })
		goroutines[<-done] = true
		if len(goroutines) != 1 {
			t.Fatalf("run %d ran on a goroutine of its own", i)
		}
		time.Sleep(time.Millisecond) // the loop parks again
	}
	deadline := time.Now().Add(loopIdle + 3*time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines %s after the last run, %d before: the idle loop did not end", n, loopIdle, before)
	}
}

// goroutineID is the calling goroutine's number, from its stack's header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

package engine

import "os"

// Session is a foreground up from here to its end, as docker compose's up
// session: the first signal from sigs stops the stack gracefully, the
// second kills it; at the end, while the last lines wait for a stdout that
// lags, a signal cuts that wait short as it does the teardown. It returns
// the stack's exit code once everything is released (Close).
func (s *Supervisor) Session(sigs <-chan os.Signal) int {
	stops := 0
	onSignal := func() {
		stops++
		if stops == 1 {
			s.sys.TearDown("Gracefully stopping... (press Ctrl+C again to force)")
		} else {
			s.sys.KillAll()
		}
	}
	for {
		select {
		case done := <-s.sys.Done():
			closed := make(chan struct{})
			go func() { s.close(); close(closed) }()
			for {
				select {
				case <-closed:
					return done.ExitCode
				case <-sigs:
					onSignal()
				}
			}
		case <-sigs:
			onSignal()
		}
	}
}

// Package testutil holds small helpers that tests of several packages
// share (as internal/testimg holds their images). Production code does
// not import it.
package testutil

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that a process's output (or a logger) writes
// while a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

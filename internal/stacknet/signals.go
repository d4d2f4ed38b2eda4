package stacknet

import (
	"os"
	"os/signal"
	"syscall"
)

// ignoreInterrupts: the holder ends on SIGTERM or SIGKILL only; a
// terminal's Ctrl-C or a logout's SIGHUP is for sstack to handle.
func ignoreInterrupts(term chan os.Signal) {
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	signal.Notify(term, syscall.SIGTERM)
}

// signalIgnoreAll: a replica's holder ends only with its input.
func signalIgnoreAll() {
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE, syscall.SIGTERM)
}

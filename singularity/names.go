package singularity

import (
	"golang.org/x/sys/unix"

	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// MaxNameLen is the longest instance name Apptainer accepts: it becomes a
// file name NAME.json (measured: 251 characters fail with "file name too
// long").
const MaxNameLen = 250

// ValidateName checks an instance name against what Apptainer accepts:
// letters, digits, '.', '-', '_', at most MaxNameLen characters. A leading
// '-' is refused too: Apptainer would read it as a flag (measured: `instance
// start IMG -- -x` creates an instance named "--").
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("instance name is empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("instance name %q is %d characters long; Apptainer allows at most %d", name, len(name), MaxNameLen)
	}
	if name[0] == '-' {
		return fmt.Errorf("instance name %q starts with '-'; start it with a letter or digit", name)
	}
	for _, r := range name {
		if !nameChar(r) {
			return fmt.Errorf("instance name %q: character %q is not allowed; use letters, digits, '.', '-', '_'", name, r)
		}
	}
	return nil
}

func nameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
}

// Linux signal numbers by name, without the SIG prefix.
var signalNumbers = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"ILL": syscall.SIGILL, "TRAP": syscall.SIGTRAP, "ABRT": syscall.SIGABRT,
	"IOT": syscall.SIGIOT, "BUS": syscall.SIGBUS, "FPE": syscall.SIGFPE,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "SEGV": syscall.SIGSEGV,
	"USR2": syscall.SIGUSR2, "PIPE": syscall.SIGPIPE, "ALRM": syscall.SIGALRM,
	"TERM": syscall.SIGTERM, "STKFLT": syscall.SIGSTKFLT, "CHLD": syscall.SIGCHLD,
	"CLD": syscall.SIGCHLD, "CONT": syscall.SIGCONT, "STOP": syscall.SIGSTOP,
	"TSTP": syscall.SIGTSTP, "TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU,
	"URG": syscall.SIGURG, "XCPU": syscall.SIGXCPU, "XFSZ": syscall.SIGXFSZ,
	"VTALRM": syscall.SIGVTALRM, "PROF": syscall.SIGPROF, "WINCH": syscall.SIGWINCH,
	"IO": syscall.SIGIO, "POLL": syscall.SIGPOLL, "PWR": syscall.SIGPWR,
	"SYS": syscall.SIGSYS,
}

const (
	sigRTMIN = 34
	sigRTMAX = 64
)

// ParseSignal accepts the spellings compose and Docker accept: "SIGTERM",
// "TERM", "sigterm", "15", "SIGRTMIN+3", "RTMAX-1". "" is an error: the
// caller picks the default.
func ParseSignal(s string) (syscall.Signal, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("empty signal name; use a name like SIGTERM or a number like 15")
	}
	if n, err := strconv.Atoi(in); err == nil {
		if n < 1 || n > sigRTMAX {
			return 0, fmt.Errorf("signal %q: number out of range 1-%d", s, sigRTMAX)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(in), "SIG")
	if sig, ok := signalNumbers[name]; ok {
		return sig, nil
	}
	for _, rt := range []struct {
		prefix string
		base   int
		dir    int
	}{{"RTMIN", sigRTMIN, 1}, {"RTMAX", sigRTMAX, -1}} {
		rest, ok := strings.CutPrefix(name, rt.prefix)
		if !ok {
			continue
		}
		off := 0
		if rest != "" {
			sign := "+"
			if rt.dir < 0 {
				sign = "-"
			}
			num, ok := strings.CutPrefix(rest, sign)
			n, err := strconv.Atoi(num)
			if !ok || err != nil || n < 0 {
				break
			}
			off = n
		}
		n := rt.base + rt.dir*off
		if n < sigRTMIN || n > sigRTMAX {
			return 0, fmt.Errorf("signal %q: outside SIGRTMIN-SIGRTMAX", s)
		}
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q; use a name like SIGTERM, SIGINT, SIGQUIT or a number like 15", s)
}

// SignalName is the conventional name of sig, e.g. "SIGUSR1".
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return strconv.Itoa(int(sig))
}

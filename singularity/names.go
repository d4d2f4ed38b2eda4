package singularity

// Pure checks of what Apptainer accepts, for this package's command lines
// and for callers that check a plan before anything starts: each rule is
// spelled here once.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
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

// SignalName is the conventional name of sig, e.g. "SIGUSR1"; real-time
// signals are named as Docker names them (moby/sys/signal): SIGRTMIN,
// SIGRTMIN+1 ... SIGRTMIN+15, SIGRTMAX-14 ... SIGRTMAX. ParseSignal reads
// every name it gives back.
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	switch n := int(sig); {
	case n == sigRTMIN:
		return "SIGRTMIN"
	case n > sigRTMIN && n <= sigRTMIN+15:
		return "SIGRTMIN+" + strconv.Itoa(n-sigRTMIN)
	case n > sigRTMIN+15 && n < sigRTMAX:
		return "SIGRTMAX-" + strconv.Itoa(sigRTMAX-n)
	case n == sigRTMAX:
		return "SIGRTMAX"
	}
	return strconv.Itoa(int(sig))
}

// ValidateEnv checks one variable of a service process's environment.
// Apptainer writes the variables into a shell script, so a name that is no
// shell name ([A-Za-z_][A-Za-z0-9_]*) makes every exec in the instance fail
// (measured: exit 255); a value cannot carry a NUL byte through exec.
func ValidateEnv(name, value string) error {
	if !validEnvName(name) {
		return fmt.Errorf("variable name %q: Apptainer allows only letters, digits and '_', not starting with a digit; rename it", name)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("variable %q: the value contains a NUL byte, which no process environment can carry", name)
	}
	return nil
}

// The environment of a service process travels twice where a size limit
// holds (measured, Apptainer 1.4.5): as APPTAINERENV_KEY=VALUE in the
// client's environment, where Linux limits one entry to MAX_ARG_STRLEN
// (128 KiB: "argument list too long"), and JSON-encoded in the engine
// configuration the client hands its starter, which Apptainer limits to
// 1 MiB in all ("engine configuration too big > 1048448"; 8 values of
// 130000 bytes pass). envBudget leaves the rest of that configuration
// (binds, image, flags) room.
const (
	maxEnvEntry = 128 << 10
	envBudget   = 960 << 10
)

// ValidateEnvSize checks that a service process's environment (KEY=VALUE
// entries) fits through Apptainer: each entry, and all of them together.
func ValidateEnvSize(env []string) error {
	total := 0
	for _, kv := range env {
		key, value, _ := strings.Cut(kv, "=")
		if n := len("APPTAINERENV_") + len(kv) + 1; n > maxEnvEntry {
			return fmt.Errorf("variable %q: its value is %d bytes, and Linux lets one environment entry of a process hold %d bytes with its name (Apptainer passes the environment through its client's); put the value in a file and bind it (volumes, configs or secrets)", key, len(value), maxEnvEntry)
		}
		b, _ := json.Marshal(kv)
		total += len(b) + 1
	}
	if total > envBudget {
		return fmt.Errorf("the variables take %d bytes in all, JSON-encoded, and Apptainer carries a process's environment in a configuration it limits to 1 MiB (%d bytes are left for the environment); put large values in files and bind them (volumes, configs or secrets)", total, envBudget)
	}
	return nil
}

// ValidateHostname checks a host name as --hostname sets it (a UTS
// namespace of the instance's own, root or not; measured): letters,
// digits, '-' and '.', at most 64 bytes (HOST_NAME_MAX).
func ValidateHostname(name string) error {
	if name == "" || len(name) > 64 || name[0] == '-' || name[0] == '.' {
		return fmt.Errorf("host name %q: give 1 to 64 letters, digits, '-' and '.', starting with a letter or digit", name)
	}
	for _, r := range name {
		if !(r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("host name %q: %q is not allowed; use letters, digits, '-' and '.'", name, r)
		}
	}
	return nil
}

func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ValidateBind checks a bind as --mount carries it: absolute paths without
// line breaks (the CSV syntax quotes anything else), and not onto the
// container's root, which Apptainer silently ignores (measured).
func ValidateBind(b Bind) error {
	if !filepath.IsAbs(b.Source) {
		return fmt.Errorf("source %q: want an absolute host path", b.Source)
	}
	if err := validateTarget(b.Target); err != nil {
		return err
	}
	if strings.ContainsAny(b.Source, "\n\r\x00") {
		return fmt.Errorf("source %q: Apptainer cannot mount a path with a line break or NUL; rename it", b.Source)
	}
	return nil
}

// ValidateTmpfs checks a tmpfs mount point: --scratch splits at commas and
// ignores quotes (measured).
func ValidateTmpfs(target string) error {
	if err := validateTarget(target); err != nil {
		return err
	}
	if strings.Contains(target, ",") {
		return fmt.Errorf("target %q: Apptainer cannot mount a tmpfs on a path with a comma; rename the path", target)
	}
	return nil
}

func validateTarget(target string) error {
	switch {
	case !filepath.IsAbs(target):
		suggest := filepath.Join("/", target)
		return fmt.Errorf("target %q: want an absolute container path, such as %s", target, suggest)
	case filepath.Clean(target) == "/":
		return fmt.Errorf("target %q: nothing can be mounted over the container's root; choose a directory below it", target)
	case strings.ContainsAny(target, "\n\r\x00"):
		return fmt.Errorf("target %q: Apptainer cannot mount on a path with a line break or NUL; rename it", target)
	}
	return nil
}

// ValidateWorkingDir checks a process's working directory (--pwd).
func ValidateWorkingDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%q: want an absolute container path, such as %s", dir, filepath.Join("/", dir))
	}
	if strings.IndexByte(dir, 0) >= 0 {
		return fmt.Errorf("%q: a path cannot hold a NUL byte", dir)
	}
	return nil
}

// ValidateArgs checks the arguments of a process: exec cannot pass a NUL
// byte.
func ValidateArgs(args []string) error {
	for _, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %q contains a NUL byte, which no command line can carry", a)
		}
	}
	return nil
}

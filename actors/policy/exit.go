package policy

// ExitRules decides what `up` returns and when an exit aborts the stack,
// as docker compose does (cmd/compose/up.go and pkg/compose/up.go, v2.27+):
//   - --abort-on-container-exit: the first exit of any process, restarted
//     or not, stops the stack; `up` returns that exit code.
//   - --abort-on-container-failure: the same for the first non-zero exit;
//     exits with 0 are ignored.
//   - --exit-code-from S implies --abort-on-container-exit (unless
//     --abort-on-container-failure is given); `up` returns the code of S's
//     first exit, even when the abort stopped S (e.g. 137 or 143).
//
// Exits sstack or its user caused (teardown, stop, depends_on.restart)
// never abort. A failure to start, or a Ctrl-C, fixes the code.
type ExitRules struct {
	Exit

	code     int
	fixed    bool // a failure (1) or Ctrl-C decided the code
	captured bool // the first exit of ExitCodeFrom has been seen
	aborted  bool
}

// Exit is the user's exit flags: --abort-on-container-exit,
// --abort-on-container-failure and --exit-code-from.
type Exit struct {
	AbortOnExit    bool
	AbortOnFailure bool
	ExitCodeFrom   string
}

// Exited records an exit of a process of service. requested: sstack or
// its user caused it. It returns true when the stack must be aborted now
// (the first time only).
func (r *ExitRules) Exited(service string, code int, requested bool) (abort bool) {
	if !r.aborted && !r.fixed && !requested && r.abortsOn(code) {
		r.aborted = true
		r.code = code
		abort = true
	}
	if service == r.ExitCodeFrom && !r.captured {
		r.captured = true
		if !r.fixed {
			r.code = code
		}
	}
	return abort
}

func (r *ExitRules) abortsOn(code int) bool {
	if r.AbortOnFailure {
		return code != 0
	}
	return r.AbortOnExit || r.ExitCodeFrom != ""
}

// Failed: a service cannot start, or sstack failed: `up` returns 1.
func (r *ExitRules) Failed() { r.code, r.fixed = 1, true }

// Interrupted: the user stopped the stack (Ctrl-C, down); the code is
// what it was (0 unless an exit-code-from exit came first).
func (r *ExitRules) Interrupted() {
	if !r.aborted {
		r.fixed = true
	}
}

// Code is what `up` returns.
func (r *ExitRules) Code() int { return r.code }

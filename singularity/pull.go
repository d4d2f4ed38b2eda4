package singularity

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PullSpec says what `apptainer pull` fetches and where the SIF goes.
type PullSpec struct {
	Source string // a URI apptainer pull takes: docker://redis:7, oras://..., library://...
	Dest   string // the SIF to write; replaced atomically, never left half-written
	// Phase, if set, hears apptainer's progress as it goes ("Fetching OCI
	// image", "Creating SIF file"), from its INFO lines.
	Phase func(string)
}

// Pull runs `apptainer pull` into a temporary file beside spec.Dest and
// renames it to Dest once complete, so an interrupted pull never leaves a
// broken SIF where a later run would use it (apptainer itself copies the
// finished SIF into place, readable half-written). The environment is
// sstack's own but for the variables meant for containers: APPTAINER_NOHTTPS,
// APPTAINER_CACHEDIR, APPTAINER_DOCKER_USERNAME/_PASSWORD and the rest of
// apptainer's settings reach it. A failure carries apptainer's FATAL line.
func (a *Apptainer) Pull(ctx context.Context, spec PullSpec) error {
	if spec.Source == "" || spec.Dest == "" {
		return errors.New("pull: no source or destination given")
	}
	if strings.HasPrefix(spec.Source, "-") {
		return fmt.Errorf("pull: source %q starts with '-'", spec.Source)
	}
	what := "pulling " + spec.Source
	for attempt := 1; ; attempt++ {
		err := a.intoPlace(ctx, spec.Dest, "", spec.Phase, func(tmp string) []string {
			return pullArgs(tmp, spec.Source)
		}, what)
		var failed *toolFailure
		if err == nil || attempt == pullAttempts || !errors.As(err, &failed) || !cacheRace(failed.output) {
			return err
		}
		if spec.Phase != nil {
			spec.Phase("Retrying (the shared image cache changed under the pull)")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
		}
	}
}

// pullAttempts bounds the tries of a pull that loses cacheRace.
const pullAttempts = 4

// cacheRace says whether a failed pull's output is apptainer's known race
// over a shared APPTAINER_CACHEDIR (apptainer/singularity#3634): parallel
// pulls of images that share layers read each other's half-written cache
// entries ("conveyor failed to get: unexpected end of JSON input", "... not
// found in layout", "no descriptor found"). Tried again, the pull finds the
// entries complete.
func cacheRace(output []byte) bool {
	return bytes.Contains(output, []byte("conveyor failed to get"))
}

// toolFailure is apptainer pull or build exiting non-zero: its summary, and
// the whole output for the caller to examine.
type toolFailure struct {
	msg    string
	output []byte
}

func (e *toolFailure) Error() string { return e.msg }

// pullArgs builds `apptainer pull TMP SOURCE`. No -s: the INFO lines are
// the progress; FATAL lines print anyway.
func pullArgs(tmp, source string) []string {
	return []string{"pull", tmp, source}
}

// TempSuffix marks the temporary files Pull and BuildImage write beside
// their destination (hidden: ".NAME.RANDOM.tmp").
const TempSuffix = ".tmp"

// intoPlace runs apptainer with args(tmp), tmp being a fresh hidden file
// name beside dest, and renames tmp to dest when it succeeds. tmp is
// removed whatever happens. dir is the working directory ("" is "/").
func (a *Apptainer) intoPlace(ctx context.Context, dest, dir string, phase func(string), args func(tmp string) []string, what string) error {
	dest, err := filepath.Abs(dest)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+"."+hex.EncodeToString(rnd[:])+TempSuffix)
	defer os.Remove(tmp)

	out := &phaseWriter{phase: phase}
	cmd := a.command(ctx, toolEnv(a.baseEnv()), args(tmp)...)
	if dir != "" {
		cmd.Dir = dir
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Cancelled (Ctrl-C): end apptainer's whole process group (mksquashfs
	// too), gently first.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err != nil && !(errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success()) {
		return &toolFailure{msg: what + ": " + summarize(out.bytes()), output: out.bytes()}
	}
	if fi, err := os.Stat(tmp); err != nil || fi.Size() == 0 {
		return fmt.Errorf("%s: apptainer succeeded but wrote no image: %s", what, summarize(out.bytes()))
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// toolEnv is the environment of apptainer pull and build: sstack's own,
// with apptainer's settings (unlike clientEnv), but without the
// APPTAINERENV_* variables, which are meant for containers.
func toolEnv(base []string) []string {
	out := make([]string, 0, len(base))
	for _, kv := range base {
		key, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(key, "APPTAINERENV_") || strings.HasPrefix(key, "SINGULARITYENV_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// phaseWriter keeps apptainer's output for the error message and passes
// each INFO line's text to phase.
type phaseWriter struct {
	mu      sync.Mutex
	phase   func(string)
	all     bytes.Buffer
	partial []byte
}

func (w *phaseWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.all.Len() < 1<<20 {
		w.all.Write(p)
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexAny(w.partial, "\r\n")
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
		if text, ok := strings.CutPrefix(line, "INFO:"); ok && w.phase != nil {
			text = strings.TrimSuffix(strings.TrimSpace(text), "...")
			// Advice about apptainer's own flags is no progress.
			if !strings.HasPrefix(text, "To see") && !strings.HasPrefix(text, "Use ") {
				w.phase(text)
			}
		}
	}
	if len(w.partial) > 64<<10 {
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

func (w *phaseWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.all.Bytes())
}

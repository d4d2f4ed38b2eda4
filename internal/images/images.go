// Package images owns a project's SIFs apart from any running stack:
// what up, pull and build do to have every service's image, as docker
// compose does with its images (pull what pull_policy or --pull says, in
// parallel; when a pull fails and the service can be built, or nothing can
// be pulled, build it; then every image must be there), the list `sstack
// images` prints and what `down --rmi` removes. The CLI calls it before a
// stack starts; the engine only checks that the images are there.
package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/singularity"
)

// Runtime is what getting images needs from Apptainer;
// *singularity.Apptainer implements it, tests use fakes.
type Runtime interface {
	Pull(ctx context.Context, spec singularity.PullSpec) error
	BuildImage(ctx context.Context, spec singularity.BuildSpec) error
}

// Mode says which command wants the images.
type Mode int

const (
	// ForUp pulls and builds what pull_policy and the flags say; then
	// every image must be there.
	ForUp Mode = iota
	// ForPull is `sstack pull`: docker compose pull's choices.
	ForPull
	// ForBuild is `sstack build`: every definition file build, when its
	// definition or context changed.
	ForBuild
)

// DefaultPullParallel bounds parallel pulls when Options.Parallel
// is 0: pulls share the network and the cache.
const DefaultPullParallel = 4

// Options says which images to get, and how.
type Options struct {
	Plan    *compose.Plan
	Runtime Runtime
	Mode    Mode
	// Services to get images for; none: every service of the plan.
	Services []string
	// Pull overrides every service's pull_policy: up --pull
	// always|missing|never, pull --policy missing|always.
	Pull string
	// Build (up --build): build every image that has a definition file
	// (only when it changed); NoBuild (up --no-build): build none.
	Build, NoBuild bool
	// NoCache (build --no-cache): rebuild even what did not change.
	NoCache bool
	// IgnorePullFailures, IgnoreBuildable: docker compose pull's flags.
	IgnorePullFailures, IgnoreBuildable bool
	// Parallel bounds parallel pulls (0: DefaultPullParallel). Builds run
	// one at a time: a build may use an image pulled or built before it.
	Parallel int
	// Progress receives one line per image; nil: nothing. On a Terminal
	// (Width columns) the lines are redrawn as the work goes on.
	Progress io.Writer
	Terminal bool
	Width    int
	// Fakeroot builds with --fakeroot (an unprivileged user needs it).
	Fakeroot bool
	// Now is the clock for refresh policies; nil: time.Now.
	Now func() time.Time
}

// Get gets the images opts asks for and points the plan's services at
// them. Every problem is reported, joined: each names the service, the
// reference and what apptainer said.
func Get(ctx context.Context, opts Options) error {
	switch opts.Pull {
	case "", compose.PullAlways, compose.PullMissing, compose.PullNever:
	default:
		return fmt.Errorf("--pull %q: use always, missing or never", opts.Pull)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tasks, err := imageTasks(opts)
	if err != nil {
		return err
	}
	var prog *progress
	if opts.Progress != nil {
		prog = newProgress(opts.Progress, opts.Terminal, opts.Width, opts.Now)
		defer prog.close()
	}
	var errs []error
	pulls(ctx, opts, tasks, prog)
	for _, t := range tasks {
		if err := build(ctx, opts, t, prog); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range tasks {
		if err := t.outcome(opts); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// buildWhen says whether an image is built.
type buildWhen int

const (
	buildNever     buildWhen = iota
	buildIfMissing           // after the pull step, if there is still no image
	buildChanged             // unless its definition and context are unchanged
	buildAlways              // even so (build --no-cache)
)

// imageState is what is on disk for an image.
type imageState struct {
	Exists  bool
	ModTime time.Time
}

// imageAction is what to do for one image.
type imageAction struct {
	Pull  bool
	Build buildWhen
	// Skip, for sstack pull and build, says why nothing is done.
	Skip string
}

// decide is the policy: docker compose's choices for up (pullRequiredImages,
// then the build of what is missing), pull and build, over the SIF found
// and the flags. It is pure.
func decide(mode Mode, src *compose.ImageSource, st imageState, opts Options, now time.Time) imageAction {
	policy := src.PullPolicy
	if opts.Pull != "" {
		policy = opts.Pull
	}
	canBuild := src.Build != nil
	switch mode {
	case ForBuild:
		switch {
		case !canBuild:
			return imageAction{Skip: "no build: section"}
		case opts.NoCache:
			return imageAction{Build: buildAlways}
		}
		return imageAction{Build: buildChanged}
	case ForPull:
		switch {
		case src.Pull == "":
			return imageAction{Skip: "nothing to pull: the image is built (sstack build)"}
		case policy == compose.PullNever || policy == compose.PullBuild:
			return imageAction{Skip: "pull_policy: " + policy}
		case policy == compose.PullMissing && st.Exists:
			return imageAction{Skip: "the image is already here"}
		case canBuild && opts.IgnoreBuildable:
			return imageAction{Skip: "the image can be built"}
		}
		return imageAction{Pull: true}
	}
	var a imageAction
	if src.Pull != "" {
		switch policy {
		case compose.PullAlways:
			a.Pull = true
		case compose.PullRefresh:
			a.Pull = !st.Exists || !now.Before(st.ModTime.Add(src.RefreshAfter))
		case compose.PullNever, compose.PullBuild:
		default: // missing
			a.Pull = !st.Exists
		}
	}
	switch {
	case !canBuild || opts.NoBuild:
	case opts.Build || policy == compose.PullBuild:
		a.Build = buildChanged
		a.Pull = false
	default:
		a.Build = buildIfMissing
	}
	return a
}

// imageTask is one image and the services that use it.
type imageTask struct {
	services []*compose.Service
	src      *compose.ImageSource
	action   imageAction
	pullErr  error
	buildErr error
	built    bool
}

func (t *imageTask) names() []string {
	names := make([]string, len(t.services))
	for i, s := range t.services {
		names[i] = s.Name
	}
	return names
}

func (t *imageTask) label() string { return strings.Join(t.names(), ", ") }

// errorf makes an error that names the task's services.
func (t *imageTask) errorf(key, format string, args ...any) error {
	who := fmt.Sprintf("service %q", t.services[0].Name)
	if len(t.services) > 1 {
		quoted := make([]string, len(t.services))
		for i, s := range t.services {
			quoted[i] = fmt.Sprintf("%q", s.Name)
		}
		who = "services " + strings.Join(quoted, ", ")
	}
	return fmt.Errorf("%s: %s: %s", who, key, fmt.Sprintf(format, args...))
}

// imageTasks groups the services in scope by the image they use and
// decides what to do for each.
func imageTasks(opts Options) ([]*imageTask, error) {
	plan := opts.Plan
	var scope []*compose.Service
	if len(opts.Services) == 0 {
		for i := range plan.Services {
			scope = append(scope, &plan.Services[i])
		}
	} else {
		for _, name := range opts.Services {
			s := plan.Service(name)
			if s == nil {
				return nil, &api.NoServiceError{Name: name, Known: plan.ServiceNames()}
			}
			scope = append(scope, s)
		}
	}
	byTarget := map[string]*imageTask{}
	var tasks []*imageTask
	for _, s := range scope {
		if s.ImageSource == nil {
			continue
		}
		t := byTarget[s.ImageSource.Target]
		if t == nil {
			t = &imageTask{src: s.ImageSource}
			byTarget[s.ImageSource.Target] = t
			tasks = append(tasks, t)
		}
		t.services = append(t.services, s)
	}
	now := opts.Now()
	for _, t := range tasks {
		t.action = decide(opts.Mode, t.src, stateOf(t.services[0].Image), opts, now)
		// Services sharing an image may say different things (one
		// pull_policy: always): do what any of them asks.
		for _, s := range t.services[1:] {
			a := decide(opts.Mode, s.ImageSource, stateOf(s.Image), opts, now)
			t.action.Pull = t.action.Pull || a.Pull
			t.action.Build = max(t.action.Build, a.Build)
			if a.Skip == "" {
				t.action.Skip = ""
			}
		}
	}
	return tasks, nil
}

func stateOf(path string) imageState {
	fi, err := os.Stat(path)
	if err != nil {
		return imageState{}
	}
	return imageState{Exists: true, ModTime: fi.ModTime()}
}

// use points the task's services at the image now at the target.
func (t *imageTask) use() {
	for _, s := range t.services {
		s.Image = t.src.Target
	}
}

// pulls runs the pulls, at most opts.Parallel at once.
func pulls(ctx context.Context, opts Options, tasks []*imageTask, prog *progress) {
	n := opts.Parallel
	if n <= 0 {
		n = DefaultPullParallel
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, t := range tasks {
		if t.action.Skip != "" && opts.Mode == ForPull {
			prog.note(t.label(), "Skipped:", t.action.Skip, "", rowSkipped)
			continue
		}
		if !t.action.Pull {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r := prog.add(t.label(), "Pulling", t.src.Pull)
			start := time.Now()
			err := opts.Runtime.Pull(ctx, singularity.PullSpec{Source: t.src.Pull, Dest: t.src.Target, Phase: r.phase})
			if err != nil {
				t.pullErr = err
				switch {
				case opts.Mode == ForPull && t.src.Build != nil:
					r.finish(rowFailed, "", "the image must be built: sstack build "+strings.Join(t.names(), " "))
				case opts.Mode == ForUp && t.src.Build != nil:
					r.finish(rowFailed, "", "building it instead")
				default:
					r.finish(rowFailed, "", "")
				}
				return
			}
			t.use()
			r.finish(rowDone, "Pulled", doneText(t.src.Target, time.Since(start)))
		}()
	}
	wg.Wait()
}

// build builds t's image when its action says so.
func build(ctx context.Context, opts Options, t *imageTask, prog *progress) error {
	b := t.src.Build
	switch t.action.Build {
	case buildNever:
		return nil
	case buildIfMissing:
		if stateOf(t.services[0].Image).Exists {
			return nil
		}
	}
	if b.Definition == "" {
		t.buildErr = t.errorf("build", "%s", b.Unbuildable)
		return nil // reported by outcome, with the pull's error if any
	}
	hash, err := buildHash(b, t.src.Target, opts.Plan.StateDir)
	if err != nil {
		return t.errorf("build", "%v", err)
	}
	if t.action.Build != buildAlways && stateOf(t.src.Target).Exists && storedHash(t.src.Target) == hash {
		t.use()
		prog.note(t.label(), "Up to date:", displayPath(opts.Plan, t.src.Target), "unchanged since its last build", rowDone)
		return nil
	}
	r := prog.add(t.label(), "Building", displayPath(opts.Plan, b.Definition))
	start := time.Now()
	err = opts.Runtime.BuildImage(ctx, singularity.BuildSpec{
		Definition: b.Definition, Dest: t.src.Target, Dir: b.Context, Fakeroot: opts.Fakeroot, Phase: r.phase,
	})
	if err != nil {
		r.finish(rowFailed, "", "")
		t.buildErr = t.errorf("build", "%v", err)
		return nil
	}
	t.built = true
	t.use()
	if err := storeHash(t.src.Target, hash); err != nil {
		r.finish(rowDone, "Built", doneText(t.src.Target, time.Since(start)))
		return t.errorf("build", "built, but its hash could not be kept: %v", err)
	}
	r.finish(rowDone, "Built", doneText(t.src.Target, time.Since(start)))
	return nil
}

// outcome reports what went wrong for t, if anything: a failed pull or
// build, or (for up) an image still missing.
func (t *imageTask) outcome(opts Options) error {
	switch {
	case t.buildErr != nil && t.pullErr != nil:
		return errors.Join(t.errorf("image", "%v", t.pullErr), t.buildErr)
	case t.buildErr != nil:
		return t.buildErr
	case t.pullErr != nil:
		if opts.Mode == ForPull && (opts.IgnorePullFailures || t.src.Build != nil) {
			return nil
		}
		if opts.Mode == ForUp && stateOf(t.services[0].Image).Exists && t.src.Build != nil {
			return nil
		}
		return t.errorf("image", "%v", t.pullErr)
	}
	if opts.Mode != ForUp || stateOf(t.services[0].Image).Exists {
		return nil
	}
	src := t.src
	key := "image"
	if t.services[0].ImageRef == "" {
		key = "build"
	}
	switch {
	case opts.Pull == compose.PullNever && src.Pull != "":
		return t.errorf(key, "no SIF for %q (looked for %s), and --pull never; pull it with: sstack pull %s", src.Name, strings.Join(src.Tried, ", "), t.services[0].Name)
	case opts.NoBuild && src.Build != nil && src.Pull == "":
		return t.errorf(key, "no SIF of the image built from %s (looked for %s), and --no-build; build it with: sstack build %s", src.Build.Definition, strings.Join(src.Tried, ", "), t.services[0].Name)
	case src.Missing != "":
		return t.errorf(key, "%s", src.Missing)
	}
	return t.errorf(key, "%s does not exist", t.services[0].Image)
}

// Check refuses a plan whose images are missing (a caller that did
// not run Images with ForUp, or --pull never): nothing would start.
func Check(plan *compose.Plan, services []string) error {
	var errs []error
	for i := range plan.Services {
		s := &plan.Services[i]
		if !slices.Contains(services, s.Name) {
			continue
		}
		if _, err := os.Stat(s.Image); err == nil {
			continue
		}
		msg := s.Image + " does not exist"
		if s.ImageSource != nil && s.ImageSource.Missing != "" {
			msg = s.ImageSource.Missing
		}
		errs = append(errs, fmt.Errorf("service %q: image: %s", s.Name, msg))
	}
	return errors.Join(errs...)
}

func doneText(path string, took time.Duration) string {
	size := ""
	if fi, err := os.Stat(path); err == nil {
		size = humanSize(fi.Size()) + ", "
	}
	return fmt.Sprintf("%s%.1fs", size, took.Seconds())
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// displayPath shows p relative to the project directory when below it.
func displayPath(plan *compose.Plan, p string) string {
	if rest, ok := strings.CutPrefix(p, plan.WorkingDir+"/"); ok {
		return "./" + rest
	}
	return p
}

// ToRemove are the SIFs `down --rmi` removes, as docker compose's:
// "local" those built under the name compose gives a build without
// image: (<project>-<service>), "all" every image sstack pulls or builds
// for the project. A path given as image:, and a file of apptainer
// pull's own name fetched by hand, are the user's: never removed.
func ToRemove(plan *compose.Plan, mode string) []string {
	var out []string
	for _, s := range plan.Services {
		src := s.ImageSource
		if src == nil || src.Pull == "" && src.Build == nil {
			continue
		}
		if mode == "local" && (s.ImageRef != "" || src.Build == nil) {
			continue
		}
		if !slices.Contains(out, src.Target) {
			out = append(out, src.Target)
		}
	}
	return out
}

// Remove removes the SIFs (and their build hashes) and says so.
func Remove(plan *compose.Plan, paths []string, progress io.Writer) error {
	var errs []error
	for _, p := range paths {
		err := os.Remove(p)
		switch {
		case err == nil:
			fmt.Fprintf(progress, "Image %s  Removed\n", displayPath(plan, p))
		case !os.IsNotExist(err):
			errs = append(errs, fmt.Errorf("down --rmi: %w", err))
		}
		_ = os.Remove(hashFileOf(p))
	}
	return errors.Join(errs...)
}

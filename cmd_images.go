package main

// Images: `sstack pull`, `sstack build`, up's --pull/--build/--no-build,
// and config's warnings for missing images.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"sstack/compose"
	"sstack/internal/images"
)

// imageFlags are the flags of pull, build and up about images.
type imageFlags struct {
	// up
	pull    string
	build   bool
	noBuild bool
	// pull
	policy             string
	ignoreBuildable    bool
	ignorePullFailures bool
	includeDeps        bool
	// pull, build
	quiet   bool
	noCache bool
}

// imageUpFlags declares up's flags about images (on up and the root).
func imageUpFlags(c *cobra.Command, o *options) {
	f := c.Flags()
	f.StringVar(&o.images.pull, "pull", "", `Pull images before starting: "always", "missing" or "never" (default: each service's pull_policy, missing if none)`)
	f.BoolVar(&o.images.build, "build", false, "Build images before starting (those whose definition file or context changed)")
	f.BoolVar(&o.images.noBuild, "no-build", false, "Don't build an image, even if it is missing")
}

func newPull(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:   "pull [OPTIONS] [SERVICE...]",
		Short: "Pull service images with apptainer pull into the image directory",
		Long: `Pull service images with apptainer pull into the image directory, as
docker compose pull does: services with pull_policy never or build are
skipped, and so are present images with pull_policy missing (or --policy
missing). Apptainer's own settings apply: APPTAINER_NOHTTPS=1 for a
registry without TLS, APPTAINER_CACHEDIR, APPTAINER_DOCKER_USERNAME and
APPTAINER_DOCKER_PASSWORD, or 'apptainer registry login'.`,
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := o.images
			switch f.policy {
			case "", compose.PullMissing, compose.PullAlways:
			default:
				return &usageError{fmt.Errorf("--policy %q: use missing or always", f.policy)}
			}
			o.named = args
			plan, err := o.load()
			if err != nil {
				return err
			}
			services := args
			if f.includeDeps && len(args) > 0 {
				// A name not in the plan stays, for pull to report.
				services = plan.WithDependencies(args)
				for _, a := range args {
					if plan.Service(a) == nil {
						services = append(services, a)
					}
				}
			}
			return o.images.run(cmd.Context(), o, plan, images.Options{
				Mode: images.ForPull, Services: services, Pull: f.policy,
				IgnoreBuildable: f.ignoreBuildable, IgnorePullFailures: f.ignorePullFailures,
			}, o.stderr, false)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.images.policy, "policy", "", `Apply pull policy ("missing"|"always")`)
	fl.BoolVar(&o.images.ignoreBuildable, "ignore-buildable", false, "Ignore images that can be built")
	fl.BoolVar(&o.images.ignorePullFailures, "ignore-pull-failures", false, "Pull what it can and ignore images with pull failures")
	fl.BoolVar(&o.images.includeDeps, "include-deps", false, "Also pull services declared as dependencies")
	fl.BoolVarP(&o.images.quiet, "quiet", "q", false, "Pull without printing progress information")
	return c
}

func newBuild(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:   "build [OPTIONS] [SERVICE...]",
		Short: "Build service images from Apptainer definition files",
		Long: `Build the images of services whose build: names an Apptainer definition
file (build.dockerfile naming a file that starts with Bootstrap:, or
x-sstack.definition), with apptainer build in the build context, into the
image directory under the image: name or <project>-<service>. An image
whose definition file and context are unchanged since its last build is
not built again. A Dockerfile cannot be built by Apptainer: the message
says what works instead.`,
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.named = args
			plan, err := o.load()
			if err != nil {
				return err
			}
			return o.images.run(cmd.Context(), o, plan, images.Options{
				Mode: images.ForBuild, Services: args, NoCache: o.images.noCache,
			}, o.stderr, false)
		},
	}
	c.Flags().BoolVar(&o.images.noCache, "no-cache", false, "Build even the images that did not change")
	c.Flags().BoolVarP(&o.images.quiet, "quiet", "q", false, "Don't print anything to stdout")
	return c
}

// upImages gets what up needs before it starts anything: missing images
// pulled or built, as pull_policy and --pull/--build/--no-build say.
// status receives the progress; detached is true in up -d's background
// process, which has no terminal.
func upImages(ctx context.Context, o *options, plan *compose.Plan, status io.Writer, detached bool) error {
	f := o.images
	if f.build && f.noBuild {
		return &usageError{errors.New("--build and --no-build cannot be combined")}
	}
	switch f.pull {
	case "", compose.PullAlways, compose.PullMissing, compose.PullNever:
	default:
		return &usageError{fmt.Errorf("--pull %q: use always, missing or never", f.pull)}
	}
	return f.run(ctx, o, plan, images.Options{
		Mode: images.ForUp, Pull: f.pull, Build: f.build, NoBuild: f.noBuild,
	}, status, detached)
}

// run fills in what every image command shares and gets the images; a
// Ctrl-C ends the pulls and builds, leaving no partial SIF.
func (f imageFlags) run(ctx context.Context, o *options, plan *compose.Plan, opts images.Options, status io.Writer, detached bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	rt, parallel, err := o.runtimeWithLimit()
	if err != nil {
		return err
	}
	opts.Plan, opts.Runtime, opts.Parallel = plan, rt, parallel
	opts.Fakeroot = os.Geteuid() != 0
	if !f.quiet {
		opts.Progress = status
		if file, ok := status.(*os.File); ok && !detached && term.IsTerminal(int(file.Fd())) {
			opts.Terminal = true
			opts.Width, _, _ = term.GetSize(int(file.Fd()))
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	err = images.Get(ctx, opts)
	if ctx.Err() != nil && err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	return err
}

// warnMissingImages prints config's warning for each missing image, with
// the command that fetches or builds it.
func warnMissingImages(o *options, plan *compose.Plan) {
	for _, w := range plan.MissingImages() {
		fmt.Fprintf(o.stderr, "WARN %s\n", w)
	}
}

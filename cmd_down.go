package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/images"
)

func newDown(o *options) *cobra.Command {
	var rmi string
	var removeOrphans bool
	c := &cobra.Command{
		Use:               "down [OPTIONS] [SERVICE...]",
		Short:             "Stop and remove the instances and the state of a project (named volumes stay unless -v); with SERVICE, only those services and their dependents",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rmi != "" && rmi != "local" && rmi != "all" {
				return &usageError{fmt.Errorf("--rmi %q: use local or all", rmi)}
			}
			return downServices(o, args, rmi, removeOrphans)
		},
	}
	c.Flags().BoolVar(&removeOrphans, "remove-orphans", false, "Also remove the instances of services that are not in the compose file")
	c.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "Also remove named volumes")
	c.Flags().IntVarP(&o.timeout, "timeout", "t", -1, "Seconds to wait for the stop signal to work before SIGKILL (default: stop_grace_period)")
	c.Flags().StringVar(&rmi, "rmi", "", `Remove the images sstack pulled or built for the services: "local" those built without an image: name, "all" all of them`)
	return c
}

// down takes the project down: api.Stack's Down, through the supervisor
// if one runs (the same graceful teardown as Ctrl-C), and what is left.
func down(o *options) error { return downServices(o, nil, "", true) }

// downServices is down; with services, only those and their dependents
// are taken down (the stack goes on, its state stays), and with rmi the
// images sstack fetched for the services are removed after. Unless
// removeOrphans, the instances of services the compose file no longer has
// (orphans) stay, with a warning, as docker compose does.
func downServices(o *options, services []string, rmi string, removeOrphans bool) error {
	project, stateDir, err := o.stateDir()
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	var plan *compose.Plan
	orphansStay := false
	if len(services) == 0 && !removeOrphans {
		if services, err = o.withoutOrphans(project, stateDir); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		if services != nil && len(services) == 0 {
			return nil // only orphans run
		}
		orphansStay = services != nil
	}
	if rmi != "" || len(services) > 0 {
		o.named = services
		// The compose file names the images, and the dependents when
		// no supervisor does.
		if plan, err = o.load(); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		for _, s := range services {
			if plan.Service(s) == nil {
				return fmt.Errorf("down: %w", &api.NoServiceError{Name: s, Known: plan.ServiceNames()})
			}
		}
	}
	// Naming every service (with their dependents) is the whole stack.
	if partial := orphansStay || len(services) > 0 && len(plan.WithDependents(services)) < len(plan.Services); !partial {
		services = nil
	}
	st, closeFn, err := o.openStack(stateDir, plan)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx := context.Background()
	if info, _ := st.Info(ctx); info.Supervised && len(services) == 0 {
		fmt.Fprintf(o.stderr, "Waiting for the supervisor of %s (pid %d) to take the stack down\n", project, info.Pid)
	}
	if err := st.Down(ctx, api.DownOptions{Volumes: o.volumes, Timeout: o.stopTimeout(), Services: services}); err != nil || rmi == "" {
		return err
	}
	return images.Remove(plan, images.ToRemove(plan, rmi), o.stderr)
}

// withoutOrphans finds the services of the project that run but are not
// in its compose file (orphans) and warns about them; it returns nil when
// there are none (or no compose file to tell), else the services of the
// file that run, which down takes down alone.
func (o *options) withoutOrphans(project, stateDir string) ([]string, error) {
	// Services of profiles not enabled are the file's too, not orphans.
	opts := o.loadOptions()
	opts.Profiles = []string{"*"}
	plan, err := compose.Load(context.Background(), opts)
	if err != nil || plan.Project != project {
		return nil, nil // no compose file here: every service is the project's
	}
	st, closeFn, err := o.dialStack(stateDir)
	if err != nil {
		return nil, nil // down tells why
	}
	defer closeFn()
	ctx := context.Background()
	info, _ := st.Info(ctx)
	// What runs: every replica the supervisor has, or without one the
	// instances left running (not the replicas of an ended stack).
	rows, err := st.Ps(ctx, api.PsOptions{All: info.Supervised})
	if err != nil && info.Supervised {
		return nil, err
	}
	var orphans, keep []string
	for _, r := range rows {
		switch {
		case plan.Service(r.Service) == nil:
			orphans = append(orphans, r.Instance)
		case !slices.Contains(keep, r.Service):
			keep = append(keep, r.Service)
		}
	}
	if len(orphans) == 0 {
		return nil, nil
	}
	fmt.Fprintln(o.stderr, api.OrphansWarning(orphans).Line())
	if keep == nil {
		keep = []string{}
	}
	return keep, nil
}

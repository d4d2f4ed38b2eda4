package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"sstack/internal/projects"
)

// The commands of the original singularity-stack, as aliases.

func newDeploy(o *options) *cobra.Command {
	return stackAlias(o, "deploy", "singularity-stack's deploy: up -d -f FILE -n NAME", func(ctx context.Context) error {
		return upCmd(ctx, o, nil)
	})
}

func newUpdate(o *options) *cobra.Command {
	return stackAlias(o, "update", "singularity-stack's update: bring the running stack NAME to its compose file (up -d on a running stack)", func(context.Context) error {
		if err := o.converge.check(); err != nil {
			return err
		}
		done, err := upInRunningStack(o, nil)
		if !done && err == nil {
			err = &projects.NotRunningError{Project: o.project, Remedy: fmt.Sprintf("start it with 'sstack deploy -c FILE %s'", o.project)}
		}
		return err
	})
}

// stackAlias is a singularity-stack command on a stack NAME with -c FILE,
// detached, with up's flags.
func stackAlias(o *options, name, short string, run func(context.Context) error) *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   name + " [-c FILE] NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				o.files = append(o.files, file)
			}
			o.project, o.detach, o.projectFlag = args[0], true, "NAME"
			return run(cmd.Context())
		},
	}
	c.Flags().StringVarP(&file, "compose-file-c", "c", "", "Compose file (singularity-stack's -c)")
	upFlags(c, o)
	return c
}

func newRm(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:               "rm NAME",
		Short:             "singularity-stack's rm: down -n NAME",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProjects(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.project, o.projectFlag = args[0], "NAME"
			return down(o)
		},
	}
	c.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "Also remove named volumes")
	return c
}

func newList(o *options) *cobra.Command {
	c := newLs(o)
	c.Use, c.Short = "list", "singularity-stack's list: ls"
	return c
}

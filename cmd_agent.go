package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"sstack/internal/agent"
	"sstack/singularity"
)

// newAgent is the node side of a stack spread over a Slurm allocation:
// up runs it in one job step per node (internal/engine/cluster.go), never
// a user.
func newAgent(o *options) *cobra.Command {
	var listen string
	c := &cobra.Command{
		Use:    "agent",
		Short:  "Run this node's replicas for a supervisor (started by up inside a Slurm allocation)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token := os.Getenv(agent.TokenEnv)
			if token == "" {
				return errors.New("agent: " + agent.TokenEnv + " is not set: the agent is started by `sstack up` inside a Slurm allocation, not by hand")
			}
			// Nothing the agent starts needs to see it.
			_ = os.Unsetenv(agent.TokenEnv)
			rt, err := singularity.Detect(o.runtime)
			if err != nil {
				return err
			}
			_ = singularity.BecomeSubreaper()
			// srun SIGKILLs its task when it gets SIGTERM itself, but
			// forwards SIGUSR1: the supervisor's way to end an agent
			// that does not answer. SIGTERM comes from scancel -s TERM
			// or the job's end; the terminal's SIGHUP is not for the agent.
			signal.Ignore(syscall.SIGHUP)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
			defer stop()
			srv := agent.NewServer(rt, token, cmd.ErrOrStderr())
			srv.Node = os.Getenv("SLURMD_NODENAME")
			return srv.Serve(ctx, listen, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "host:port to listen on (port 0: any)")
	return c
}

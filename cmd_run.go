package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/engine"
)

// newRun is docker compose's run: a one-off replica of a service, its
// dependencies started first (detached, as up -d SERVICE would), its
// command attached, its exit code sstack's; it never restarts by policy.
func newRun(o *options) *cobra.Command {
	var rm, noDeps, noTTY, servicePorts bool
	var env, volumes, publish []string
	var workdir, entrypoint, name string
	c := &cobra.Command{
		Use:               "run [OPTIONS] SERVICE [COMMAND] [ARGS...]",
		Short:             "Run a one-off command in a new replica of a service",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, kv := range env {
				if !strings.Contains(kv, "=") {
					return &usageError{fmt.Errorf("-e %q: want KEY=VALUE", kv)}
				}
			}
			o.named = args[:1] // its profiles are enabled, as docker compose run does
			plan, err := o.load()
			if err != nil {
				return err
			}
			svc := plan.Service(args[0])
			if svc == nil {
				return &api.NoServiceError{Name: args[0], Known: serviceNames(plan)}
			}
			opts := engine.RunOptions{Plan: plan, Service: svc.Name, Env: env, WorkDir: workdir, Name: name}
			if len(args) > 1 {
				opts.Command = args[1:]
			}
			if entrypoint != "" {
				opts.Entrypoint = engine.SplitEntrypoint(entrypoint)
			}
			for _, v := range volumes {
				m, err := runBind(plan, v)
				if err != nil {
					return err
				}
				opts.Binds = append(opts.Binds, m)
			}
			if servicePorts {
				opts.Ports = svc.Ports
			}
			for _, p := range publish {
				port, err := compose.ParsePort(p)
				if err != nil {
					return &usageError{fmt.Errorf("-p %q: %w", p, err)}
				}
				opts.Ports = append(opts.Ports, port...)
			}
			if !noDeps {
				if err := startDependencies(o, plan, svc); err != nil {
					return err
				}
			}
			if opts.Runtime, err = o.runtimeBinary(); err != nil {
				return err
			}
			run, err := engine.StartOneOff(context.Background(), opts)
			if err != nil {
				return err
			}
			// --rm or not, the instance goes: Apptainer keeps no stopped
			// instance to remove later (README).
			defer run.Close()
			// A signal to sstack (a terminal's Ctrl-C also reaches the
			// command itself) ends the run: its instance is stopped, and
			// the command's exit code is sstack's.
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(sigs)
			go func() {
				if _, ok := <-sigs; ok {
					run.Stop()
				}
			}()
			return attach(o, opts.Runtime, run.Process, api.ExecTarget{Instance: run.Instance}, noTTY)
		},
	}
	f := c.Flags()
	f.SetInterspersed(false) // flags after SERVICE belong to the command
	f.BoolVar(&rm, "rm", false, "Remove the replica when it exits (always so: an instance leaves nothing when it stops)")
	f.BoolVar(&noDeps, "no-deps", false, "Don't start the service's dependencies")
	f.BoolVarP(&noTTY, "no-TTY", "T", false, "Disable pseudo-TTY allocation: the command gets no terminal")
	f.BoolVar(&servicePorts, "service-ports", false, "Publish the service's ports (only when the stack does not run)")
	f.StringArrayVarP(&env, "env", "e", nil, "Set environment variables (KEY=VALUE)")
	f.StringArrayVarP(&volumes, "volume", "v", nil, "Bind a host path: SRC:DST[:ro]")
	f.StringArrayVar(&publish, "publish", nil, "Publish a port: [HOST_IP:][HOST_PORT:]PORT[/PROTO] (no -p: it is the project flag, as -p of docker compose)")
	f.StringVarP(&workdir, "workdir", "w", "", "Working directory inside the instance")
	f.StringVar(&entrypoint, "entrypoint", "", "Override the service's entrypoint")
	f.StringVar(&name, "name", "", "Name of the one-off (its instance is PROJECT.SERVICE.NAME)")
	return c
}

func serviceNames(plan *compose.Plan) []string {
	names := make([]string, len(plan.Services))
	for i, s := range plan.Services {
		names[i] = s.Name
	}
	return names
}

// runBind reads -v SRC:DST[:ro]; SRC relative to the project directory.
func runBind(plan *compose.Plan, v string) (compose.Mount, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") || len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return compose.Mount{}, &usageError{fmt.Errorf("-v %q: want SRC:DST or SRC:DST:ro, DST absolute", v)}
	}
	src := parts[0]
	if !filepath.IsAbs(src) {
		src = filepath.Join(plan.WorkingDir, src)
	}
	if _, err := os.Stat(src); err != nil {
		return compose.Mount{}, fmt.Errorf("-v %s: %w", v, err)
	}
	return compose.Mount{Kind: compose.MountBind, Source: src, Target: parts[1], ReadOnly: len(parts) == 3 && parts[2] == "ro"}, nil
}

// startDependencies starts the service's dependencies detached, as
// `sstack up -d DEP...` (into the running stack when there is one).
func startDependencies(o *options, plan *compose.Plan, svc *compose.Service) error {
	var deps []string
	for _, d := range svc.DependsOn {
		if plan.Service(d.Service) != nil {
			deps = append(deps, d.Service)
		}
	}
	if len(deps) == 0 {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-n", plan.Project, "--metrics-addr", o.metricsAddr}
	for _, f := range plan.ConfigFiles {
		args = append(args, "--file", f)
	}
	for _, f := range o.envFiles {
		args = append(args, "--env-file", f)
	}
	for _, p := range o.profiles {
		args = append(args, "--profile", p)
	}
	if o.runtime != "" {
		args = append(args, "--runtime", o.runtime)
	}
	if o.imageDir != "" {
		args = append(args, "--image-dir", o.imageDir)
	}
	if o.network != "" {
		args = append(args, "--network", o.network)
	}
	cmd := exec.Command(self, append(append(args, "up", "-d"), deps...)...)
	cmd.Stdout, cmd.Stderr = o.stderr, o.stderr
	if err := cmd.Run(); err != nil {
		if cmd.ProcessState != nil {
			return &exitError{cmd.ProcessState.ExitCode()}
		}
		return err
	}
	return nil
}

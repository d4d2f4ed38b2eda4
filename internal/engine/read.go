package engine

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"sstack/internal/agent"
	"sstack/internal/api"
	"sstack/internal/projects"
)

// The api.Stack methods that read what the stack is and does: ps, info,
// top, stats, and where exec reaches a replica.

func (s *Supervisor) info() api.ProjectInfo {
	return api.ProjectInfo{
		Name: s.plan().Project, ConfigFiles: s.plan().ConfigFiles, StateDir: s.plan().StateDir,
		Pid: os.Getpid(), Supervised: true, Detached: s.opts.Detached, Started: s.started,
	}
}

// Info implements api.Stack.
func (s *Supervisor) Info(ctx context.Context) (api.ProjectInfo, error) {
	if err := s.awaitStart(ctx); err != nil {
		return api.ProjectInfo{}, err
	}
	info := s.info()
	rows, err := s.sys.Ps()
	if err != nil {
		return info, err
	}
	info.Status = projects.Status(rows)
	return info, nil
}

func (s *Supervisor) checkServices(names []string) error {
	for _, n := range names {
		if s.plan().Service(n) == nil {
			return &api.NoServiceError{Name: n, Known: s.plan().ServiceNames()}
		}
	}
	return nil
}

// Ps implements api.Stack.
func (s *Supervisor) Ps(ctx context.Context, opts api.PsOptions) ([]api.Replica, error) {
	rows, err := s.rows(ctx, opts.Services)
	if err != nil {
		return nil, err
	}
	return opts.Filter(rows), nil
}

// rows are the replica rows, once the actors run and the services named
// are known to exist.
func (s *Supervisor) rows(ctx context.Context, services []string) ([]api.Replica, error) {
	if err := s.awaitStart(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServices(services); err != nil {
		return nil, err
	}
	rows, err := s.sys.Ps()
	for i := range rows {
		s.nets.annotate(&rows[i])
	}
	return rows, err
}

// Top implements api.Stack.
func (s *Supervisor) Top(ctx context.Context, opts api.TopOptions) ([]api.TopReplica, error) {
	rows, err := s.rows(ctx, opts.Services)
	if err != nil {
		return nil, err
	}
	return Top(ctx, s.rt, s.plan().Project, api.PsOptions{Services: opts.Services}.Filter(rows))
}

// Stats implements api.Stack: what each active replica (ps without -a)
// uses, read on its node.
func (s *Supervisor) Stats(ctx context.Context, opts api.StatsOptions) ([]api.ReplicaStats, error) {
	rows, err := s.rows(ctx, opts.Services)
	if err != nil {
		return nil, err
	}
	stats, err := s.stats(ctx, api.PsOptions{Services: opts.Services}.Filter(rows))
	if len(stats) > 0 {
		return stats, nil // a node that did not answer leaves its replicas out
	}
	return stats, err
}

// scrapeUsage is Stats for the metrics, at scrape time; nothing before
// the actors run.
func (s *Supervisor) scrapeUsage(ctx context.Context) ([]api.ReplicaStats, error) {
	select {
	case <-s.ready:
	default:
		return nil, nil
	}
	rows, err := s.sys.Ps()
	if err != nil {
		return nil, err
	}
	return s.stats(ctx, api.PsOptions{}.Filter(rows))
}

func (s *Supervisor) stats(ctx context.Context, rows []api.Replica) ([]api.ReplicaStats, error) {
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		if r.Supervised && r.Instance != "" {
			names = append(names, r.Instance)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	use, err := s.runtime.Usage(ctx, names)
	now := time.Now()
	var out []api.ReplicaStats
	for _, r := range rows {
		if u, ok := use[r.Instance]; ok {
			out = append(out, api.ReplicaStats{Name: r.Name, Service: r.Service, Replica: r.Replica,
				Instance: r.Instance, Node: r.Node, Time: now, Usage: u})
		}
	}
	return out, err
}

// ExecTarget implements api.Stack.
func (s *Supervisor) ExecTarget(ctx context.Context, opts api.ExecOptions) (api.ExecTarget, error) {
	if err := s.awaitStart(ctx); err != nil {
		return api.ExecTarget{}, err
	}
	svc := s.plan().Service(opts.Service)
	if svc == nil {
		return api.ExecTarget{}, &api.NoServiceError{Name: opts.Service, Known: s.plan().ServiceNames()}
	}
	index := opts.Index
	if index == 0 {
		index = 1
	}
	rows, err := s.sys.Ps()
	if err != nil {
		return api.ExecTarget{}, err
	}
	for _, r := range rows {
		if r.Service != opts.Service || r.Replica != index {
			continue
		}
		if r.State != api.StateRunning {
			return api.ExecTarget{}, fmt.Errorf("%s is %s, not running; start it with 'sstack start %s': %w", r.Name, r.Status(), r.Service, api.ErrReplicaNotRunning)
		}
		svc = svc.ForReplica(index)
		n := s.nets.execNet(svc.Name, index) // nets is set once Up has succeeded
		t := api.ExecTarget{Instance: r.Instance, Env: svc.Environment, Pwd: svc.WorkingDir, NetHolder: n.Holder, NetUserNS: n.UserNS}
		if s.cluster != nil && r.Node != "" {
			t.Node, t.Job = r.Node, s.cluster.job
			t.Env = append(slices.Clip(t.Env), agent.NodeEnv+"="+r.Node)
		}
		return t, nil
	}
	return api.ExecTarget{}, fmt.Errorf("service %q has no replica %d: %w", opts.Service, index, api.ErrReplicaNotRunning)
}

package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"sstack/internal/usage"
	"sstack/singularity"
)

// Placed is the runtime of a stack spread over nodes: each call goes to
// the agent of the node the instance is placed on.
type Placed struct {
	mu    sync.Mutex
	nodes map[string]*Remote // by node name
	order []*Remote
	where map[string]string // instance name -> node name
}

var _ singularity.Runtime = (*Placed)(nil)

// NewPlaced serves the given nodes.
func NewPlaced(remotes []*Remote) *Placed {
	p := &Placed{nodes: map[string]*Remote{}, where: map[string]string{}, order: remotes}
	for _, r := range remotes {
		p.nodes[r.Node] = r
	}
	return p
}

// Place records that instance runs on node (before it is started).
func (p *Placed) Place(instance, node string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nodes[node] == nil {
		return fmt.Errorf("instance %q: node %s is not one of the allocation's", instance, node)
	}
	p.where[instance] = node
	return nil
}

// NodeOf is the node instance is placed on, "" if none.
func (p *Placed) NodeOf(instance string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.where[instance]
}

// Remotes are the nodes, in the allocation's order.
func (p *Placed) Remotes() []*Remote { return p.order }

func (p *Placed) remote(instance string) (*Remote, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.nodes[p.where[instance]]
	if r == nil {
		return nil, fmt.Errorf("instance %q is placed on no node", instance)
	}
	return r, nil
}

// StartAll launches the agents of the nodes want says yes to, at once;
// the first error wins.
func (p *Placed) StartAll(ctx context.Context, want func(node string) bool) error {
	errs := make(chan error, len(p.order))
	n := 0
	for _, r := range p.order {
		if want(r.Node) {
			n++
			go func() { errs <- r.Start(ctx) }()
		}
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Close shuts every agent down at once.
func (p *Placed) Close(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range p.order {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Close(ctx) }()
	}
	wg.Wait()
}

func (p *Placed) StartInstance(ctx context.Context, spec singularity.InstanceSpec) error {
	r, err := p.remote(spec.Name)
	if err != nil {
		return err
	}
	return r.StartInstance(ctx, spec)
}

func (p *Placed) StopInstance(ctx context.Context, name string, sig string, timeout time.Duration) error {
	r, err := p.remote(name)
	if err != nil {
		return fmt.Errorf("%v: %w", err, singularity.ErrNoInstance)
	}
	return r.StopInstance(ctx, name, sig, timeout)
}

// ListInstances asks every live agent; a node whose agent is gone has no
// instance left (its step took them).
func (p *Placed) ListInstances(ctx context.Context, glob string) ([]singularity.InstanceInfo, error) {
	type result struct {
		infos []singularity.InstanceInfo
		err   error
	}
	results := make(chan result, len(p.order))
	for _, r := range p.order {
		go func() {
			infos, err := r.ListInstances(ctx, glob)
			results <- result{infos, err}
		}()
	}
	var all []singularity.InstanceInfo
	var first error
	for range p.order {
		res := <-results
		all = append(all, res.infos...)
		if res.err != nil && first == nil {
			first = res.err
		}
	}
	return all, first
}

func (p *Placed) StartProcess(ctx context.Context, spec singularity.ProcessSpec) (singularity.Process, error) {
	r, err := p.remote(spec.Instance)
	if err != nil {
		return nil, err
	}
	return r.StartProcess(ctx, spec)
}

func (p *Placed) Exec(ctx context.Context, spec singularity.ProcessSpec) (int, []byte, error) {
	r, err := p.remote(spec.Instance)
	if err != nil {
		return 0, nil, err
	}
	return r.Exec(ctx, spec)
}

func (p *Placed) EndRun(ctx context.Context, instance string) (int, error) {
	r, err := p.remote(instance)
	if err != nil {
		return 0, err
	}
	return r.EndRun(ctx, instance)
}

// Usage asks the agent of each node that runs some of the instances, all
// at once; instances placed nowhere are left out.
func (p *Placed) Usage(ctx context.Context, instances []string) (map[string]usage.Usage, error) {
	byNode := map[*Remote][]string{}
	p.mu.Lock()
	for _, name := range instances {
		if r := p.nodes[p.where[name]]; r != nil {
			byNode[r] = append(byNode[r], name)
		}
	}
	p.mu.Unlock()
	type result struct {
		u   map[string]usage.Usage
		err error
	}
	results := make(chan result, len(byNode))
	for r, names := range byNode {
		go func() {
			u, err := r.Usage(ctx, names)
			results <- result{u, err}
		}()
	}
	all := map[string]usage.Usage{}
	var first error
	for range byNode {
		res := <-results
		for k, v := range res.u {
			all[k] = v
		}
		if res.err != nil && first == nil {
			first = res.err
		}
	}
	return all, first
}

// SeedVolume seeds on the node of the instance the volume is made for.
func (p *Placed) SeedVolume(ctx context.Context, spec singularity.SeedSpec) error {
	r, err := p.remote(spec.Instance)
	if err != nil {
		return fmt.Errorf("seeding %s: %w", spec.HostDir, err)
	}
	return r.SeedVolume(ctx, spec)
}

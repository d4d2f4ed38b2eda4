package compose

// depends_on: checks, start order and cycles.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// dependencies fills DependsOn and checks every dependency can be met.
func (t *translator) dependencies(services map[string]*Service) {
	for _, name := range sortedKeys(services) {
		s := services[name]
		sc := t.p.Services[name]
		for _, dep := range sortedKeys(sc.DependsOn) {
			cfg := sc.DependsOn[dep]
			key := fmt.Sprintf("depends_on %q", dep)
			cond := cfg.Condition
			switch cond {
			case "":
				cond = ConditionStarted
			case ConditionStarted, ConditionHealthy, ConditionCompletedSuccessfully:
			default:
				t.fail(name, key, "unknown condition %q; use %s, %s or %s", cond, ConditionStarted, ConditionHealthy, ConditionCompletedSuccessfully)
				continue
			}
			if disabled, ok := t.p.DisabledServices[dep]; ok {
				if cfg.Required {
					t.fail(name, key, "service %q is not enabled: it has profiles %s; enable one with --profile %s, or set required: false",
						dep, strings.Join(disabled.Profiles, ", "), disabled.Profiles[0])
				} else {
					t.warn(name, key, "optional dependency: service %q is not enabled (profiles %s); starting without it", dep, strings.Join(disabled.Profiles, ", "))
				}
				continue
			}
			if _, ok := t.p.Services[dep]; !ok {
				t.fail(name, key, "there is no service %q in the project; fix the name or remove the dependency", dep)
				continue
			}
			if t.scaledDown[dep] {
				if cfg.Required {
					t.fail(name, key, "service %q has 0 replicas and is never started; scale it up, or set required: false", dep)
				} else {
					t.warn(name, key, "optional dependency: service %q has 0 replicas; starting without it", dep)
				}
				continue
			}
			if target := services[dep]; target != nil && cond == ConditionHealthy && target.Healthcheck == nil {
				t.fail(name, key, "condition %s, but service %q has no healthcheck (an image's HEALTHCHECK cannot be read from a SIF); add a healthcheck to %q or use condition %s",
					cond, dep, dep, ConditionStarted)
			}
			s.DependsOn = append(s.DependsOn, Dependency{Service: dep, Condition: cond, Required: cfg.Required, Restart: cfg.Restart})
		}
	}
}

// order sorts services so that each comes after its dependencies, ties
// broken by name, and reports dependency cycles.
func (t *translator) order(services map[string]*Service) []string {
	names := sortedKeys(services)
	deps := func(name string) []string {
		var out []string
		for _, d := range services[name].DependsOn {
			if services[d.Service] != nil {
				out = append(out, d.Service)
			}
		}
		return out
	}

	// Cycles: depth-first search, reporting each cycle once.
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	reported := map[string]bool{}
	var stack []string
	var visit func(string)
	visit = func(n string) {
		state[n] = visiting
		stack = append(stack, n)
		for _, d := range deps(n) {
			switch state[d] {
			case visiting:
				cycle := append(slices.Clone(stack[slices.Index(stack, d):]), d)
				id := cycleID(cycle)
				if !reported[id] {
					reported[id] = true
					t.fail(cycle[0], "depends_on", "dependency cycle %s; remove one of these dependencies", strings.Join(cycle, " -> "))
				}
			case unvisited:
				visit(d)
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
	}
	for _, n := range names {
		if state[n] == unvisited {
			visit(n)
		}
	}

	// Kahn's algorithm, always taking the smallest ready name.
	pending := map[string]int{}
	dependents := map[string][]string{}
	for _, n := range names {
		for _, d := range deps(n) {
			pending[n]++
			dependents[d] = append(dependents[d], n)
		}
	}
	var ready, order []string
	for _, n := range names {
		if pending[n] == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		slices.Sort(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, m := range dependents[n] {
			if pending[m]--; pending[m] == 0 {
				ready = append(ready, m)
			}
		}
	}
	if len(order) < len(names) {
		// Only with a cycle, already reported; keep the rest for the
		// other checks.
		for _, n := range names {
			if !slices.Contains(order, n) {
				order = append(order, n)
			}
		}
	}
	return order
}

// cycleID names a cycle independently of where the search entered it.
func cycleID(cycle []string) string {
	ring := cycle[:len(cycle)-1]
	i := slices.Index(ring, slices.Min(ring))
	return strings.Join(append(slices.Clone(ring[i:]), ring[:i]...), " ")
}

// WithDependents are the services named and those that depend on them,
// directly or not (required or not), in the plan's order.
func (p *Plan) WithDependents(names []string) []string {
	in := map[string]bool{}
	for _, n := range names {
		in[n] = true
	}
	for grew := true; grew; {
		grew = false
		for _, svc := range p.Services {
			if in[svc.Name] {
				continue
			}
			for _, d := range svc.DependsOn {
				if in[d.Service] {
					in[svc.Name], grew = true, true
					break
				}
			}
		}
	}
	var out []string
	for _, svc := range p.Services {
		if in[svc.Name] {
			out = append(out, svc.Name)
		}
	}
	return out
}

// RestartFollowers are the services that restart when one of services
// restarts: those that depend on one of them with restart: true, and so
// on down the chain (services themselves are not included).
func (p *Plan) RestartFollowers(services []string) []string {
	restarted := map[string]bool{}
	for _, s := range services {
		restarted[s] = true
	}
	var out []string
	for grew := true; grew; {
		grew = false
		for _, svc := range p.Services {
			if restarted[svc.Name] {
				continue
			}
			for _, d := range svc.DependsOn {
				if d.Restart && restarted[d.Service] {
					restarted[svc.Name], grew = true, true
					out = append(out, svc.Name)
					break
				}
			}
		}
	}
	return out
}

// WithDependencies are the services named and those they depend on,
// directly or not, in the plan's order; names not in the plan are left
// out.
func (p *Plan) WithDependencies(names []string) []string {
	in := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		s := p.Service(n)
		if s == nil || in[n] {
			return
		}
		in[n] = true
		for _, d := range s.DependsOn {
			visit(d.Service)
		}
	}
	for _, n := range names {
		visit(n)
	}
	var out []string
	for _, s := range p.Services {
		if in[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out
}

// setAside keeps the errors of the project and of the selected services
// (nil: all); with file, the others go to their services' Problems.
func (p *Plan) setAside(errs []error, selected []string, file bool) []error {
	if selected == nil {
		return errs
	}
	var kept []error
	for _, err := range errs {
		var e *Error
		if errors.As(err, &e) && e.Service != "" && !slices.Contains(selected, e.Service) {
			if s := p.Service(e.Service); s != nil {
				if file {
					s.Problems = append(s.Problems, err)
				}
				continue
			}
		}
		kept = append(kept, err)
	}
	return kept
}

// CheckSelected is Check for the services selected and their
// dependencies (none: every service): the others are not started now.
func (p *Plan) CheckSelected(services []string) error {
	var selected []string
	if len(services) > 0 {
		selected = p.WithDependencies(services)
	}
	return errors.Join(p.setAside(p.problems(), selected, false)...)
}

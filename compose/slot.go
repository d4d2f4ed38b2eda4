package compose

// {{.Task.Slot}}: the replica number, from 1, in the values that differ
// per replica (docker stack's service templates, as singularity-stack
// also offers). The plan keeps the template as written; the supervisor
// asks for each replica's own copy with ForReplica.

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// SlotTemplate is the template replaced by the replica number.
const SlotTemplate = "{{.Task.Slot}}"

// slotRE matches SlotTemplate with any spacing inside the braces, as Go's
// text/template accepts it: {{.Task.Slot}}, {{ .Task.Slot }}.
var slotRE = regexp.MustCompile(`\{\{\s*\.Task\.Slot\s*\}\}`)

func hasSlot(s string) bool { return strings.Contains(s, "{{") && slotRE.MatchString(s) }

// expandSlot replaces every slot template in s by n.
func expandSlot(s string, n int) string {
	if !hasSlot(s) {
		return s
	}
	return slotRE.ReplaceAllLiteralString(s, strconv.Itoa(n))
}

func expandSlots(values []string, n int) []string {
	if values == nil {
		return nil
	}
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = expandSlot(v, n)
	}
	return out
}

// HasSlotTemplate reports whether any value ForReplica replaces holds a
// slot template, i.e. whether the replicas of s differ.
func (s *Service) HasSlotTemplate() bool {
	strs := slices.Concat(s.Entrypoint, s.Command, s.Environment, []string{s.WorkingDir, s.Hostname})
	if s.Healthcheck != nil {
		strs = append(strs, s.Healthcheck.Test...)
	}
	for _, m := range s.Mounts {
		strs = append(strs, m.Source, m.Target)
	}
	return slices.ContainsFunc(strs, hasSlot)
}

// ForReplica returns the service as replica n (from 1) runs it: every
// slot template in the entrypoint, command, environment values, working
// directory, healthcheck test and mount paths replaced by n. The copy
// shares nothing that it changes with s, so s (the plan) keeps its
// templates; a mount's generated Content is shared, unchanged.
func (s *Service) ForReplica(n int) *Service {
	r := *s
	r.Entrypoint = expandSlots(s.Entrypoint, n)
	r.Command = expandSlots(s.Command, n)
	if s.Environment != nil {
		r.Environment = make([]string, len(s.Environment))
		for i, kv := range s.Environment {
			// Values only: a key is a name, not per replica.
			if k, v, ok := strings.Cut(kv, "="); ok {
				kv = k + "=" + expandSlot(v, n)
			}
			r.Environment[i] = kv
		}
	}
	r.WorkingDir = expandSlot(s.WorkingDir, n)
	r.Hostname = expandSlot(s.Hostname, n)
	if s.Mounts != nil {
		r.Mounts = make([]Mount, len(s.Mounts))
		for i, m := range s.Mounts {
			m.Source, m.Target = expandSlot(m.Source, n), expandSlot(m.Target, n)
			r.Mounts[i] = m
		}
	}
	r.ExtraHosts = slices.Clone(s.ExtraHosts)
	r.DependsOn = slices.Clone(s.DependsOn)
	if s.Healthcheck != nil {
		h := *s.Healthcheck
		h.Test = expandSlots(h.Test, n)
		r.Healthcheck = &h
	}
	return &r
}

// slots are the replica numbers whose values must be checked: every one
// when any of values holds a slot template, else only the first (all are
// the same).
func slots(replicas int, values ...string) []int {
	if !slices.ContainsFunc(values, hasSlot) || replicas < 1 {
		return []int{1}
	}
	out := make([]int, replicas)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// pathEscapeKeepSlot escapes s as one path element, except its slot
// templates, which ForReplica replaces later.
func pathEscapeKeepSlot(s string) string {
	parts := slotRE.Split(s, -1)
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, SlotTemplate)
}

package compose

// What the compose specification expects at a path, in words, read from
// the JSON schema compose-go validates with: its own messages name only
// the last alternative it tried ("command must be a null").

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/schema"
)

type schemaNode = map[string]any

// CompileSchemaAhead starts compose-go's compilation of its JSON schema,
// which the first Load in a process otherwise does itself before it can
// validate anything (about 20 ms of CPU, the largest part of a load): up
// calls it before its other preparations so that the two overlap. The
// compilation happens once per process, whoever asks first.
func CompileSchemaAhead() {
	go func() { _ = schema.Validate(map[string]any{}) }()
}

var composeSchema = sync.OnceValue(func() schemaNode {
	var root schemaNode
	if err := json.Unmarshal([]byte(schema.Schema), &root); err != nil {
		return schemaNode{}
	}
	return root
})

// expected describes what the schema allows at path (a loader path such
// as services.web.command), e.g. "a string or a list of strings".
func expected(path string) string {
	segs := pathSegments(path)
	for i, s := range segs {
		if strings.HasPrefix(s, "[") {
			segs[i] = "0"
		}
	}
	root := composeSchema()
	nodes, ok := walkSchema(root, []schemaNode{root}, segs)
	if !ok {
		return "something else: see the compose specification"
	}
	d := describe(root, nodes, false)
	if d == "a string" && len(segs) > 0 && durationKeys[segs[len(segs)-1]] {
		// The schema has no type for durations.
		return "a duration such as 10s or 1m30s"
	}
	return d
}

// durationKeys are the keys whose strings are durations.
var durationKeys = map[string]bool{
	"stop_grace_period": true, "interval": true, "timeout": true, "start_period": true,
	"start_interval": true, "delay": true, "window": true, "monitor": true,
}

// walkSchema follows segs from nodes. A key may hold dots (a service
// "my.web"): the shortest one that leads to the end is taken.
func walkSchema(root schemaNode, nodes []schemaNode, segs []string) ([]schemaNode, bool) {
	if len(segs) == 0 {
		return nodes, true
	}
	for n := 1; n <= len(segs); n++ {
		key := strings.Join(segs[:n], ".")
		var kids []schemaNode
		for _, node := range nodes {
			kids = append(kids, schemaChildren(root, node, key)...)
		}
		if len(kids) == 0 {
			continue
		}
		if out, ok := walkSchema(root, kids, segs[n:]); ok {
			return out, true
		}
	}
	return nil, false
}

// facets are n and what it is made of ($ref, allOf, anyOf, oneOf).
func facets(root, n schemaNode) []schemaNode {
	var out []schemaNode
	var add func(n schemaNode, depth int)
	add = func(n schemaNode, depth int) {
		if n == nil || depth > 8 {
			return
		}
		out = append(out, n)
		if ref, ok := n["$ref"].(string); ok {
			add(resolveRef(root, ref), depth+1)
		}
		for _, k := range []string{"allOf", "anyOf", "oneOf"} {
			list, _ := n[k].([]any)
			for _, sub := range list {
				s, _ := sub.(schemaNode)
				add(s, depth+1)
			}
		}
	}
	add(n, 0)
	return out
}

func resolveRef(root schemaNode, ref string) schemaNode {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	var n any = root
	for _, part := range strings.Split(p, "/") {
		m, _ := n.(schemaNode)
		n = m[part]
	}
	out, _ := n.(schemaNode)
	return out
}

func schemaChildren(root, n schemaNode, key string) []schemaNode {
	var out []schemaNode
	for _, f := range facets(root, n) {
		found := false
		if props, ok := f["properties"].(schemaNode); ok {
			if c, ok := props[key].(schemaNode); ok {
				out, found = append(out, c), true
			}
		}
		if pats, ok := f["patternProperties"].(schemaNode); ok && !found {
			for pat, c := range pats {
				if re, err := regexp.Compile(pat); err == nil && re.MatchString(key) {
					if c, ok := c.(schemaNode); ok {
						out, found = append(out, c), true
					}
				}
			}
		}
		if c, ok := f["additionalProperties"].(schemaNode); ok && !found {
			out = append(out, c)
		}
		if c, ok := f["items"].(schemaNode); ok {
			if _, err := strconv.Atoi(key); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// describe puts the types the nodes allow into words; plural for the
// items of a list ("strings").
func describe(root schemaNode, nodes []schemaNode, plural bool) string {
	var kinds []string
	var items []schemaNode
	var enum []string
	var lo, hi *float64
	seen := map[string]bool{}
	addKind := func(k string) {
		if !seen[k] {
			seen[k] = true
			kinds = append(kinds, k)
		}
	}
	for _, n := range nodes {
		for _, f := range facets(root, n) {
			var ts []string
			switch t := f["type"].(type) {
			case string:
				ts = []string{t}
			case []any:
				for _, v := range t {
					if s, ok := v.(string); ok {
						ts = append(ts, s)
					}
				}
			}
			// "type": ["integer", "string"] allows a string for
			// interpolation ("${N}") only: say what the value must be.
			if len(ts) > 1 && slices.Contains(ts, "string") && !slices.Contains(ts, "null") &&
				slices.ContainsFunc(ts, func(s string) bool { return s == "integer" || s == "number" || s == "boolean" }) {
				ts = slices.DeleteFunc(ts, func(s string) bool { return s == "string" })
			}
			for _, t := range ts {
				addKind(t)
			}
			if it, ok := f["items"].(schemaNode); ok {
				items = append(items, it)
			}
			if e, ok := f["enum"].([]any); ok {
				for _, v := range e {
					enum = append(enum, fmt.Sprint(v))
				}
			}
			if v, ok := f["minimum"].(float64); ok {
				lo = &v
			}
			if v, ok := f["maximum"].(float64); ok {
				hi = &v
			}
		}
	}
	if len(enum) > 0 && !plural {
		return "one of " + orList(enum)
	}
	if len(kinds) > 1 {
		kinds = slices.DeleteFunc(kinds, func(k string) bool { return k == "null" })
	}
	order := []string{"string", "integer", "number", "boolean", "array", "object", "null"}
	slices.SortStableFunc(kinds, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	var words []string
	for _, k := range kinds {
		var w string
		switch k {
		case "string":
			w = pick(plural, "a string", "strings")
		case "integer", "number":
			w = pick(plural, "a number", "numbers")
			if k == "integer" {
				w = pick(plural, "a whole number", "whole numbers")
			}
			switch {
			case lo != nil && hi != nil:
				w += fmt.Sprintf(" from %v to %v", *lo, *hi)
			case lo != nil:
				w += fmt.Sprintf(" of %v or more", *lo)
			}
		case "boolean":
			w = pick(plural, "true or false", "booleans")
			if len(kinds) > 1 && !plural {
				w = "a boolean"
			}
		case "array":
			w = pick(plural, "a list", "lists")
			if len(items) > 0 && !plural {
				w += " of " + describe(root, items, true)
			}
		case "object":
			w = pick(plural, "a mapping", "mappings")
		case "null":
			w = "empty"
		default:
			w = k
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		return "something else: see the compose specification"
	}
	return orList(words)
}

func pick(plural bool, one, many string) string {
	if plural {
		return many
	}
	return one
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

package compose

// Rewording compose-go's errors: its loader reports in the words of its
// decoders (JSON schema paths, Go types such as 'uint64', strconv
// functions), and some of its errors name neither the service nor the
// key. Each is turned into an *Error that names the file when known, the
// service, and the key as the compose file spells it, and says what is
// expected.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v4"
)

var (
	schemaErrRE  = regexp.MustCompile(`(?s)^validating (.+?): (\S+) (.*)$`)
	castErrRE    = regexp.MustCompile(`(?s)^error while interpolating (\S+): failed to cast to expected type: (.*)$`)
	interpErrRE  = regexp.MustCompile(`(?s)^error while interpolating (\S+): (.*)$`)
	interpFmtRE  = regexp.MustCompile(`(?s)^invalid interpolation format for (\S+?)\.\n(.*)$`)
	portErrRE    = regexp.MustCompile(`^Invalid (containerPort|hostPort|proto|ip address):? (.*)$`)
	unexpectedRE = regexp.MustCompile(`^(\S+): unexpected type (\S+)$`)
	noTargetRE   = regexp.MustCompile(`^service (volume|device|ports) (\S+) is missing a (mount target|target port)$`)
	volSpecRE    = regexp.MustCompile(`^invalid spec: (.*): ([^:]+)$`)
	additionalRE = regexp.MustCompile(`^additional properties ('.*') not allowed$`)
	numErrRE     = regexp.MustCompile(`^strconv\.(\w+): parsing "(.*)": (.*)$`)
)

// explainer rewords the errors of one load.
type explainer struct {
	ctx        context.Context
	files      []string
	projectDir string
	raw        []map[string]any // the files as YAML, read on demand
	rawRead    bool
}

// explainLoadError rewords what compose-go's loader returned.
func explainLoadError(ctx context.Context, err error, files []string, projectDir string) error {
	x := &explainer{ctx: ctx, files: files, projectDir: projectDir}
	if msg := err.Error(); strings.HasPrefix(msg, "yaml: ") || strings.HasPrefix(msg, "failed to parse ") {
		return x.yamlError(msg)
	}
	var out []error
	if decodeErrors := decodeLeaves(err); len(decodeErrors) > 0 {
		for _, de := range decodeErrors {
			out = append(out, x.decodeError(de))
		}
		return errors.Join(out...)
	}
	for _, e := range leaves(err) {
		out = append(out, x.explain(e))
	}
	return errors.Join(out...)
}

// leaves flattens joined errors.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// decodeLeaves are the innermost mapstructure errors in err.
func decodeLeaves(err error) []*mapstructure.DecodeError {
	var out []*mapstructure.DecodeError
	var walk func(error)
	walk = func(e error) {
		switch u := e.(type) {
		case *mapstructure.DecodeError:
			if inner := decodeLeaves(u.Unwrap()); len(inner) > 0 {
				out = append(out, inner...)
			} else {
				out = append(out, u)
			}
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			if c := u.Unwrap(); c != nil {
				walk(c)
			}
		}
	}
	walk(err)
	return out
}

func (x *explainer) explain(err error) error {
	msg := err.Error()
	if m := schemaErrRE.FindStringSubmatch(msg); m != nil {
		return x.schemaError(m[1], m[2], m[3])
	}
	if m := castErrRE.FindStringSubmatch(msg); m != nil {
		svc, key := x.where(m[1])
		return &Error{Service: svc, Key: key, Message: castMessage(m[2])}
	}
	if m := interpFmtRE.FindStringSubmatch(msg); m != nil {
		svc, key := x.where(m[1])
		return &Error{Service: svc, Key: key, Message: "invalid interpolation format: " + strings.ReplaceAll(strings.TrimSpace(m[2]), "\n", " ")}
	}
	if m := interpErrRE.FindStringSubmatch(msg); m != nil {
		svc, key := x.where(m[1])
		return &Error{Service: svc, Key: key, Message: m[2]}
	}
	if m := portErrRE.FindStringSubmatch(msg); m != nil {
		return x.portError(m[1], m[2])
	}
	if m := unexpectedRE.FindStringSubmatch(msg); m != nil {
		svc, key := x.where(m[1])
		return &Error{Service: svc, Key: key, Message: "must be " + expected(m[1])}
	}
	if m := noTargetRE.FindStringSubmatch(msg); m != nil {
		svc, key := x.where(m[2])
		what := "the path in the container (target: /data)"
		if m[1] == "ports" {
			what = "the port the service listens on (target: 80)"
		}
		return &Error{Service: svc, Key: key, Message: fmt.Sprintf("no target: give %s", what)}
	}
	if m := volSpecRE.FindStringSubmatch(msg); m != nil {
		return x.volumeSpecError(m[1], m[2])
	}
	return err
}

// schemaError rewords a JSON schema violation of path in file.
func (x *explainer) schemaError(file, path, tail string) error {
	svc, key := x.where(path)
	e := &Error{File: file, Service: svc, Key: key}
	unknown := func(names ...string) {
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = strconv.Quote(n)
		}
		e.Message = fmt.Sprintf("unknown key %s: it is not part of the compose specification; check its spelling and indentation, or rename it x-%s to keep it as an extension",
			strings.Join(quoted, ", "), names[0])
	}
	switch m := additionalRE.FindStringSubmatch(tail); {
	case tail == "false schema":
		name := key[strings.LastIndex(key, ".")+1:]
		if key == "" {
			name = svc
		}
		e.Key = ""
		if key != name {
			e.Key = key[:len(key)-len(name)-1]
		}
		unknown(name)
	case m != nil:
		var names []string
		for _, q := range strings.Split(m[1], ", ") {
			names = append(names, strings.Trim(q, "'"))
		}
		unknown(names...)
	case strings.HasPrefix(tail, "must be "), strings.HasPrefix(tail, "value must be one of "):
		e.Message = "must be " + expected(path)
	default:
		e.Message = tail
	}
	return e
}

// castMessage rewords a failed conversion of an interpolated value.
func castMessage(detail string) string {
	if m := numErrRE.FindStringSubmatch(detail); m != nil {
		what := "a whole number"
		if m[1] == "ParseFloat" {
			what = "a number"
		}
		return fmt.Sprintf("must be %s, not %q", what, m[2])
	}
	if v, ok := strings.CutPrefix(detail, "invalid boolean: "); ok {
		return fmt.Sprintf("must be true or false, not %q", v)
	}
	return detail
}

// decodeError rewords a failed conversion of a value into compose-go's
// types.
func (x *explainer) decodeError(de *mapstructure.DecodeError) error {
	svc, key := x.where(de.Name())
	e := &Error{Service: svc, Key: key}
	if len(x.files) == 1 && x.files[0] != "-" {
		e.File = x.files[0]
	}
	var pe *mapstructure.ParseError
	var ue *mapstructure.UnconvertibleTypeError
	var ne *strconv.NumError
	inner := de.Unwrap()
	msg := inner.Error()
	switch {
	case errors.As(inner, &pe):
		e.Message = fmt.Sprintf("must be %s, not %v", kindWords(pe.Expected.Type()), pe.Value)
	case errors.As(inner, &ue):
		e.Message = fmt.Sprintf("must be %s, not %s", kindWords(ue.Expected.Type()), valueWords(ue.Value))
	case errors.As(inner, &ne):
		e.Message = fmt.Sprintf("must be a number, not %q", ne.Num)
	case strings.HasPrefix(msg, "time: "):
		e.Message = "must be a duration such as 10s, 1m30s or 2h (" + strings.TrimPrefix(msg, "time: ") + ")"
	case strings.HasPrefix(msg, "invalid additional host"):
		e.Message = msg + "; write HOST=IP or HOST:IP, such as db=10.0.0.2"
	case strings.HasPrefix(msg, "invalid size: "):
		e.Message = "must be a size such as 1024, 512m or 2g, not " + strings.TrimPrefix(msg, "invalid size: ")
	default:
		e.Message = msg
	}
	return e
}

// kindWords names what a value of Go type t is, in a compose file's words.
func kindWords(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint64, reflect.Uintptr, reflect.Uint32:
		return "a whole number of 0 or more"
	case reflect.Uint8, reflect.Uint16:
		return fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<t.Bits()-1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return "a " + t.Kind().String()
}

func valueWords(v any) string {
	switch v.(type) {
	case nil:
		return "empty"
	case string:
		return fmt.Sprintf("%q", v)
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%v", v)
}

// portError finds the port entry nat refused (its error names neither
// service nor key) by parsing each service's ports again.
func (x *explainer) portError(what, value string) error {
	detail := map[string]string{
		"containerPort": fmt.Sprintf("container port %q is not a port number or range", value),
		"hostPort":      fmt.Sprintf("host port %q is not a port number or range", value),
		"proto":         fmt.Sprintf("protocol %q: use tcp, udp or sctp", value),
		"ip address":    fmt.Sprintf("host IP %q is not an IP address", value),
	}[what]
	e := &Error{Key: "ports", Message: detail + `; write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], such as "8080:80" or "127.0.0.1:5353:53/udp"`}
	x.eachServiceEntry("ports", func(file, service string, entry any) bool {
		s, ok := entry.(string)
		if !ok {
			return false
		}
		if _, err := types.ParsePortConfig(s); err != nil {
			e.File, e.Service = file, service
			e.Message = fmt.Sprintf("%q: %s", s, e.Message)
			return true
		}
		return false
	})
	return e
}

func (x *explainer) volumeSpecError(spec, detail string) error {
	e := &Error{Key: "volumes", Message: fmt.Sprintf("%q: %s; write SOURCE:TARGET[:MODE], such as ./data:/data or db:/var/lib/db:ro", spec, detail)}
	x.eachServiceEntry("volumes", func(file, service string, entry any) bool {
		if entry == spec {
			e.File, e.Service = file, service
			return true
		}
		return false
	})
	return e
}

// eachServiceEntry calls f with every list entry of key in every service
// of the files as written, until f returns true.
func (x *explainer) eachServiceEntry(key string, f func(file, service string, entry any) bool) {
	for i, m := range x.models() {
		services, _ := m["services"].(map[string]any)
		for _, name := range sortedKeys(services) {
			s, _ := services[name].(map[string]any)
			list, _ := s[key].([]any)
			for _, entry := range list {
				if f(x.files[i], name, entry) {
					return
				}
			}
		}
	}
}

// models are the compose files as YAML, before interpolation (nil for a
// file that cannot be read).
func (x *explainer) models() []map[string]any {
	if !x.rawRead {
		x.rawRead = true
		x.raw = make([]map[string]any, len(x.files))
		for i, f := range x.files {
			if f == "-" {
				continue
			}
			content, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			_ = yaml.Unmarshal(content, &x.raw[i])
		}
	}
	return x.raw
}

// where splits a loader path (services.web.deploy.replicas,
// services[web].ports[0].target, services.web.labels.[0]) into the
// service and the key as a compose file spells it (ports[0].target).
func (x *explainer) where(path string) (service, key string) {
	segs := pathSegments(path)
	if len(segs) >= 2 && segs[0] == "services" {
		// A service name may hold dots: take the longest one known.
		known := map[string]bool{}
		for _, m := range x.models() {
			services, _ := m["services"].(map[string]any)
			for name := range services {
				known[name] = true
			}
		}
		n := 1
		for i := len(segs); i > 1; i-- {
			if known[strings.Join(segs[1:i], ".")] {
				n = i - 1
				break
			}
		}
		return strings.Join(segs[1:1+n], "."), renderKey(segs[1+n:])
	}
	return "", renderKey(segs)
}

// pathSegments splits a loader path into keys and list indexes ("[0]",
// "[]" for any); a key in brackets (services[my.web]) may hold dots.
func pathSegments(path string) []string {
	var segs []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			segs = append(segs, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(path); i++ {
		switch c := path[i]; c {
		case '.':
			flush()
		case '[':
			flush()
			j := strings.IndexByte(path[i:], ']')
			if j < 0 {
				cur.WriteString(path[i:])
				i = len(path)
				continue
			}
			inner := path[i+1 : i+j]
			if _, err := strconv.Atoi(inner); err == nil || inner == "" {
				segs = append(segs, "["+inner+"]")
			} else {
				segs = append(segs, inner) // services[web]: a key
			}
			i += j
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return segs
}

// renderKey spells segments as a compose key: deploy.resources, ports[0].
func renderKey(segs []string) string {
	var b strings.Builder
	for _, s := range segs {
		if _, err := strconv.Atoi(s); err == nil {
			s = "[" + s + "]"
		}
		if b.Len() > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

// yamlError names the file with the syntax error, which compose-go leaves
// out: each file is parsed alone.
func (x *explainer) yamlError(msg string) error {
	for _, f := range x.files {
		if f == "-" {
			continue
		}
		content, rerr := os.ReadFile(f)
		if rerr != nil {
			continue
		}
		_, lerr := loader.LoadModelWithContext(x.ctx, types.ConfigDetails{
			WorkingDir:  x.projectDir,
			ConfigFiles: []types.ConfigFile{{Filename: f, Content: content}},
			Environment: types.Mapping{},
		}, loader.WithSkipValidation, func(o *loader.Options) {
			o.SkipInterpolation = true
			o.SetProjectName("x", true)
		})
		if lerr != nil {
			if _, d, ok := strings.Cut(lerr.Error(), f+": yaml: "); ok {
				return fmt.Errorf("%s: invalid YAML: %s", f, d)
			}
		}
	}
	return fmt.Errorf("%s: invalid YAML: %s", strings.Join(slices.DeleteFunc(slices.Clone(x.files), func(f string) bool { return f == "-" }), ", "), strings.TrimPrefix(msg, "yaml: "))
}

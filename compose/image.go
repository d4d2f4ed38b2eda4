package compose

// Images: where a service's SIF is, and where it comes from when it is
// missing (apptainer pull, apptainer build). The names of SIF files in the
// image directory are chosen here.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
)

// Pull policies, compose's pull_policy (if_not_present is missing; daily,
// weekly and every_<duration> are refresh with RefreshAfter).
const (
	PullMissing = "missing"
	PullAlways  = "always"
	PullNever   = "never"
	PullBuild   = "build"
	PullRefresh = "refresh"
)

// ImageSource says where a service's image comes from: what `apptainer
// pull` fetches, what `apptainer build` builds, and where the SIF goes.
type ImageSource struct {
	// Name is the image in messages: image: as written, or for a
	// build-only service the <project>-<service> name compose gives it.
	Name string `json:"name"`
	// Pull is what `apptainer pull` fetches (docker://redis:7); "" when
	// there is nothing to pull (a local path, a build-only service).
	Pull string `json:"pull,omitempty"`
	// PullPolicy is compose's pull_policy: "" when unset (up pulls a
	// missing image, `sstack pull` pulls anyway), or one of the Pull*
	// constants.
	PullPolicy string `json:"pull_policy,omitempty"`
	// RefreshAfter, for PullRefresh: the SIF is pulled again once older.
	RefreshAfter time.Duration `json:"refresh_after,omitempty"`
	// Build, when the service has build: or x-sstack.definition.
	Build *ImageBuild `json:"build,omitempty"`
	// Target is where sstack pulls or builds the image: its name in the
	// image directory (see SIFName), or the path image: gives.
	Target string `json:"target"`
	// Tried are the paths looked at, in order.
	Tried []string `json:"tried,omitempty"`
	// Present: Service.Image existed when the plan was made.
	Present bool `json:"present"`
	// Note says why a file that has apptainer pull's default name was not
	// taken for this image.
	Note string `json:"note,omitempty"`
	// Missing, when the image is not Present, says so and what fetches
	// or builds it.
	Missing string `json:"missing,omitempty"`
}

// ImageBuild is a service's build, as Apptainer can (or cannot) run it.
type ImageBuild struct {
	// Context is the build's working directory (absolute).
	Context string `json:"context"`
	// Definition is the Apptainer definition file built; "" when the
	// build cannot run (see Unbuildable).
	Definition string `json:"definition,omitempty"`
	// Dockerfile is the Dockerfile the service names instead, if any.
	Dockerfile string `json:"dockerfile,omitempty"`
	Target     string `json:"target,omitempty"`
	// Unbuildable says why Apptainer cannot build this and what works
	// instead; "" when Definition is set.
	Unbuildable string `json:"unbuildable,omitempty"`
}

// imageName is what a registry reference becomes.
type imageName struct {
	Pull   string // the URI given to apptainer pull
	SIF    string // sstack's file name for it
	Legacy string // the name apptainer pull gives it by default
}

// SIFName is the file name sstack gives the image of ref in the image
// directory. It keeps everything that tells two images apart, in the
// spelling of Charliecloud's storage directory: the reference is
// normalised as Docker does (redis:7 is docker.io/library/redis:7, shown
// as redis:7), "/" becomes "%" and ":" becomes "+"; no tag means latest;
// a digest replaces the tag, as it does for pulling:
//
//	redis:7                       redis+7.sif
//	bitnami/redis:7               bitnami%redis+7.sif
//	ghcr.io/x/app:1               ghcr.io%x%app+1.sif
//	localhost:5000/app            localhost+5000%app+latest.sif
//	redis:7@sha256:ab12...        redis@sha256+ab12....sif
//
// Neither character can occur in a reference's name, so different
// references never share a file. Other transports keep theirs before an
// "=": library://alpine:3.19 is library=alpine+3.19.sif.
func SIFName(ref string) (string, error) {
	n, err := nameImage(ref)
	return n.SIF, err
}

var refChars = strings.NewReplacer(":", "+", "/", "%")

func nameImage(ref string) (imageName, error) {
	transport, rest, ok := strings.Cut(ref, "://")
	if !ok {
		transport, rest = "docker", ref
	}
	if transport != "docker" {
		sif := transport + "=" + refChars.Replace(strings.TrimLeft(rest, "/"))
		if !strings.HasSuffix(sif, ".sif") {
			sif += ".sif"
		}
		return imageName{Pull: ref, SIF: sif, Legacy: pullName(ref)}, nil
	}
	named, err := reference.ParseNormalizedNamed(rest)
	if err != nil {
		return imageName{}, fmt.Errorf("%q is not an image reference: %v", ref, err)
	}
	pull, suffix := rest, ""
	if d, ok := named.(reference.Digested); ok {
		suffix = "@" + refChars.Replace(d.Digest().String())
		if _, tagged := named.(reference.Tagged); tagged {
			// Apptainer refuses name:tag@digest; the digest is what
			// Docker pulls then.
			c, _ := reference.WithDigest(reference.TrimNamed(named), d.Digest())
			pull = reference.FamiliarString(c)
		}
	} else {
		tag := "latest"
		if t, ok := named.(reference.Tagged); ok {
			tag = t.Tag()
		}
		suffix = "+" + tag
	}
	pull = "docker://" + pull
	return imageName{
		Pull:   pull,
		SIF:    refChars.Replace(reference.FamiliarName(named)) + suffix + ".sif",
		Legacy: pullName(pull),
	}, nil
}

// builtName is the name of the image compose builds for a service without
// image: <project>-<service>, lower-cased as image names must be.
func builtName(project, service string) string {
	return strings.ToLower(project + "-" + service)
}

// isImagePath reports whether an `image:` value names a local file or
// directory rather than a registry reference. Only unambiguous spellings
// count: a bare "nginx" stays a reference even when a directory of that
// name (often a build context) exists in the project.
func isImagePath(ref string) bool {
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") {
		return true
	}
	return strings.HasSuffix(ref, ".sif") || strings.HasSuffix(ref, ".simg")
}

// pullName is the file name `apptainer pull URI` gives an image when no
// destination is named: the last path component of the reference, "_",
// the tag ("latest" if none), ".sif"; for http(s) URLs, the last path
// component as it is. It mirrors GetName in Apptainer's
// internal/pkg/util/uri, quirks included: for a digest reference
// (redis@sha256:abc) the split happens at the last component's first
// colon, giving "redis@sha256_abc.sif". Images fetched by hand have these
// names, so they are still looked for, after sstack's own.
func pullName(uri string) string {
	transport, ref, ok := strings.Cut(uri, "://")
	if !ok {
		ref = uri
	}
	ref = strings.TrimLeft(ref, "/")
	parts := strings.Split(ref, "/")
	name := parts[len(parts)-1]
	if transport == "http" || transport == "https" {
		return name
	}
	tag := "latest"
	if strings.Contains(name, ":") {
		fields := strings.Split(name, ":")
		name, tag = fields[0], fields[1]
		if i := strings.Index(tag, ","); i >= 0 {
			tag = tag[:i]
		}
	}
	return fmt.Sprintf("%s_%s.sif", name, tag)
}

// image resolves a service's image: a local path, or a registry reference
// (or, for a build-only service, the image compose would build) looked up
// in the image directory, first under sstack's name for it, then under
// the one apptainer pull gives it. A missing image is no error here: up
// pulls or builds it, config says how (Plan.MissingImages).
func (t *translator) image(sc types.ServiceConfig, s *Service) {
	name := sc.Name
	switch {
	case sc.Provider != nil:
		t.fail(name, "provider", "sstack cannot run provider services (type %q); run the provider outside sstack", sc.Provider.Type)
		return
	case sc.Image == "" && sc.Build == nil && definitionOf(sc) == "":
		t.fail(name, "image", "the service has neither image nor build; set image: to a SIF file or to a registry reference")
		return
	}
	s.ImageRef = sc.Image
	src := &ImageSource{Name: sc.Image}
	s.ImageSource = src
	src.PullPolicy, src.RefreshAfter = t.pullPolicy(sc)

	var legacy string
	if isImagePath(sc.Image) {
		src.Target = absFrom(t.p.WorkingDir, sc.Image)
		src.Tried = []string{src.Target}
	} else {
		ref := sc.Image
		if ref == "" {
			src.Name = builtName(t.p.Name, name)
			ref = src.Name
		}
		n, err := nameImage(ref)
		if err != nil {
			if sc.Image != "" {
				t.fail(name, "image", "%v; write it as [REGISTRY/]NAME[:TAG][@DIGEST] in lower case, or give the path of a SIF file", err)
				return
			}
			// A service name that is no image name: compose could not
			// build it either, but a SIF can still be given that name.
			n = imageName{SIF: ref + "+latest.sif", Legacy: ref + "_latest.sif"}
		}
		if sc.Image != "" {
			src.Pull = n.Pull
		}
		src.Target = filepath.Join(t.imageDir, n.SIF)
		src.Tried = []string{src.Target}
		if l := filepath.Join(t.imageDir, n.Legacy); l != src.Target {
			legacy = l
			src.Tried = append(src.Tried, legacy)
			if others := t.sharingLegacyName(n.Legacy, n.SIF); len(others) > 0 && isFile(legacy) {
				src.Note = fmt.Sprintf("%s is not used: apptainer pull gives %s and %s that one name", t.display(legacy), src.Name, strings.Join(others, " and "))
				legacy = ""
			}
		}
	}
	src.Build = t.build(sc, src.Target)
	if src.PullPolicy == PullBuild && src.Build == nil {
		t.fail(name, "pull_policy", "build, but the service has no build: section (or x-sstack.definition) to build the image from")
	}
	if src.PullPolicy != "" && src.Pull == "" && src.Build == nil {
		t.warn(name, "pull_policy", "image: is a local path: nothing is pulled")
	}

	s.Image = src.Target
	switch {
	case isImagePath(sc.Image):
		_, err := os.Stat(src.Target)
		src.Present = err == nil
	case isFile(src.Target):
		src.Present = true
	case legacy != "" && isFile(legacy):
		s.Image, src.Present = legacy, true
	}
	if !src.Present {
		src.Missing = t.missing(s)
	}
	t.dockerfileWarning(s)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// sharingLegacyName lists the other images of the project that apptainer
// pull would also name legacy (redis:7 and bitnami/redis:7 both become
// redis_7.sif): a file of that name could be any of them.
func (t *translator) sharingLegacyName(legacy, sif string) []string {
	var others []string
	for _, sc := range t.p.Services {
		ref := sc.Image
		if ref == "" {
			ref = builtName(t.p.Name, sc.Name)
		} else if isImagePath(ref) {
			continue
		}
		n, err := nameImage(ref)
		if err != nil || n.Legacy != legacy || n.SIF == sif || slices.Contains(others, ref) {
			continue
		}
		others = append(others, ref)
	}
	slices.Sort(others)
	return others
}

// pullPolicy reads pull_policy (and pull_refresh_after).
func (t *translator) pullPolicy(sc types.ServiceConfig) (string, time.Duration) {
	if sc.PullRefreshAfter != "" && sc.PullPolicy != PullRefresh {
		t.warn(sc.Name, "pull_refresh_after", "only used with pull_policy: refresh")
	}
	switch sc.PullPolicy {
	case "":
		return "", 0
	case PullRefresh:
		if sc.PullRefreshAfter == "" {
			return PullRefresh, 0
		}
		every := types.ServiceConfig{}
		every.PullPolicy = "every_" + sc.PullRefreshAfter
		_, d, err := every.GetPullPolicy()
		if err != nil {
			t.fail(sc.Name, "pull_refresh_after", "%q is not a duration (%v); write it as 12h, 2d or 1w", sc.PullRefreshAfter, err)
		}
		return PullRefresh, d
	}
	p, d, err := sc.GetPullPolicy()
	if err != nil {
		t.fail(sc.Name, "pull_policy", "%q: %v; use missing, always, never, build, daily, weekly or every_<duration> (every_12h)", sc.PullPolicy, err)
		return "", 0
	}
	if p == types.PullPolicyIfNotPresent {
		p = PullMissing
	}
	return p, d
}

// definitionOf is the service's x-sstack.definition, if any.
func definitionOf(sc types.ServiceConfig) string {
	x, ok := sc.Extensions["x-sstack"].(map[string]any)
	if !ok {
		return ""
	}
	def, _ := x["definition"].(string)
	return def
}

// build reads build: and x-sstack.definition. The build is an Apptainer
// definition file when x-sstack.definition names one, or when
// build.dockerfile's file starts with "Bootstrap:"; anything else is a
// Dockerfile, which Apptainer cannot build.
func (t *translator) build(sc types.ServiceConfig, target string) *ImageBuild {
	name := sc.Name
	if x, ok := sc.Extensions["x-sstack"]; ok {
		m, isMap := x.(map[string]any)
		if _, isString := m["definition"].(string); !isMap || m["definition"] != nil && !isString {
			t.fail(name, "x-sstack", "want a mapping with definition: the path of an Apptainer definition file")
			return nil
		}
	}
	def := definitionOf(sc)
	if sc.Build == nil && def == "" {
		return nil
	}
	b := &ImageBuild{Context: t.p.WorkingDir}
	if sc.Build != nil {
		b.Context, b.Target = sc.Build.Context, sc.Build.Target
		if !filepath.IsAbs(b.Context) {
			b.Unbuildable = fmt.Sprintf("the build context %s is not a local directory: Apptainer builds from a directory of this machine; clone it and give its path", b.Context)
			return b
		}
	}
	if def != "" {
		b.Definition = absFrom(t.p.WorkingDir, def)
		if !isFile(b.Definition) {
			t.fail(name, "x-sstack.definition", "%s does not exist; give the path of an Apptainer definition file (relative to the project directory)", t.display(b.Definition))
		}
		t.ignoredBuildKeys(sc)
		return b
	}
	bc := sc.Build
	if bc.DockerfileInline != "" {
		if isDefinition([]byte(bc.DockerfileInline)) {
			b.Unbuildable = "dockerfile_inline holds an Apptainer definition: write it to a file and name that file in build.dockerfile"
		} else {
			b.Unbuildable = t.dockerfileMessage(sc, "build.dockerfile_inline", target)
		}
		return b
	}
	path := absFrom(b.Context, bc.Dockerfile)
	head, err := readHead(path)
	switch {
	case err != nil:
		b.Dockerfile = path
		b.Unbuildable = fmt.Sprintf("%s does not exist; name an Apptainer definition file (it starts with Bootstrap:) in build.dockerfile or x-sstack.definition", t.display(path))
	case isDefinition(head):
		b.Definition = path
		t.ignoredBuildKeys(sc)
	default:
		b.Dockerfile = path
		b.Unbuildable = t.dockerfileMessage(sc, t.display(path), target)
	}
	return b
}

func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	n, err := io.ReadFull(f, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return buf[:n], err
}

// isDefinition: the first line that is neither blank nor a comment is an
// Apptainer header's Bootstrap: line.
func isDefinition(head []byte) bool {
	for _, line := range bytes.Split(head, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		return len(line) >= 10 && strings.EqualFold(string(line[:10]), "bootstrap:")
	}
	return false
}

// dockerfileMessage says that Apptainer cannot build a Dockerfile and
// gives the two ways that work.
func (t *translator) dockerfileMessage(sc types.ServiceConfig, dockerfile, sif string) string {
	name := sc.Image
	if name == "" || isImagePath(name) {
		name = builtName(t.p.Name, sc.Name)
	}
	tarName := strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(name) + ".tar"
	build := "docker build -t " + shellQuote(name)
	if sc.Build.Dockerfile != "" && sc.Build.Dockerfile != "Dockerfile" {
		build += " -f " + shellQuote(sc.Build.Dockerfile)
	}
	if sc.Build.Target != "" {
		build += " --target " + shellQuote(sc.Build.Target)
	}
	build += " " + shellQuote(t.display(sc.Build.Context))
	target := ""
	if sc.Build.Target != "" {
		target = fmt.Sprintf(" (stage %q)", sc.Build.Target)
	}
	return fmt.Sprintf("%s is a Dockerfile%s, and Apptainer cannot build Dockerfiles. Either build it with Docker on a machine that has it (%s && docker save %s -o %s), copy %s here and convert it: apptainer build %s docker-archive://%s; or write an Apptainer definition file (its first line is Bootstrap:) and name it in build.dockerfile or x-sstack.definition",
		dockerfile, target, build, shellQuote(name), tarName, tarName, shellQuote(t.display(sif)), tarName)
}

// ignoredBuildKeys warns about build: keys a definition file build does
// not use.
func (t *translator) ignoredBuildKeys(sc types.ServiceConfig) {
	if sc.Build == nil {
		return
	}
	var keys []string
	walkYAMLFields(reflect.ValueOf(*sc.Build), func(key string, f reflect.Value) {
		if key != "context" && key != "dockerfile" && !f.IsZero() {
			keys = append(keys, "build."+key)
		}
	})
	if len(keys) > 0 {
		t.warn(sc.Name, keys[0], "%s: not used: an Apptainer definition file is built as it is", strings.Join(keys, ", "))
	}
}

// dockerfileWarning: a SIF was found for a service whose build is a
// Dockerfile; it is used as it is, and never rebuilt.
func (t *translator) dockerfileWarning(s *Service) {
	src := s.ImageSource
	if src.Present && src.Build != nil && src.Build.Definition == "" {
		what := "the build"
		if src.Build.Dockerfile != "" {
			what = t.display(src.Build.Dockerfile) + " is a Dockerfile, which Apptainer cannot build: it"
		}
		t.warn(s.Name, "build", "%s is not run; %s is used as it is", what, t.display(s.Image))
	}
}

// MissingImages returns one warning per service whose image is missing,
// with the command that fetches or builds it, for config. up pulls or
// builds these (or refuses, saying the same).
func (p *Plan) MissingImages() []Warning {
	var out []Warning
	for i := range p.Services {
		s := &p.Services[i]
		if s.ImageSource == nil || s.ImageSource.Present {
			continue
		}
		key := "image"
		if s.ImageRef == "" {
			key = "build"
		}
		out = append(out, Warning{Service: s.Name, Key: key, Reason: s.ImageSource.Missing})
	}
	return out
}

// missing says that s's image is missing and how to get it.
func (t *translator) missing(s *Service) string {
	src := s.ImageSource
	show := func(p string) string { return shellQuote(t.display(p)) }
	tried := make([]string, len(src.Tried))
	for i, p := range src.Tried {
		tried[i] = show(p)
	}
	looked := strings.Join(tried, ", ")
	note := ""
	if src.Note != "" {
		note = " (" + src.Note + ")"
	}
	b := src.Build
	switch {
	case src.Pull == "" && b == nil:
		return fmt.Sprintf("%s does not exist; give the path of a SIF file or sandbox directory (relative paths are relative to the project directory %s)", looked, t.p.WorkingDir)
	case b == nil:
		if src.PullPolicy == PullNever {
			return fmt.Sprintf("no SIF for %q (looked for %s)%s, and pull_policy is never; pull it with: apptainer pull %s %s", src.Name, looked, note, show(src.Target), shellQuote(src.Pull))
		}
		return fmt.Sprintf("no SIF for %q (looked for %s)%s; up pulls it, or pull it now with: sstack pull %s (without network access here: apptainer pull %s %s on a machine that has it, then copy the file to %s)",
			src.Name, looked, note, s.Name, shellQuote(filepath.Base(src.Target)), shellQuote(src.Pull), show(filepath.Dir(src.Target))+"/")
	case b.Definition != "" && src.Pull != "":
		return fmt.Sprintf("no SIF for %q (looked for %s)%s; up pulls it, or builds it from %s if the pull fails; build it now with: sstack build %s", src.Name, looked, note, show(b.Definition), s.Name)
	case b.Definition != "":
		return fmt.Sprintf("no SIF of the image built from %s (looked for %s)%s; up builds it, or build it now with: sstack build %s", show(b.Definition), looked, note, s.Name)
	case src.Pull != "":
		return fmt.Sprintf("no SIF for %q (looked for %s)%s; up tries to pull %s (sstack pull %s); if it exists only as a local build: %s", src.Name, looked, note, src.Pull, s.Name, b.Unbuildable)
	default:
		return fmt.Sprintf("no SIF of the image compose would build (looked for %s)%s: %s", looked, note, b.Unbuildable)
	}
}

// shellQuote quotes s for a POSIX shell when it needs it, so that commands
// in error messages can be pasted as they are.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:@=+,%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// imageSource prints where a service's image comes from, for config.
func (e *emitter) imageSource(src *ImageSource) {
	if src == nil {
		return
	}
	if !src.Present {
		e.line(2, "image_missing: true")
	}
	if src.Pull != "" {
		e.scalar(2, "pull", src.Pull)
		policy := src.PullPolicy
		if policy == "" {
			policy = PullMissing
		}
		if src.PullPolicy == PullRefresh {
			policy += " (every " + dur(src.RefreshAfter) + ")"
		}
		e.scalar(2, "pull_policy", policy)
	}
	if b := src.Build; b != nil {
		e.line(2, "build:")
		e.scalar(3, "context", b.Context)
		if b.Definition != "" {
			e.scalar(3, "definition", b.Definition)
		}
		if b.Dockerfile != "" {
			e.scalar(3, "dockerfile", b.Dockerfile)
		}
	}
}

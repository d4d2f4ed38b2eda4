package compose

// Mounts: binds, named and anonymous volumes, tmpfs, secrets and configs.

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sstack/internal/statedir"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Where secrets and configs go in the container when no absolute target
// is given.
const (
	secretsDir = "/run/secrets"
	configsDir = "/"
)

func (t *translator) volumes(sc types.ServiceConfig, s *Service) {
	name := sc.Name
	for _, v := range sc.Volumes {
		switch v.Type {
		case types.VolumeTypeBind:
			src := absFrom(t.p.WorkingDir, v.Source)
			// As docker compose: a missing host path is created unless the
			// long syntax says create_host_path: false (compose-go sets it
			// true for a bind: block without it; no block at all means the
			// engine's legacy bind API, which creates the path too).
			create := v.Bind == nil || bool(v.Bind.CreateHostPath)
			if !create && !t.bindSourcesExist(name, src, v.Target, s.Replicas) {
				continue
			}
			if b := v.Bind; b != nil {
				if b.SELinux != "" {
					t.warn(name, "volumes", "%s: SELinux relabelling (:%s) is not done", v.Target, b.SELinux)
				}
				if b.Propagation != "" {
					t.warn(name, "volumes", "%s: bind propagation %q is not set", v.Target, b.Propagation)
				}
				if b.Recursive != "" && b.Recursive != "enabled" {
					t.warn(name, "volumes", "%s: recursive: %s is not honoured: submounts are bound as the host has them", v.Target, b.Recursive)
				}
			}
			s.Mounts = append(s.Mounts, Mount{Kind: MountBind, Source: src, Target: v.Target, ReadOnly: v.ReadOnly, CreateHostPath: create})
		case types.VolumeTypeVolume:
			m := Mount{Kind: MountVolume, Target: v.Target, ReadOnly: v.ReadOnly, Seed: v.Volume == nil || !v.Volume.NoCopy}
			if v.Source == "" {
				// Anonymous volume: Docker makes one per container; here it
				// is per service and kept until `down --volumes`.
				// A target with a slot template gives each replica its own.
				m.Source = filepath.Join(t.stateDir, "anonymous", name, pathEscapeKeepSlot(strings.TrimPrefix(v.Target, "/")))
			} else {
				dir, ok := t.volumeDir(name, v.Source)
				if !ok {
					continue
				}
				m.Source, m.Volume = dir, v.Source
			}
			if vv := v.Volume; vv != nil {
				if vv.Subpath != "" {
					sub := path.Clean(vv.Subpath)
					if path.IsAbs(sub) || sub == ".." || strings.HasPrefix(sub, "../") {
						t.fail(name, "volumes", "%s: subpath %q must stay inside the volume", v.Target, vv.Subpath)
						continue
					}
					m.Source = filepath.Join(m.Source, sub)
				}
				if len(vv.Labels) > 0 {
					t.warn(name, "volumes", "%s: %s", v.Target, reasonMetadata)
				}
			}
			s.Mounts = append(s.Mounts, m)
		case types.VolumeTypeTmpfs:
			if tf := v.Tmpfs; tf != nil && (tf.Size != 0 || tf.Mode != 0) {
				t.warn(name, "volumes", "%s: tmpfs size and mode are not set", v.Target)
			}
			s.Mounts = append(s.Mounts, Mount{Kind: MountTmpfs, Target: v.Target})
		default:
			t.fail(name, "volumes", "%s: volume type %q is not supported; use a bind mount or a named volume", v.Target, v.Type)
		}
	}
}

// bindSourcesExist reports (once) a bind source that does not exist, for
// every replica when the path has a slot template.
func (t *translator) bindSourcesExist(service, src, target string, replicas int) bool {
	for _, n := range slots(replicas, src) {
		if _, err := os.Stat(expandSlot(src, n)); err != nil {
			what := "for " + target
			if hasSlot(src) {
				what = fmt.Sprintf("%s of replica %d, for %s", t.display(src), n, target)
			}
			t.fail(service, "volumes", "bind source %s (%s) does not exist and create_host_path is false; create it, or remove create_host_path: false to have an empty directory created there",
				t.display(expandSlot(src, n)), what)
			return false
		}
	}
	return true
}

// volumeDir is the host directory of top-level volume key, as used by
// service; ok is false if it cannot be used (reported once).
func (t *translator) volumeDir(service, key string) (string, bool) {
	if dir, ok := t.volumeDirs[key]; ok {
		return dir, dir != ""
	}
	dir := ""
	defer func() { t.volumeDirs[key] = dir }()
	vc, ok := t.p.Volumes[key]
	if !ok {
		t.fail(service, "volumes", "volume %q is not declared; add it under the top-level volumes: key", key)
		return "", false
	}
	name := vc.Name
	if name == "" {
		name = t.p.Name + "_" + key
		if vc.External {
			name = key
		}
	}
	if !validVolumeName(name) {
		t.fail(service, "volumes", "volume %q: name %q is not usable as a directory name; use letters, digits, '.', '-' and '_'", key, name)
		return "", false
	}
	switch device := bindDevice(vc); {
	case device != "":
		if fi, err := os.Stat(device); err != nil || !fi.IsDir() {
			t.fail(service, "volumes", "volume %q binds device %s, which is not a directory; create it", key, device)
			return "", false
		}
		dir = device
	case bool(vc.External):
		// External volumes outlive projects: they live beside the project
		// state directories, in a directory no project name can take.
		d := statedir.ExternalVolume(t.stateBase, name)
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.fail(service, "volumes", "external volume %q (%s) does not exist; create it with mkdir -p %s, or remove external: true to let sstack create a project volume",
				key, name, shellQuote(d))
			return "", false
		}
		dir = d
	default:
		dir = filepath.Join(statedir.Volumes(t.stateDir), name)
	}
	return dir, true
}

func validVolumeName(name string) bool {
	if name == "" || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// bindDevice returns DIR for the local-driver idiom that makes a named
// volume of a host directory (driver_opts type: none, o: bind, device: DIR).
func bindDevice(v types.VolumeConfig) string {
	o := v.DriverOpts
	if (v.Driver != "" && v.Driver != "local") || o["device"] == "" || !filepath.IsAbs(o["device"]) {
		return ""
	}
	if !slices.Contains(strings.Split(o["o"], ","), "bind") {
		return ""
	}
	return filepath.Clean(o["device"])
}

func (t *translator) tmpfs(sc types.ServiceConfig, s *Service) {
	for _, entry := range sc.Tmpfs {
		target, options, _ := strings.Cut(entry, ":")
		if options != "" {
			t.warn(sc.Name, "tmpfs", "%s: options %q are not set", target, options)
		}
		s.Mounts = append(s.Mounts, Mount{Kind: MountTmpfs, Target: path.Clean(target)})
	}
}

// fileTarget is what a service's secrets and configs entries share: the
// key messages name, the refusal of one the top level does not declare,
// the warning for uid, gid and mode, and the path it is bound at (the
// source's name under dir unless target: says otherwise).
func (t *translator) fileTarget(service, kind, dir string, ref types.FileReferenceConfig, declared bool) (key, target string, ok bool) {
	key = fmt.Sprintf("%s %q", kind, ref.Source)
	if !declared {
		t.fail(service, key, "not declared; add it under the top-level %ss: key", kind)
		return key, "", false
	}
	if ref.UID != "" || ref.GID != "" || ref.Mode != nil {
		t.warn(service, kind+"s", "%s: uid, gid and mode are not set: the file keeps its owner and mode", ref.Source)
	}
	target = cmp.Or(ref.Target, ref.Source)
	if !path.IsAbs(target) {
		target = path.Join(dir, target)
	}
	return key, target, true
}

func (t *translator) secret(service string, ref types.ServiceSecretConfig) (Mount, bool) {
	sec, declared := t.p.Secrets[ref.Source]
	key, target, ok := t.fileTarget(service, "secret", secretsDir, types.FileReferenceConfig(ref), declared)
	if !ok {
		return Mount{}, false
	}
	m := Mount{Kind: MountSecret, Target: target, ReadOnly: true}
	switch {
	case bool(sec.External):
		t.fail(service, key, "external secrets need a secret store, which sstack does not have; declare it with file: or environment:")
		return Mount{}, false
	case sec.File != "":
		if !t.checkSecretFile(service, key, "secret:"+ref.Source, sec.File) {
			return Mount{}, false
		}
		m.Source = sec.File
	case sec.Environment != "" || sec.Content != "":
		// compose-go puts the value of `environment:` in Content.
		v := sec.Content
		if _, set := t.p.Environment[sec.Environment]; v == "" && !set {
			t.fail(service, key, "environment variable %s is not set; set it, or declare the secret with file:", sec.Environment)
			return Mount{}, false
		}
		m.Source = filepath.Join(t.stateDir, "secrets", url.PathEscape(ref.Source))
		m.Content = &v
	default:
		t.fail(service, key, "declares neither file: nor environment:; add one")
		return Mount{}, false
	}
	return m, true
}

// checkSecretFile refuses a secret file others could read: sstack binds it
// as it is, so its mode is the secret's protection. A faulty file is
// reported once, for the first service that uses it.
func (t *translator) checkSecretFile(service, key, id, file string) bool {
	if bad, seen := t.reported[id]; seen {
		return !bad
	}
	bad := true
	defer func() { t.reported[id] = bad }()
	shown := shellQuote(t.display(file))
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.fail(service, key, "file %s does not exist; create it with mode 600", shown)
		return false
	case err != nil:
		t.fail(service, key, "%v", err)
		return false
	case fi.IsDir():
		t.fail(service, key, "file %s is a directory; a secret must be a file", shown)
		return false
	}
	mode := fi.Mode().Perm()
	who := ""
	switch {
	case mode&0o004 != 0:
		who = "others"
	case mode&0o040 != 0:
		who = "its group"
	}
	if who != "" {
		t.fail(service, key, "file %s is readable by %s (mode %04o); run chmod 600 %s", shown, who, mode, shown)
		return false
	}
	f, err := os.Open(file)
	if err != nil {
		t.fail(service, key, "file %s cannot be read: %v", shown, errors.Unwrap(err))
		return false
	}
	f.Close()
	bad = false
	return true
}

func (t *translator) config(service string, ref types.ServiceConfigObjConfig) (Mount, bool) {
	cfg, declared := t.p.Configs[ref.Source]
	key, target, ok := t.fileTarget(service, "config", configsDir, types.FileReferenceConfig(ref), declared)
	if !ok {
		return Mount{}, false
	}
	m := Mount{Kind: MountConfig, Target: target, ReadOnly: true}
	switch {
	case bool(cfg.External):
		t.fail(service, key, "external configs need a config store, which sstack does not have; declare it with file:, content: or environment:")
		return Mount{}, false
	case cfg.File != "":
		if fi, err := os.Stat(cfg.File); err != nil || fi.IsDir() {
			if !t.reported["config:"+ref.Source] {
				t.reported["config:"+ref.Source] = true
				t.fail(service, key, "file %s does not exist or is a directory; create it", shellQuote(t.display(cfg.File)))
			}
			return Mount{}, false
		}
		m.Source = cfg.File
	case cfg.Environment != "" || cfg.Content != "":
		// compose-go puts the value of `environment:` in Content.
		v := cfg.Content
		if _, set := t.p.Environment[cfg.Environment]; v == "" && cfg.Environment != "" && !set {
			t.fail(service, key, "environment variable %s is not set; set it, or declare the config with file:", cfg.Environment)
			return Mount{}, false
		}
		m.Source = filepath.Join(t.stateDir, "configs", url.PathEscape(ref.Source))
		m.Content = &v
	default:
		t.fail(service, key, "declares neither file:, content: nor environment:; add one")
		return Mount{}, false
	}
	return m, true
}

// volumesFrom copies the bind and volume mounts of other services, in
// dependency order so that chains work.
func (t *translator) volumesFrom(order []string, services map[string]*Service) {
	for _, name := range order {
		s := services[name]
		for _, entry := range t.p.Services[name].VolumesFrom {
			if strings.HasPrefix(entry, types.ContainerPrefix) {
				t.warn(name, "volumes_from", "%s: there are no containers outside the project", entry)
				continue
			}
			from, mode, _ := strings.Cut(entry, ":")
			src := services[from]
			if src == nil {
				if _, ok := t.p.Services[from]; !ok {
					t.fail(name, "volumes_from", "there is no service %q in the project", from)
				}
				continue
			}
			for _, m := range src.Mounts {
				if m.Kind != MountBind && m.Kind != MountVolume {
					continue
				}
				if slices.ContainsFunc(s.Mounts, func(o Mount) bool { return o.Target == m.Target }) {
					continue
				}
				switch mode {
				case "ro":
					m.ReadOnly = true
				case "rw":
					m.ReadOnly = false
				}
				s.Mounts = append(s.Mounts, m)
			}
		}
	}
}

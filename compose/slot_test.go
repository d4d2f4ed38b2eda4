package compose

import (
	"bytes"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestExpandSlot(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"w{{.Task.Slot}}", "w3"},
		{"{{ .Task.Slot }}", "3"},
		{"{{.Task.Slot }}-{{  .Task.Slot}}", "3-3"},
		{"a{{\t.Task.Slot\t}}b", "a3b"},
		{"no template", "no template"},
		{"{{.Task.Name}}", "{{.Task.Name}}"}, // other templates are left as written
		{"{{.Task.Slotx}}", "{{.Task.Slotx}}"},
		{"${X}{Task.Slot}", "${X}{Task.Slot}"},
		{"", ""},
	} {
		if got := expandSlot(c.in, 3); got != c.want {
			t.Errorf("expandSlot(%q, 3) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestForReplica(t *testing.T) {
	content := "secret {{.Task.Slot}}"
	base := func() *Service {
		return &Service{
			Name:        "w",
			Replicas:    2,
			Entrypoint:  []string{"/bin/sh", "-c", "echo {{ .Task.Slot }}"},
			Command:     []string{"echo", "{{.Task.Slot}}"},
			Environment: []string{"ID=w{{.Task.Slot}}", "K{{.Task.Slot}}=v{{.Task.Slot}}", "PLAIN=x", "EMPTY="},
			WorkingDir:  "/work/{{.Task.Slot}}",
			Mounts: []Mount{
				{Kind: MountBind, Source: "/srv/data/{{.Task.Slot}}", Target: "/data", CreateHostPath: true},
				{Kind: MountVolume, Source: "/state/v", Target: "/v/{{ .Task.Slot }}", Volume: "v"},
				{Kind: MountSecret, Source: "/state/secrets/s", Target: "/run/secrets/s", Content: &content},
			},
			ExtraHosts:  []HostEntry{{Host: "w", IP: "127.0.0.1"}},
			DependsOn:   []Dependency{{Service: "db", Condition: ConditionStarted}},
			Healthcheck: &Healthcheck{Test: []string{"/bin/sh", "-c", "test -f /tmp/{{.Task.Slot}}"}, Retries: 3},
		}
	}
	// expanded: base's every field with the slot n, as ForReplica(n) makes
	// them.
	expanded := func(n string) func(*Service) {
		return func(s *Service) {
			s.Entrypoint = []string{"/bin/sh", "-c", "echo " + n}
			s.Command = []string{"echo", n}
			s.Environment = []string{"ID=w" + n, "K{{.Task.Slot}}=v" + n, "PLAIN=x", "EMPTY="}
			s.WorkingDir = "/work/" + n
			s.Mounts[0].Source = "/srv/data/" + n
			s.Mounts[1].Target = "/v/" + n
			s.Healthcheck.Test = []string{"/bin/sh", "-c", "test -f /tmp/" + n}
		}
	}
	for _, c := range []struct {
		name string
		in   *Service
		n    int
		want func(*Service)
	}{
		{"every field", base(), 2, expanded("2")},
		{"replica 1", base(), 1, expanded("1")},
		{"nil and empty stay as they are", &Service{Name: "x", Entrypoint: nil, Command: []string{}}, 5, func(s *Service) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			orig := *c.in
			before := deepCopy(c.in)
			got := c.in.ForReplica(c.n)
			want := deepCopy(c.in)
			c.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ForReplica(%d)\n got %+v\nwant %+v", c.n, got, want)
			}
			if !reflect.DeepEqual(c.in, before) || !reflect.DeepEqual(*c.in, orig) {
				t.Errorf("ForReplica changed the plan's service: %+v", c.in)
			}
			if (c.in.Command == nil) != (got.Command == nil) || (c.in.Entrypoint == nil) != (got.Entrypoint == nil) {
				t.Errorf("nil-ness changed: entrypoint %v -> %v, command %v -> %v", c.in.Entrypoint, got.Entrypoint, c.in.Command, got.Command)
			}
			// The copy shares no slice the supervisor may change.
			if len(got.ExtraHosts) > 0 {
				got.ExtraHosts[0].Host = "changed"
				if c.in.ExtraHosts[0].Host == "changed" {
					t.Error("ExtraHosts is shared with the plan")
				}
			}
			if got.Healthcheck != nil && got.Healthcheck == c.in.Healthcheck {
				t.Error("Healthcheck is shared with the plan")
			}
		})
	}
	// Generated content is the secret's, never templated.
	if got := base().ForReplica(2).Mounts[2].Content; *got != content {
		t.Errorf("content = %q", *got)
	}
}

// deepCopy copies a Service through ForReplica's own cloning of every
// slice, but by hand, so that the test does not trust the code under test.
func deepCopy(s *Service) *Service {
	c := *s
	c.Entrypoint = slices.Clone(s.Entrypoint)
	c.Command = slices.Clone(s.Command)
	c.Environment = slices.Clone(s.Environment)
	c.Mounts = slices.Clone(s.Mounts)
	c.ExtraHosts = slices.Clone(s.ExtraHosts)
	c.DependsOn = slices.Clone(s.DependsOn)
	if s.Healthcheck != nil {
		h := *s.Healthcheck
		h.Test = slices.Clone(h.Test)
		c.Healthcheck = &h
	}
	return &c
}

func TestHasSlotTemplate(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Service
		want bool
	}{
		{"none", Service{Command: []string{"echo", "1"}, Environment: []string{"A=b"}}, false},
		{"command", Service{Command: []string{"echo", "{{.Task.Slot}}"}}, true},
		{"entrypoint", Service{Entrypoint: []string{"{{ .Task.Slot }}"}}, true},
		{"environment", Service{Environment: []string{"A={{.Task.Slot}}"}}, true},
		{"working_dir", Service{WorkingDir: "/w/{{.Task.Slot}}"}, true},
		{"healthcheck", Service{Healthcheck: &Healthcheck{Test: []string{"{{.Task.Slot}}"}}}, true},
		{"mount source", Service{Mounts: []Mount{{Source: "/d/{{.Task.Slot}}", Target: "/d"}}}, true},
		{"mount target", Service{Mounts: []Mount{{Source: "/d", Target: "/d/{{.Task.Slot}}"}}}, true},
		{"other template", Service{Command: []string{"{{.Task.Name}}"}}, false},
	} {
		if got := c.s.HasSlotTemplate(); got != c.want {
			t.Errorf("%s: HasSlotTemplate() = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSlotTemplateThroughLoad: compose-go and the plan's checks keep the
// template as written; ForReplica fills it in.
func TestSlotTemplateThroughLoad(t *testing.T) {
	f := newFixture(t, map[string]string{
		"compose.yaml": `
services:
  w:
    image: busybox
    deploy: {replicas: 2}
    hostname: "w-{{.Task.Slot}}"
    environment:
      ID: "w{{.Task.Slot}}"
      SPACED: "{{ .Task.Slot }}"
    command: ["echo", "{{.Task.Slot}}"]
    working_dir: /work/{{.Task.Slot}}
    healthcheck:
      test: ["CMD-SHELL", "test -d /data/{{.Task.Slot}}"]
    volumes:
      - ./data/{{.Task.Slot}}:/data
      - ./shared:/out/{{.Task.Slot}}
      - type: bind
        source: ./made/{{.Task.Slot}}
        target: /made
      - vol:/vol/{{.Task.Slot}}
      - /anon/{{.Task.Slot}}
volumes:
  vol: {}
`,
		"shared/.keep": "",
		"made/1/.keep": "",
		"made/2/.keep": "",
	}, "busybox_latest.sif")
	plan := f.mustLoad(t, f.opts())
	s := plan.Service("w")
	if !s.HasSlotTemplate() {
		t.Fatal("HasSlotTemplate() = false")
	}
	if want := []string{"echo", "{{.Task.Slot}}"}; !reflect.DeepEqual(s.Command, want) {
		t.Errorf("command = %q, want %q", s.Command, want)
	}
	if want := []string{"ID=w{{.Task.Slot}}", "SPACED={{ .Task.Slot }}"}; !reflect.DeepEqual(s.Environment, want) {
		t.Errorf("environment = %q, want %q", s.Environment, want)
	}
	anon := filepath.Join(f.state, "app", "anonymous", "w", "anon%2F{{.Task.Slot}}")
	wantMounts := []Mount{
		{Kind: MountBind, Source: filepath.Join(f.dir, "data", "{{.Task.Slot}}"), Target: "/data", CreateHostPath: true},
		{Kind: MountBind, Source: filepath.Join(f.dir, "shared"), Target: "/out/{{.Task.Slot}}", CreateHostPath: true},
		{Kind: MountBind, Source: filepath.Join(f.dir, "made", "{{.Task.Slot}}"), Target: "/made", CreateHostPath: true},
		{Kind: MountVolume, Source: filepath.Join(f.state, "app", "volumes", "app_vol"), Target: "/vol/{{.Task.Slot}}", Volume: "vol", Seed: true},
		{Kind: MountVolume, Source: anon, Target: "/anon/{{.Task.Slot}}", Seed: true},
	}
	if !reflect.DeepEqual(s.Mounts, wantMounts) {
		t.Errorf("mounts:\n got %+v\nwant %+v", s.Mounts, wantMounts)
	}
	var hosts []string
	for _, h := range plan.Hosts {
		hosts = append(hosts, h.Host)
	}
	if !strings.Contains(strings.Join(hosts, " "), "w w-1 w-2") {
		t.Errorf("hosts %q: want w-1 and w-2 for hostname w-{{.Task.Slot}}", hosts)
	}

	var b bytes.Buffer
	if err := plan.Print(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`command: ["echo", "{{.Task.Slot}}"]`, `- "ID=w{{.Task.Slot}}"`, `target: "/out/{{.Task.Slot}}"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("config output lacks %s:\n%s", want, b.String())
		}
	}

	r := s.ForReplica(2)
	if want := []string{"echo", "2"}; !reflect.DeepEqual(r.Command, want) {
		t.Errorf("replica 2 command = %q, want %q", r.Command, want)
	}
	if want := []string{"ID=w2", "SPACED=2"}; !reflect.DeepEqual(r.Environment, want) {
		t.Errorf("replica 2 environment = %q", r.Environment)
	}
	if r.WorkingDir != "/work/2" || r.Healthcheck.Test[2] != "test -d /data/2" {
		t.Errorf("replica 2 working_dir %q, healthcheck %q", r.WorkingDir, r.Healthcheck.Test)
	}
	wantSrc := []string{filepath.Join(f.dir, "data", "2"), filepath.Join(f.dir, "shared"), filepath.Join(f.dir, "made", "2"), wantMounts[3].Source, filepath.Join(f.state, "app", "anonymous", "w", "anon%2F2")}
	wantTgt := []string{"/data", "/out/2", "/made", "/vol/2", "/anon/2"}
	for i, m := range r.Mounts {
		if m.Source != wantSrc[i] || m.Target != wantTgt[i] {
			t.Errorf("replica 2 mount %d = %s:%s, want %s:%s", i, m.Source, m.Target, wantSrc[i], wantTgt[i])
		}
	}
}

func TestSlotTemplateChecks(t *testing.T) {
	for _, c := range []struct {
		name    string
		service string
		files   []string
		want    string // a problem; "" for none
	}{
		{"long-syntax bind of a missing replica", `
    deploy: {replicas: 2}
    volumes: [{type: bind, source: "./d/{{.Task.Slot}}", target: /d, bind: {create_host_path: false}}]`,
			[]string{"d/1/.keep"}, `bind source ./d/2 (./d/{{.Task.Slot}} of replica 2, for /d) does not exist`},
		{"long-syntax bind, every replica there", `
    deploy: {replicas: 2}
    volumes: [{type: bind, source: "./d/{{.Task.Slot}}", target: /d}]`,
			[]string{"d/1/.keep", "d/2/.keep"}, ""},
		{"targets collide for one replica", `
    deploy: {replicas: 3}
    volumes: ["./a:/m/{{.Task.Slot}}", "./b:/m/2"]`,
			nil, `/m/2 is mounted twice (bind and bind)`},
		{"targets differ", `
    deploy: {replicas: 3}
    volumes: ["./a:/m/{{.Task.Slot}}", "./b:/m/x"]`,
			nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"compose.yaml": "services:\n  w:\n    image: busybox" + c.service + "\n"}
			for _, p := range c.files {
				files[p] = ""
			}
			f := newFixture(t, files, "busybox_latest.sif")
			_, err := f.load(t, f.opts())
			got := strings.Join(problems(err), "\n")
			switch {
			case c.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("error %q lacks %q", got, c.want)
			}
		})
	}
}

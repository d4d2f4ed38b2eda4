package compose

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Images every fixture has in its image directory.
var fixtureImages = []string{"redis_7.sif", "redis_latest.sif", "busybox_latest.sif", "postgres_16.sif"}

// planOf loads compose (the project's compose.yaml) with extra files.
func planOf(t *testing.T, compose string, files map[string]string, env ...string) (*Plan, *fixture) {
	t.Helper()
	all := map[string]string{"compose.yaml": compose}
	for k, v := range files {
		all[k] = v
	}
	f := newFixture(t, all, fixtureImages...)
	return f.mustLoad(t, f.opts(env...)), f
}

func TestTranslateServiceKeys(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		files   map[string]string
		env     []string
		check   func(t *testing.T, p *Plan, f *fixture)
	}{
		{
			name:    "registry image found in the image directory",
			compose: "services:\n  db:\n    image: redis:7\n",
			check: func(t *testing.T, p *Plan, f *fixture) {
				s := p.Service("db")
				eq(t, s.ImageRef, "redis:7")
				eq(t, s.Image, filepath.Join(f.imageDir, "redis_7.sif"))
				eq(t, s.Replicas, 1)
			},
		},
		{
			name:    "image without tag is latest",
			compose: "services:\n  db:\n    image: docker.io/library/redis\n",
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("db").Image, filepath.Join(f.imageDir, "redis_latest.sif"))
			},
		},
		{
			name:    "image as a path relative to the project",
			compose: "services:\n  a:\n    image: ./img/app.sif\n  b:\n    image: ./rootfs/\n",
			files:   map[string]string{"img/app.sif": "", "rootfs/bin/sh": ""},
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").Image, filepath.Join(f.dir, "img/app.sif"))
				eq(t, p.Service("b").Image, filepath.Join(f.dir, "rootfs"))
			},
		},
		{
			name:    "build of a Dockerfile with image uses the image and warns",
			compose: "services:\n  a:\n    image: redis:7\n    build: .\n",
			files:   map[string]string{"Dockerfile": "FROM redis:7\n"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").Image, filepath.Join(f.imageDir, "redis_7.sif"))
				mustWarn(t, p, "a", "build")
			},
		},
		{
			name:    "command and entrypoint as strings and lists",
			compose: "services:\n  a:\n    image: redis:7\n    command: redis-server --port \"6 7\"\n  b:\n    image: redis:7\n    entrypoint: [\"/bin/sh\", \"-c\"]\n    command: [\"echo hi\"]\n  c:\n    image: redis:7\n",
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").Command, []string{"redis-server", "--port", "6 7"})
				eq(t, p.Service("a").Entrypoint, nil)
				eq(t, p.Service("b").Entrypoint, []string{"/bin/sh", "-c"})
				eq(t, p.Service("b").Command, []string{"echo hi"})
				eq(t, p.Service("c").Entrypoint, nil)
				eq(t, p.Service("c").Command, nil)
			},
		},
		{
			name:    "empty entrypoint clears the image's and keeps the command",
			compose: "services:\n  a:\n    image: redis:7\n    entrypoint: []\n    command: [\"sleep\", \"1\"]\n  b:\n    image: redis:7\n    entrypoint: \"\"\n    command: sleep 1\n",
			check: func(t *testing.T, p *Plan, f *fixture) {
				for _, n := range []string{"a", "b"} {
					s := p.Service(n)
					if s.Entrypoint == nil || len(s.Entrypoint) != 0 {
						t.Errorf("%s: entrypoint %#v, want empty and not nil", n, s.Entrypoint)
					}
					eq(t, s.Command, []string{"sleep", "1"})
				}
			},
		},
		{
			name:    "empty command warns: the runscript cannot drop its CMD",
			compose: "services:\n  a:\n    image: redis:7\n    command: []\n",
			check: func(t *testing.T, p *Plan, f *fixture) {
				mustWarn(t, p, "a", "command")
			},
		},
		{
			name: "environment and env_file, sorted, unset values dropped",
			compose: `services:
  a:
    image: redis:7
    env_file: [a.env]
    environment:
      ZED: last
      FROM_HOST:
      NOT_SET:
      EMPTY: ""
      BOTH: environment
    working_dir: /srv
`,
			files: map[string]string{"a.env": "BOTH=file\nONLY_FILE=1\n"},
			env:   []string{"FROM_HOST=host value"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				s := p.Service("a")
				eq(t, s.Environment, []string{"BOTH=environment", "EMPTY=", "FROM_HOST=host value", "ONLY_FILE=1", "ZED=last"})
				eq(t, s.WorkingDir, "/srv")
			},
		},
		{
			name: "bind mounts",
			compose: `services:
  a:
    image: redis:7
    volumes:
      - ./conf:/etc/conf:ro
      - ./missing:/data
      - type: bind
        source: ./conf
        target: /long
      - type: bind
        source: ./absent
        target: /absent
      - type: bind
        source: ./absent-too
        target: /absent-too
        bind: {propagation: rprivate}
      - type: bind
        source: ./conf
        target: /strict
        bind: {create_host_path: false}
`,
			files: map[string]string{"conf/x": ""},
			check: func(t *testing.T, p *Plan, f *fixture) {
				// docker compose creates a missing host path unless
				// create_host_path: false, with or without a bind: block.
				eq(t, p.Service("a").Mounts, []Mount{
					{Kind: MountBind, Source: filepath.Join(f.dir, "conf"), Target: "/etc/conf", ReadOnly: true, CreateHostPath: true},
					{Kind: MountBind, Source: filepath.Join(f.dir, "missing"), Target: "/data", CreateHostPath: true},
					{Kind: MountBind, Source: filepath.Join(f.dir, "conf"), Target: "/long", CreateHostPath: true},
					{Kind: MountBind, Source: filepath.Join(f.dir, "absent"), Target: "/absent", CreateHostPath: true},
					{Kind: MountBind, Source: filepath.Join(f.dir, "absent-too"), Target: "/absent-too", CreateHostPath: true},
					{Kind: MountBind, Source: filepath.Join(f.dir, "conf"), Target: "/strict"},
				})
			},
		},
		{
			name: "named, anonymous and tmpfs volumes",
			compose: `services:
  a:
    image: redis:7
    tmpfs: [/run]
    volumes:
      - data:/data
      - type: volume
        source: named
        target: /named
        read_only: true
        volume:
          nocopy: true
      - /cache/dir
      - type: tmpfs
        target: /scratch
volumes:
  data:
  named:
    name: custom
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				st := filepath.Join(f.state, "app")
				eq(t, p.StateDir, st)
				eq(t, p.Service("a").Mounts, []Mount{
					{Kind: MountVolume, Source: filepath.Join(st, "volumes", "app_data"), Target: "/data", Seed: true, Volume: "data"},
					{Kind: MountVolume, Source: filepath.Join(st, "volumes", "custom"), Target: "/named", ReadOnly: true, Volume: "named"},
					{Kind: MountVolume, Source: filepath.Join(st, "anonymous", "a", "cache%2Fdir"), Target: "/cache/dir", Seed: true},
					{Kind: MountTmpfs, Target: "/scratch"},
					{Kind: MountTmpfs, Target: "/run"},
				})
			},
		},
		{
			name: "secrets: default, relative and absolute targets",
			compose: `services:
  a:
    image: redis:7
    secrets:
      - db.pw
      - source: db.pw
        target: other
      - source: db.pw
        target: /etc/pw
secrets:
  db.pw:
    file: ./db.pw
`,
			files: map[string]string{"db.pw": "s3cret"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				src := filepath.Join(f.dir, "db.pw")
				eq(t, p.Service("a").Mounts, []Mount{
					{Kind: MountSecret, Source: src, Target: "/run/secrets/db.pw", ReadOnly: true},
					{Kind: MountSecret, Source: src, Target: "/run/secrets/other", ReadOnly: true},
					{Kind: MountSecret, Source: src, Target: "/etc/pw", ReadOnly: true},
				})
			},
		},
		{
			name: "secret from the environment is written under the state directory",
			compose: `services:
  a:
    image: redis:7
    secrets:
      - source: token
        mode: 0400
secrets:
  token:
    environment: TOKEN
`,
			env: []string{"TOKEN=abc"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				m := p.Service("a").Mounts[0]
				eq(t, m.Source, filepath.Join(f.state, "app", "secrets", "token"))
				eq(t, m.Target, "/run/secrets/token")
				if m.Content == nil || *m.Content != "abc" {
					t.Errorf("content %v, want abc", m.Content)
				}
				mustWarn(t, p, "a", "secrets")
			},
		},
		{
			name: "configs: file and content",
			compose: `services:
  a:
    image: redis:7
    configs:
      - conf
      - source: inline
        target: /etc/inline.conf
configs:
  conf:
    file: ./app.conf
  inline:
    content: "hello"
`,
			files: map[string]string{"app.conf": "x"},
			check: func(t *testing.T, p *Plan, f *fixture) {
				ms := p.Service("a").Mounts
				eq(t, ms[0], Mount{Kind: MountConfig, Source: filepath.Join(f.dir, "app.conf"), Target: "/conf", ReadOnly: true})
				eq(t, ms[1].Target, "/etc/inline.conf")
				if ms[1].Content == nil || *ms[1].Content != "hello" {
					t.Errorf("inline config content %v", ms[1].Content)
				}
			},
		},
		{
			name: "hosts: localhost, every service and alias, links, extra_hosts",
			compose: `services:
  web:
    image: redis:7
    links: ["db:database"]
    extra_hosts:
      - "gw=host-gateway"
      - "api.example:10.0.0.1"
      - "v6=::2"
  db:
    image: redis:7
    container_name: pg
    hostname: dbhost
    networks:
      back:
        aliases: [store]
networks:
  back:
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				base := []HostEntry{
					{Host: "localhost", IP: "127.0.0.1"}, {Host: "localhost", IP: "::1"},
					{Host: "ip6-localhost", IP: "::1"}, {Host: "ip6-loopback", IP: "::1"},
					{Host: "db", IP: "127.0.0.1", Service: "db"}, {Host: "pg", IP: "127.0.0.1", Service: "db"},
					{Host: "dbhost", IP: "127.0.0.1", Service: "db"}, {Host: "store", IP: "127.0.0.1", Service: "db"},
					{Host: "web", IP: "127.0.0.1", Service: "web"},
				}
				eq(t, p.Hosts, base)
				eq(t, p.Service("db").ExtraHosts, nil)
				own := []HostEntry{
					{Host: "database", IP: "127.0.0.1", Service: "db"},
					{Host: "api.example", IP: "10.0.0.1"},
					{Host: "gw", IP: "host-gateway", Comment: "host-gateway"},
					{Host: "v6", IP: "::2"},
				}
				eq(t, p.Service("web").ExtraHosts, own)
				eq(t, p.HostsOf(p.Service("web")), append(slices.Clone(base), own...))
				eq(t, p.HostsOf(p.Service("db")), base)
				eq(t, p.Service("db").Hostname, "dbhost")
				// networks: are honoured (networks.go): db on back, web on
				// the default network.
				eq(t, p.Service("db").Networks, []ServiceNetwork{{Name: "back", Aliases: []string{"store"}}})
				eq(t, p.Service("web").Networks, []ServiceNetwork{{Name: "default"}})
				eq(t, p.Networks, []Network{{Name: "back"}, {Name: "default"}})
				if hasWarning(p, "db", "networks") || hasWarning(p, "", "networks") {
					t.Errorf("networks warned about: %v", p.Warnings)
				}
				// container_name is what docker compose shows for the replica.
				eq(t, p.Service("db").DisplayName(1), "pg")
				eq(t, p.Service("db").DisplayName(2), "db-2") // a replica a live scale adds
				eq(t, p.Service("web").DisplayName(1), "web-1")
			},
		},
		{
			name: "depends_on short and long syntax",
			compose: `services:
  web:
    image: redis:7
    depends_on:
      db:
        condition: service_healthy
        restart: true
      init:
        condition: service_completed_successfully
  init:
    image: redis:7
  db:
    image: redis:7
    healthcheck:
      test: ["CMD", "true"]
  cache:
    image: redis:7
    depends_on: [db]
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("web").DependsOn, []Dependency{
					{Service: "db", Condition: ConditionHealthy, Required: true, Restart: true},
					{Service: "init", Condition: ConditionCompletedSuccessfully, Required: true},
				})
				eq(t, p.Service("cache").DependsOn, []Dependency{{Service: "db", Condition: ConditionStarted, Required: true}})
				var order []string
				for _, s := range p.Services {
					order = append(order, s.Name)
				}
				eq(t, order, []string{"db", "cache", "init", "web"})
			},
		},
		{
			name: "stop signal and grace period",
			compose: `services:
  a:
    image: redis:7
  b:
    image: redis:7
    stop_signal: TERM
    stop_grace_period: 1m30s
  c:
    image: redis:7
    stop_signal: sigint
  d:
    image: redis:7
    stop_signal: "9"
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").StopSignal, "SIGTERM")
				eq(t, p.Service("a").StopGracePeriod, 10*time.Second)
				eq(t, p.Service("b").StopSignal, "SIGTERM")
				eq(t, p.Service("b").StopGracePeriod, 90*time.Second)
				eq(t, p.Service("c").StopSignal, "SIGINT")
				eq(t, p.Service("d").StopSignal, "SIGKILL")
			},
		},
		{
			name: "restart policies",
			compose: `services:
  none:
    image: redis:7
  no:
    image: redis:7
    restart: "no"
  always:
    image: redis:7
    restart: always
  onfail:
    image: redis:7
    restart: on-failure
  onfail3:
    image: redis:7
    restart: on-failure:3
  unless:
    image: redis:7
    restart: unless-stopped
  deploy:
    image: redis:7
    restart: always
    deploy:
      restart_policy:
        condition: on-failure
        delay: 5s
        max_attempts: 4
        window: 1m
  deploydefault:
    image: redis:7
    deploy:
      restart_policy: {}
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("none").Restart, RestartPolicy{Condition: "no"})
				eq(t, p.Service("no").Restart, RestartPolicy{Source: "restart", Condition: "no"})
				eq(t, p.Service("always").Restart, RestartPolicy{Source: "restart", Condition: "always"})
				eq(t, p.Service("onfail").Restart, RestartPolicy{Source: "restart", Condition: "on-failure"})
				eq(t, p.Service("onfail3").Restart, RestartPolicy{Source: "restart", Condition: "on-failure", MaxAttempts: 3})
				eq(t, p.Service("unless").Restart, RestartPolicy{Source: "restart", Condition: "unless-stopped"})
				eq(t, p.Service("deploy").Restart, RestartPolicy{Source: "deploy", Condition: "on-failure", MaxAttempts: 4, Delay: 5 * time.Second, Window: time.Minute})
				mustWarn(t, p, "deploy", "restart")
				eq(t, p.Service("deploydefault").Restart, RestartPolicy{Source: "deploy", Condition: "any"})
			},
		},
		{
			name: "healthchecks",
			compose: `services:
  cmd:
    image: redis:7
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
  shell:
    image: redis:7
    healthcheck:
      test: ["CMD-SHELL", "redis-cli ping || exit 1"]
      interval: 2s
      timeout: 1s
      retries: 5
      start_period: 10s
      start_interval: 1s
  string:
    image: redis:7
    healthcheck:
      test: redis-cli ping
  none:
    image: redis:7
    healthcheck:
      test: ["NONE"]
  disabled:
    image: redis:7
    healthcheck:
      disable: true
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("cmd").Healthcheck, &Healthcheck{Test: []string{"redis-cli", "ping"}, Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3, StartInterval: 5 * time.Second})
				eq(t, p.Service("shell").Healthcheck, &Healthcheck{Test: []string{"/bin/sh", "-c", "redis-cli ping || exit 1"}, Interval: 2 * time.Second, Timeout: time.Second, Retries: 5, StartPeriod: 10 * time.Second, StartInterval: time.Second})
				eq(t, p.Service("string").Healthcheck.Test, []string{"/bin/sh", "-c", "redis-cli ping"})
				eq(t, p.Service("none").Healthcheck, (*Healthcheck)(nil))
				eq(t, p.Service("disabled").Healthcheck, (*Healthcheck)(nil))
			},
		},
		{
			name: "replicas",
			compose: `services:
  a:
    image: redis:7
    deploy:
      replicas: 3
  b:
    image: redis:7
    scale: 2
  off:
    image: redis:7
    scale: 0
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").Replicas, 3)
				eq(t, p.Service("b").Replicas, 2)
				if p.Service("off") != nil {
					t.Error("a service with scale 0 is in the plan")
				}
				mustWarn(t, p, "off", "scale")
			},
		},
		{
			name: "volume options and top-level keys sstack cannot honour",
			compose: `services:
  a:
    image: redis:7
    network_mode: host
    tmpfs: ["/run:size=64m"]
    volumes:
      - ./conf:/conf:z
      - data:/data
      - type: tmpfs
        target: /scratch
        tmpfs:
          size: 1000
volumes:
  data:
    driver: nfs
    labels: {x: y}
secrets:
  unused:
    file: ./x.pw
    labels: {x: y}
jobs:
  migrate:
    image: redis:7
    triggers: {manual: true}
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				var keys []string
				for _, w := range p.Warnings {
					keys = append(keys, w.Service+"/"+w.Key)
				}
				eq(t, keys, []string{
					"/volumes.data.driver", "/volumes.data.labels", "/secrets.unused.labels", "/jobs",
					"a/volumes", "a/volumes", "a/tmpfs",
				})
			},
		},
		{
			name: "volumes_from",
			compose: `services:
  a:
    image: redis:7
    volumes: [./conf:/conf, data:/data]
    tmpfs: [/tmp]
  b:
    image: redis:7
    volumes_from: ["a:ro", "container:other"]
    volumes: [./own:/data]
volumes:
  data:
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("b").Mounts, []Mount{
					{Kind: MountBind, Source: filepath.Join(f.dir, "own"), Target: "/data", CreateHostPath: true},
					{Kind: MountBind, Source: filepath.Join(f.dir, "conf"), Target: "/conf", ReadOnly: true, CreateHostPath: true},
				})
				eq(t, p.Service("b").DependsOn, []Dependency{{Service: "a", Condition: ConditionStarted, Required: true}})
				mustWarn(t, p, "b", "volumes_from")
			},
		},
		{
			name: "keys sstack cannot honour are warned about",
			compose: `services:
  a:
    image: redis:7
    ports: ["6379:6379"]
    expose: ["6379"]
    user: redis
    privileged: true
    cap_add: [NET_ADMIN]
    labels: {x: y}
    logging: {driver: syslog}
    network_mode: bridge
    ulimits: {nofile: 1024}
    mem_limit: 1g
    cpus: 0.5
    init: false
    read_only: true
    deploy:
      resources:
        limits: {memory: 1g}
  b:
    image: redis:7
    ports: ["8080:6379"]
    init: true
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				for _, k := range []string{"user", "privileged", "cap_add", "labels", "logging", "network_mode", "init"} {
					mustWarn(t, p, "a", k)
				}
				eq(t, p.Service("a").Ulimits, []Ulimit{{"nofile", 1024, 1024}})
				if hasWarning(p, "a", "expose") {
					t.Error("expose warned about: it documents ports within the stack's network")
				}
				// Limits are applied now (resources_test.go), not warned about.
				for _, k := range []string{"mem_limit", "cpus", "deploy.resources"} {
					if hasWarning(p, "a", k) {
						t.Errorf("%s warned about, but it is applied", k)
					}
				}
				if !p.Service("a").ReadOnly {
					t.Error("read_only not translated")
				}
				if hasWarning(p, "b", "init") {
					t.Error("init: true warned about, but Apptainer always has an init")
				}
				// 6379 also used by a, in a namespace of its own.
				if hasWarning(p, "b", "ports") || hasWarning(p, "a", "ports") {
					t.Error("a port two services listen on warned about: each replica has its own address")
				}
			},
		},
		{
			name: "security_opt: each entry with what holds under Apptainer",
			compose: `services:
  a:
    image: redis:7
    security_opt: ["no-new-privileges:true", "seccomp=unconfined", "seccomp:./profile.json", "apparmor:docker-default", "label:disable"]
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				want := map[string]string{
					"no-new-privileges:true":  "Apptainer sets no_new_privs itself for an unprivileged user",
					"seccomp=unconfined":      "runs unconfined already",
					"seccomp:./profile.json":  "the profile is not applied",
					"apparmor:docker-default": "AppArmor profile is not applied",
					"label:disable":           "SELinux labels are not applied",
				}
				ws := warningsOf(p, "a")
				for opt, reason := range want {
					if !slices.ContainsFunc(ws, func(w Warning) bool {
						return w.Key == "security_opt" && strings.HasPrefix(w.Reason, opt+": ") && strings.Contains(w.Reason, reason)
					}) {
						t.Errorf("no security_opt warning %q with %q in %v", opt, reason, ws)
					}
				}
			},
		},
		{
			name: "ports: kept as written; on the host's network remaps and host_ip warned about",
			compose: `services:
  a:
    image: redis:7
    network_mode: host
    ports:
      - "127.0.0.1:8080:80"
      - "9000:9000/udp"
      - "0.0.0.0:7000:7000"
      - target: 80
        published: "8081"
`,
			check: func(t *testing.T, p *Plan, f *fixture) {
				eq(t, p.Service("a").Ports, []Port{
					{Target: 80, Protocol: "tcp", Published: "8080", HostIP: "127.0.0.1"},
					{Target: 9000, Protocol: "udp", Published: "9000"},
					{Target: 7000, Protocol: "tcp", Published: "7000", HostIP: "0.0.0.0"},
					{Target: 80, Protocol: "tcp", Published: "8081"},
				})
				var hostIP, remapped []string
				for _, w := range warningsOf(p, "a") {
					if strings.Contains(w.Reason, "host address") {
						hostIP = append(hostIP, w.Reason)
					}
					if strings.Contains(w.Reason, "not remapped") {
						remapped = append(remapped, w.Reason)
					}
				}
				if len(hostIP) != 1 || !strings.HasPrefix(hostIP[0], "127.0.0.1:8080:80/tcp: the host address is not honoured") {
					t.Errorf("host_ip warnings: %q", hostIP)
				}
				if len(remapped) != 1 || !strings.HasPrefix(remapped[0], "8080->80, 8081->80 not remapped") {
					t.Errorf("remap warnings: %q", remapped)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f := planOf(t, tt.compose, tt.files, tt.env...)
			tt.check(t, p, f)
		})
	}
}

func TestVolumeDirs(t *testing.T) {
	f := newFixture(t, nil, fixtureImages...)
	device := filepath.Join(filepath.Dir(f.dir), "hostdir")
	compose := `services:
  a:
    image: redis:7
    volumes: [shared:/shared, hostdir:/hostdir]
volumes:
  shared:
    external: true
  hostdir:
    driver_opts: {type: none, o: bind, device: ` + device + `}
`
	if err := os.WriteFile(filepath.Join(f.dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := f.load(t, f.opts())
	shared := filepath.Join(f.state, "_volumes", "shared")
	wantErrors(t, err,
		`service "a": volumes: external volume "shared" (shared) does not exist; create it with mkdir -p `+shared,
		`volume "hostdir" binds device `+device+`, which is not a directory`)

	for _, d := range []string{shared, device} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := f.mustLoad(t, f.opts())
	eq(t, p.Service("a").Mounts, []Mount{
		{Kind: MountVolume, Source: shared, Target: "/shared", Seed: true, Volume: "shared"},
		{Kind: MountVolume, Source: device, Target: "/hostdir", Seed: true, Volume: "hostdir"},
	})
}

func TestTranslateErrors(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		files   map[string]string
		mode    map[string]os.FileMode
		env     []string
		want    []string // substrings, one problem each, in order
	}{
		{
			name:    "secret readable by others",
			compose: "services:\n  db:\n    image: redis:7\n    secrets: [db_pw]\nsecrets:\n  db_pw:\n    file: ./pw.txt\n",
			files:   map[string]string{"pw.txt": "x"},
			mode:    map[string]os.FileMode{"pw.txt": 0o644},
			want:    []string{`service "db": secret "db_pw": file ./pw.txt is readable by others (mode 0644); run chmod 600 ./pw.txt`},
		},
		{
			name:    "secret readable by the group",
			compose: "services:\n  db:\n    image: redis:7\n    secrets: [db_pw]\nsecrets:\n  db_pw:\n    file: ./pw.txt\n",
			files:   map[string]string{"pw.txt": "x"},
			mode:    map[string]os.FileMode{"pw.txt": 0o640},
			want:    []string{`service "db": secret "db_pw": file ./pw.txt is readable by its group (mode 0640); run chmod 600 ./pw.txt`},
		},
		{
			name:    "missing secret file, reported once for all its users",
			compose: "services:\n  a:\n    image: redis:7\n    secrets: [s]\n  b:\n    image: redis:7\n    secrets: [s]\nsecrets:\n  s:\n    file: ./missing.txt\n",
			want:    []string{`service "a": secret "s": file ./missing.txt does not exist; create it with mode 600`},
		},
		{
			name:    "secret from an unset variable",
			compose: "services:\n  a:\n    image: redis:7\n    secrets: [s]\nsecrets:\n  s:\n    environment: NOPE\n",
			want:    []string{`service "a": secret "s": environment variable NOPE is not set`},
		},
		{
			name:    "undeclared secret and volume",
			compose: "services:\n  a:\n    image: redis:7\n    secrets: [s]\n    volumes: [vol:/v]\n",
			want:    []string{`service "a": volumes: volume "vol" is not declared`, `service "a": secret "s": not declared`},
		},
		{
			name:    "unknown dependency",
			compose: "services:\n  web:\n    image: redis:7\n    depends_on: [dbb]\n",
			want:    []string{`service "web": depends_on "dbb": there is no service "dbb" in the project`},
		},
		{
			name:    "dependency cycle",
			compose: "services:\n  a:\n    image: redis:7\n    depends_on: [b]\n  b:\n    image: redis:7\n    depends_on: [c]\n  c:\n    image: redis:7\n    depends_on: [a]\n",
			want:    []string{`service "a": depends_on: dependency cycle a -> b -> c -> a; remove one of these dependencies`},
		},
		{
			name:    "service_healthy on a service without healthcheck",
			compose: "services:\n  web:\n    image: redis:7\n    depends_on:\n      db: {condition: service_healthy}\n  db:\n    image: redis:7\n",
			want:    []string{`service "web": depends_on "db": condition service_healthy, but service "db" has no healthcheck`},
		},
		{
			name:    "dependency on a service of a disabled profile",
			compose: "services:\n  web:\n    image: redis:7\n    depends_on: [debug]\n  debug:\n    image: redis:7\n    profiles: [dev]\n",
			want:    []string{`service "web": depends_on "debug": service "debug" is not enabled: it has profiles dev; enable one with --profile dev, or set required: false`},
		},
		{
			name:    "missing bind source with create_host_path: false",
			compose: "services:\n  a:\n    image: redis:7\n    volumes:\n      - type: bind\n        source: ./conf.d\n        target: /etc/conf.d\n        bind: {create_host_path: false}\n",
			want:    []string{`service "a": volumes: bind source ./conf.d (for /etc/conf.d) does not exist and create_host_path is false; create it`},
		},
		{
			name:    "unsupported volume type",
			compose: "services:\n  a:\n    image: redis:7\n    volumes:\n      - type: npipe\n        source: \\\\.\\pipe\\x\n        target: /p\n",
			want:    []string{`service "a": volumes: /p: volume type "npipe" is not supported`},
		},
		{
			name:    "bad restart, signal and healthcheck",
			compose: "services:\n  a:\n    image: redis:7\n    restart: sometimes\n    stop_signal: SIGNOPE\n    healthcheck:\n      test: [\"CMD\"]\n",
			want: []string{
				`service "a": restart: unknown policy "sometimes"`,
				`service "a": healthcheck: test CMD has no command`,
				`service "a": stop_signal: unknown signal "SIGNOPE"`,
			},
		},
		{
			name:    "empty entrypoint without command",
			compose: "services:\n  a:\n    image: redis:7\n    entrypoint: []\n",
			want:    []string{`service "a": entrypoint: an empty entrypoint clears the image's entrypoint and command, and no command: is given`},
		},
		{
			name:    "container_name with replicas",
			compose: "services:\n  a:\n    image: redis:7\n    container_name: one\n    scale: 2\n",
			want:    []string{`service "a": container_name: "one" cannot name 2 replicas`},
		},
		{
			name:    "bad extra host",
			compose: "services:\n  a:\n    image: redis:7\n    extra_hosts: [\"h=nope\"]\n",
			want:    []string{`service "a": extra_hosts: h: "nope" is not an IP address`},
		},
		{
			name:    "instance name too long",
			compose: "name: " + strings.Repeat("p", 241) + "\nservices:\n  service:\n    image: redis:7\n",
			want:    []string{`service "service": name: instance name "ppp`},
		},
		{
			name: "every problem of every service at once",
			compose: `services:
  a:
    image: Nope:1
  b:
    image: redis:7
    secrets: [s]
    depends_on: [ghost]
  c:
    build: ./c
    pull_policy: build
    x-sstack: {definition: ./c.def}
secrets:
  s:
    file: ./s.txt
`,
			files: map[string]string{"s.txt": "x"},
			mode:  map[string]os.FileMode{"s.txt": 0o604},
			want: []string{
				`service "a": image: "Nope:1" is not an image reference`,
				`service "b": secret "s": file ./s.txt is readable by others (mode 0604); run chmod 600 ./s.txt`,
				`service "c": x-sstack.definition: ./c.def does not exist`,
				`service "b": depends_on "ghost": there is no service "ghost"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"compose.yaml": tt.compose}
			for k, v := range tt.files {
				files[k] = v
			}
			f := newFixture(t, files, fixtureImages...)
			for name, mode := range tt.mode {
				if err := os.Chmod(filepath.Join(f.dir, name), mode); err != nil {
					t.Fatal(err)
				}
			}
			p, err := f.load(t, f.opts(tt.env...))
			if p != nil {
				t.Errorf("a plan despite problems")
			}
			r := strings.NewReplacer("IMAGES", f.imageDir, "PROJECT", f.dir)
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = r.Replace(w)
			}
			wantErrors(t, err, want...)
		})
	}
}

// wantErrors checks err holds exactly one problem per entry of want, in
// order, each containing its entry.
func wantErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	got := problems(err)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d:\n got  %s\n want %s", i, got[i], want[i])
		}
	}
	if err != nil && !isInvalid(err) {
		t.Errorf("problems do not match ErrInvalid: %v", err)
	}
}

// isInvalid: every problem is an *Error, and so matches ErrInvalid.
func isInvalid(err error) bool {
	errs := []error{err}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		errs = u.Unwrap()
	}
	for _, e := range errs {
		var pe *Error
		if !errors.As(e, &pe) || !errors.Is(e, ErrInvalid) {
			return false
		}
	}
	return true
}

func TestStopSignalSpellings(t *testing.T) {
	for in, want := range map[string]string{"TERM": "SIGTERM", "SIGTERM": "SIGTERM", "sigint": "SIGINT", "hup": "SIGHUP", "\"9\"": "SIGKILL", "SIGRTMIN+3": "SIGRTMIN+3", "RTMAX-1": "SIGRTMAX-1", "SIGIOT": "SIGABRT"} {
		p, _ := planOf(t, "services:\n  a:\n    image: redis:7\n    stop_signal: "+in+"\n", nil)
		if got := p.Service("a").StopSignal; got != want {
			t.Errorf("stop_signal %s: %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"NOPE", "\"99\"", "SIG", "\"0\""} {
		f := newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: redis:7\n    stop_signal: " + in + "\n"}, fixtureImages...)
		_, err := f.load(t, f.opts())
		wantErrors(t, err, `service "a": stop_signal: `)
	}
}

func mustWarn(t *testing.T, p *Plan, service, key string) {
	t.Helper()
	if !hasWarning(p, service, key) {
		t.Errorf("no warning for service %q key %q; warnings: %v", service, key, p.Warnings)
	}
}

func eq[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got  %#v\n want %#v", got, want)
	}
}

// ulimits in both forms; unknown resources and a soft limit above the
// hard one are refused.
func TestUlimits(t *testing.T) {
	f := newFixture(t, map[string]string{"compose.yaml": `services:
  a:
    image: redis:7
    ulimits:
      nproc: 65535
      nofile: {soft: 1024, hard: 4096}
      core: -1
`}, fixtureImages...)
	p := f.mustLoad(t, f.opts())
	eq(t, p.Service("a").Ulimits, []Ulimit{{"core", -1, -1}, {"nofile", 1024, 4096}, {"nproc", 65535, 65535}})
	f = newFixture(t, map[string]string{"compose.yaml": `services:
  a:
    image: redis:7
    ulimits:
      nofiles: 10
      nofile: {soft: 4096, hard: 1024}
`}, fixtureImages...)
	_, err := f.load(t, f.opts())
	wantErrors(t, err,
		`service "a": ulimits: nofile: soft limit 4096 is above the hard limit 1024`,
		`service "a": ulimits: nofiles: not a resource limit`)
}

// ipc: host stays in the host's IPC namespace; services that share one
// (service:NAME and NAME) both stay in the host's, with a warning each.
func TestIPC(t *testing.T) {
	f := newFixture(t, map[string]string{"compose.yaml": `services:
  h:
    image: redis:7
    ipc: host
  owner:
    image: redis:7
    ipc: shareable
  user:
    image: redis:7
    ipc: service:owner
  alone:
    image: redis:7
    ipc: shareable
  own:
    image: redis:7
`}, fixtureImages...)
	p := f.mustLoad(t, f.opts())
	for name, want := range map[string]bool{"h": true, "owner": true, "user": true, "alone": false, "own": false} {
		if got := p.Service(name).HostIPC; got != want {
			t.Errorf("%s: HostIPC %v, want %v", name, got, want)
		}
	}
	mustWarn(t, p, "user", "ipc")
	mustWarn(t, p, "owner", "ipc")
	for _, quiet := range []string{"h", "alone", "own"} {
		if hasWarning(p, quiet, "ipc") {
			t.Errorf("%s: ipc warned about", quiet)
		}
	}
	f = newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: redis:7\n    ipc: service:nope\n"}, fixtureImages...)
	_, err := f.load(t, f.opts())
	wantErrors(t, err, `service "a": depends_on "nope": there is no service "nope" in the project`)
}

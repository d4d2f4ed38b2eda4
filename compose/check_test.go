package compose

import (
	"strings"
	"testing"
)

// TestPreStartChecks: what would fail once instances start is refused by
// Load, naming the service and the compose key.
func TestPreStartChecks(t *testing.T) {
	for _, c := range []struct {
		name    string
		service string   // lines under services.a (image: busybox given)
		want    []string // one problem each, in order
	}{
		{"environment names Apptainer refuses", `
    environment: {MY-VAR: a, 1ABC: b, ok_1: c}`, []string{
			`service "a": environment: variable name "1ABC": Apptainer allows only letters, digits and '_', not starting with a digit; rename it`,
			`service "a": environment: variable name "MY-VAR": Apptainer allows only letters, digits and '_'`,
		}},
		{"environment value with a NUL byte", `
    environment: {A: "x\0y"}`, []string{`service "a": environment: variable "A": the value contains a NUL byte`}},
		{"environment from an env_file", `
    env_file: [bad.env]`, []string{`service "a": environment: variable name "my.var"`}},
		{"relative volume target", `
    volumes: ["./d:data"]`, []string{`service "a": volumes: target "data": want an absolute container path, such as /data`}},
		{"relative long-syntax target", `
    volumes: [{type: volume, source: v, target: data}]`, []string{`service "a": volumes: target "data": want an absolute container path`}},
		{"relative tmpfs", `
    tmpfs: [run]`, []string{`service "a": tmpfs: target "run": want an absolute container path, such as /run`}},
		{"tmpfs with a comma", `
    tmpfs: ["/a,b"]`, []string{`service "a": tmpfs: target "/a,b": Apptainer cannot mount a tmpfs on a path with a comma`}},
		{"bind onto the root", `
    volumes: ["./d:/"]`, []string{`service "a": volumes: target "/": nothing can be mounted over the container's root`}},
		{"relative target of every replica, reported once", `
    deploy: {replicas: 3}
    volumes: ["./d:data/{{.Task.Slot}}"]`, []string{`service "a": volumes: target "data/1": want an absolute container path`}},
		{"mounted twice", `
    volumes: ["./d:/x", {type: volume, source: v, target: /x/}]`, []string{`service "a": volumes: /x is mounted twice (bind and volume); remove one`}},
		{"relative working_dir", `
    working_dir: app`, []string{`service "a": working_dir: "app": want an absolute container path, such as /app`}},
		{"NUL in the command", `
    command: ["echo", "a\0b"]`, []string{`service "a": command: argument "a\x00b" contains a NUL byte`}},
		{"negative durations", `
    stop_grace_period: -5s
    deploy: {restart_policy: {delay: -1s}}
    healthcheck: {test: [CMD, "true"], interval: -2s}`, []string{
			`service "a": stop_grace_period: -5s is negative; give a duration of 0s or more, such as 10s or 1m30s`,
			`service "a": deploy.restart_policy.delay: -1s is negative`,
			`service "a": healthcheck.interval: -2s is negative`,
		}},
		{"too many replicas", `
    hostname: "w{{.Task.Slot}}"
    deploy: {replicas: 100000000}`, []string{`service "a": scale: 100000000 replicas; give 0 to 10000`}},
		{"unknown stop signal", `
    stop_signal: SIGTERMINATE`, []string{`service "a": stop_signal: unknown signal "SIGTERMINATE"; use a name like SIGTERM`}},
		{"every problem at once", `
    environment: [X-Y=1]
    working_dir: w
    volumes: ["./d:d"]`, []string{
			`service "a": environment: variable name "X-Y"`,
			`service "a": working_dir: "w"`,
			`service "a": volumes: target "d"`,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, map[string]string{
				"compose.yaml": "services:\n  a:\n    image: busybox" + c.service + "\nvolumes:\n  v: {}\n",
				"d/.keep":      "",
				"bad.env":      "my.var=1\n",
			}, "busybox_latest.sif")
			p, err := f.load(t, f.opts())
			if p != nil {
				t.Error("a plan despite problems")
			}
			wantErrors(t, err, c.want...)
		})
	}
}

// TestCheckAfterScale: up runs the checks again on the plan it runs, so
// --scale cannot give an instance name Apptainer refuses.
func TestCheckAfterScale(t *testing.T) {
	name := strings.Repeat("p", 243)
	p, _ := planOf(t, "name: "+name+"\nservices:\n  web:\n    image: redis:7\n", nil)
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	p.Service("web").Replicas = MaxReplicas + 1
	wantErrors(t, p.Check(), `service "web": scale: 10001 replicas; give 0 to 10000`)
	p.Service("web").Replicas = 100
	wantErrors(t, p.Check(), `service "web": name: instance name "`+name+`.web.100" is 251 characters long; Apptainer allows at most 250; rename the service or shorten the project name`)
}

func TestPortsWellFormed(t *testing.T) {
	for ports, want := range map[string]string{
		`[{target: 99999}]`:                          `service "a": ports: target 99999 is not a port number; give 1 to 65535`,
		`[{target: 80, published: "abc"}]`:           `service "a": ports: published "abc" is not a port or a range of ports`,
		`[{target: 80, published: "70000"}]`:         `published "70000" is not a port`,
		`[{target: 80, published: "9000-8000"}]`:     `published "9000-8000" is not a port`,
		`[{target: 80, protocol: xyz}]`:              `service "a": ports: protocol "xyz": use tcp, udp or sctp`,
		`["8080:80", "0:81", "9000-9001:82-83/udp"]`: "",
	} {
		f := newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: busybox\n    ports: " + ports + "\n"}, "busybox_latest.sif")
		_, err := f.load(t, f.opts())
		if want == "" {
			if err != nil {
				t.Errorf("ports %s: %v", ports, err)
			}
			continue
		}
		wantErrors(t, err, want)
	}
}

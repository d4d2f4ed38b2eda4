package compose

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadMessages: compose-go's errors in compose's words: the file when
// known, the service, the key as written, what is expected; never a Go
// type or a decoder's path.
func TestLoadMessages(t *testing.T) {
	for _, c := range []struct {
		service string // lines under services."my.web" (image: given)
		want    string // FILE is the compose file
	}{
		{"command: true", `FILE: service "my.web": command: must be a string or a list of strings`},
		{"entrypoint: {a: 1}", `FILE: service "my.web": entrypoint: must be a string or a list of strings`},
		{"deploy: {restart_policy: {max_attempts: -1}}", `FILE: service "my.web": deploy.restart_policy.max_attempts: must be a whole number of 0 or more, not -1`},
		{"healthcheck: {test: [CMD, x], retries: -3}", `FILE: service "my.web": healthcheck.retries: must be a whole number of 0 or more, not -3`},
		{"stop_grace_period: 5x", `FILE: service "my.web": stop_grace_period: must be a duration such as 10s, 1m30s or 2h (unknown unit "x" in duration "5x")`},
		{"stop_grace_period: 10", `FILE: service "my.web": stop_grace_period: must be a duration such as 10s or 1m30s`},
		{"mem_limit: abc", `FILE: service "my.web": mem_limit: must be a size such as 1024, 512m or 2g, not 'abc'`},
		{"environment: {A: [1]}", `FILE: service "my.web": environment.A: must be a string, a number or a boolean`},
		{"environment: 5", `FILE: service "my.web": environment: must be a list of strings or a mapping`},
		{"ports: [abc]", `FILE: service "my.web": ports: "abc": container port "abc" is not a port number or range; write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], such as "8080:80"`},
		{`ports: ["70000:80"]`, `FILE: service "my.web": ports: "70000:80": host port "70000" is not a port number or range`},
		{`ports: ["80/xyz"]`, `FILE: service "my.web": ports: "80/xyz": protocol "xyz": use tcp, udp or sctp`},
		{"ports: [{target: -1}]", `FILE: service "my.web": ports[0].target: must be a whole number of 0 or more, not -1`},
		{"scale: abc", `service "my.web": scale: must be a whole number, not "abc"`},
		{"cpus: abc", `service "my.web": cpus: must be a number, not "abc"`},
		{"init: maybe", `service "my.web": init: must be true or false, not "maybe"`},
		{"privileged: 3", `FILE: service "my.web": privileged: must be true or false`},
		{"deploy: {replicas: 1.5}", `FILE: service "my.web": deploy.replicas: must be a whole number`},
		{"oom_score_adj: 5000", `FILE: service "my.web": oom_score_adj: must be a string or a whole number from -1000 to 1000`},
		{"depends_on: {x: {condition: bogus}}", `FILE: service "my.web": depends_on.x.condition: must be one of service_started, service_healthy or service_completed_successfully`},
		{"blkio_config: {weight: -5}", `FILE: service "my.web": blkio_config.weight: must be a whole number from 0 to 65535, not -5`},
		{`volumes: [":/x"]`, `FILE: service "my.web": volumes: ":/x": empty section between colons; write SOURCE:TARGET[:MODE]`},
		{"volumes: [{type: bind, source: /tmp}]", `service "my.web": volumes[0]: no target: give the path in the container (target: /data)`},
		{`extra_hosts: ["nocolon"]`, `FILE: service "my.web": extra_hosts: invalid additional host, missing IP: nocolon; write HOST=IP or HOST:IP`},
		{"labels: [1]", `service "my.web": labels[0]: must be a string, a number or a boolean`},
		{"networks: {default: {aliases: 3}}", `FILE: service "my.web": networks.default.aliases: must be a list of strings`},
		{"comand: [x]", `FILE: service "my.web": unknown key "comand": it is not part of the compose specification`},
		{"deploy: {resources: {limit: {}}}", `FILE: service "my.web": deploy.resources: unknown key "limit"`},
	} {
		t.Run(c.service, func(t *testing.T) {
			f := newFixture(t, map[string]string{"compose.yaml": "services:\n  my.web:\n    image: busybox\n    " + c.service + "\n"}, "busybox_latest.sif")
			_, err := f.load(t, f.opts())
			want := strings.ReplaceAll(c.want, "FILE", filepath.Join(f.dir, "compose.yaml"))
			got := problems(err)
			if len(got) != 1 || !strings.HasPrefix(got[0], want) {
				t.Fatalf("got  %q\nwant %s", got, want)
			}
			for _, goWords := range []string{"uint", "int64", "float", "strconv", "services[", "null", "decoding failed", "interface"} {
				if strings.Contains(got[0], goWords) {
					t.Errorf("%q has %q", got[0], goWords)
				}
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("does not match ErrInvalid: %v", err)
			}
		})
	}
}

// TestWarningsComeAfterErrors: compose-go's own warnings (the obsolete
// `version`, an unset variable) never reach stderr before the error: they
// follow it, and become plan warnings when there is no error.
func TestWarningsComeAfterErrors(t *testing.T) {
	f := newFixture(t, map[string]string{"compose.yaml": "version: '3'\nservices:\n  web:\n    image: busybox\n    environment: [X=$UNSET]\n    deploy: {restart_policy: {max_attempts: -1}}\n"}, "busybox_latest.sif")
	_, err := f.load(t, f.opts())
	got := problems(err)
	file := filepath.Join(f.dir, "compose.yaml")
	want := []string{
		file + `: service "web": deploy.restart_policy.max_attempts: must be a whole number of 0 or more, not -1`,
		`WARN The "UNSET" variable is not set. Defaulting to a blank string.`,
		"WARN " + file + ": the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	f = newFixture(t, map[string]string{"compose.yaml": "version: '3'\nservices:\n  web:\n    image: busybox\n"}, "busybox_latest.sif")
	p := f.mustLoad(t, f.opts())
	file = filepath.Join(f.dir, "compose.yaml")
	if len(p.Warnings) != 1 || p.Warnings[0].String() != file+": the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion" {
		t.Errorf("warnings %q", p.Warnings)
	}
}

func TestPathSegments(t *testing.T) {
	for path, want := range map[string]string{
		"services.web.command":                      "services|web|command",
		"services[my.web].ports[0].target":          "services|my.web|ports|[0]|target",
		"services.web.labels.[0]":                   "services|web|labels|[0]",
		"services.web.ports.[].target":              "services|web|ports|[]|target",
		"services[web].deploy.restart_policy.delay": "services|web|deploy|restart_policy|delay",
		"volumes.data.driver_opts":                  "volumes|data|driver_opts",
	} {
		if got := strings.Join(pathSegments(path), "|"); got != want {
			t.Errorf("pathSegments(%q) = %s, want %s", path, got, want)
		}
	}
	if got := renderKey([]string{"ports", "[0]", "target"}); got != "ports[0].target" {
		t.Errorf("renderKey = %s", got)
	}
}

package compose

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPrint(t *testing.T) {
	secret := "hunter2"
	p := &Plan{
		Project:    "app",
		WorkingDir: "/w",
		StateDir:   "/s/app",
		Hosts:      []HostEntry{{Host: "localhost", IP: "127.0.0.1"}, {Host: "db", IP: "127.0.0.1"}},
		Warnings:   []Warning{{Service: "db", Key: "ports", Reason: "instances share the host network"}},
		Services: []Service{{
			Name:        "db",
			Replicas:    1,
			ImageRef:    "postgres:16",
			Image:       "/i/postgres_16.sif",
			Entrypoint:  []string{},
			Command:     []string{"postgres", "-c", `x="y"`},
			Environment: []string{"A=1"},
			Mounts: []Mount{
				{Kind: MountVolume, Source: "/s/app/volumes/app_data", Target: "/data", Seed: true, Volume: "data"},
				{Kind: MountSecret, Source: "/s/app/secrets/pw", Target: "/run/secrets/pw", ReadOnly: true, Content: &secret},
			},
			ExtraHosts:      []HostEntry{{Host: "gw", IP: "127.0.0.1", Comment: "host-gateway"}},
			DependsOn:       []Dependency{{Service: "init", Condition: ConditionCompletedSuccessfully, Required: true}},
			StopSignal:      "SIGINT",
			StopGracePeriod: 10 * time.Second,
			Restart:         RestartPolicy{Condition: "no"},
			Healthcheck:     &Healthcheck{Test: []string{"pg_isready"}, Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3, StartInterval: 5 * time.Second},
		}},
	}
	var b strings.Builder
	if err := p.Print(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, secret) {
		t.Errorf("secret value printed:\n%s", out)
	}
	for _, want := range []string{
		`project: "app"`,
		`  - "service \"db\": ports: instances share the host network"`,
		"hosts:",
		`  - "127.0.0.1 localhost"`,
		`  - "127.0.0.1 db"`,
		`  "db":`,
		`    entrypoint: []`,
		`    command: ["postgres", "-c", "x=\"y\""]`,
		`        seed: true`,
		`        generated: true`,
		"    extra_hosts:",
		`      - "127.0.0.1 gw" # host-gateway`,
		`      "init": {condition: "service_completed_successfully", required: true, restart: false}`,
		`    restart: {source: "", condition: "no", max_attempts: 0, delay: 0s, window: 0s}`,
		`      interval: 30s`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing line %s in:\n%s", want, out)
		}
	}
}

// config shows what sstack sets up for hostname, tty, ipc and ulimits.
func TestPrintInstanceKeys(t *testing.T) {
	var b strings.Builder
	p := &Plan{Project: "p", Services: []Service{{Name: "a", Replicas: 1, Hostname: "w{{.Task.Slot}}", Tty: true, HostIPC: true,
		Ulimits: []Ulimit{{"nofile", 1024, 4096}}}}}
	if err := p.Print(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`hostname: "w{{.Task.Slot}}"`, "tty: true", "host_ipc: true", "ulimits:\n      nofile: {soft: 1024, hard: 4096}"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("config lacks %q:\n%s", want, b.String())
		}
	}
}

func TestConfigOutputs(t *testing.T) {
	secret := "hunter2"
	p := &Plan{
		Project: "app",
		Services: []Service{
			{Name: "web", ImageRef: "nginx:1", Image: "/i/nginx_1.sif"},
			{Name: "db", ImageRef: "postgres:16", Image: "/i/postgres_16.sif",
				Mounts: []Mount{{Kind: MountSecret, Source: "/s/pw", Target: "/run/secrets/pw", Content: &secret}}},
			{Name: "local", Image: "/w/local.sif"},
		},
	}
	eq(t, p.ServiceNames(), []string{"db", "local", "web"})
	eq(t, p.ImageNames(), []string{"postgres:16", "/w/local.sif", "nginx:1"})

	var b strings.Builder
	if err := p.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), secret) {
		t.Errorf("secret value in the JSON plan:\n%s", b.String())
	}
	var back Plan
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatalf("the JSON plan does not parse: %v", err)
	}
	if back.Project != "app" || len(back.Services) != 3 || back.Services[1].Mounts[0].Target != "/run/secrets/pw" {
		t.Errorf("JSON round trip: %+v", back)
	}
}

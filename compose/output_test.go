package compose

import (
	"encoding/json"
	"strings"
	"testing"
)

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

package compose

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestConfigHash(t *testing.T) {
	dir := t.TempDir()
	image := filepath.Join(dir, "web.sif")
	secret := filepath.Join(dir, "token")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(image, "sif one")
	write(secret, "s3cret")
	value := "by value"
	base := func() *Service {
		return &Service{
			Name: "web", Replicas: 1, Image: image, Command: []string{"httpd"},
			Environment: []string{"A=1"},
			Mounts: []Mount{
				{Kind: MountSecret, Source: secret, Target: "/run/secrets/token"},
				{Kind: MountConfig, Source: filepath.Join(dir, "c"), Target: "/c", Content: &value},
			},
		}
	}
	want := base().ConfigHash()
	if got := base().ConfigHash(); got != want {
		t.Fatalf("the same service hashes differently: %s, %s", got, want)
	}

	same := map[string]func(*Service){
		"replicas":     func(s *Service) { s.Replicas = 3 },
		"image source": func(s *Service) { s.ImageSource = &ImageSource{Present: true} },
	}
	for what, change := range same {
		s := base()
		change(s)
		if s.ConfigHash() != want {
			t.Errorf("%s changed the hash; it does not change what a replica is made from", what)
		}
	}

	other := "other value"
	differ := map[string]func(*Service){
		"command":       func(s *Service) { s.Command = []string{"httpd", "-v"} },
		"environment":   func(s *Service) { s.Environment = []string{"A=2"} },
		"ports":         func(s *Service) { s.Ports = []Port{{Target: 80, Protocol: "tcp"}} },
		"config value":  func(s *Service) { s.Mounts[1].Content = &other },
		"healthcheck":   func(s *Service) { s.Healthcheck = &Healthcheck{Test: []string{"true"}} },
		"restart":       func(s *Service) { s.Restart = RestartPolicy{Condition: "always"} },
		"image path":    func(s *Service) { s.Image = filepath.Join(dir, "other.sif") },
		"stop_signal":   func(s *Service) { s.StopSignal = "SIGINT" },
		"resource caps": func(s *Service) { s.Resources = &Resources{} },
	}
	for what, change := range differ {
		s := base()
		change(s)
		if s.ConfigHash() == want {
			t.Errorf("a changed %s left the hash as it was", what)
		}
	}

	// The files behind the service: a secret's content, a new image file
	// at the same path.
	write(secret, "rotated")
	if base().ConfigHash() == want {
		t.Error("a changed secret file left the hash as it was")
	}
	write(secret, "s3cret")
	if base().ConfigHash() != want {
		t.Error("the secret's old content back: the hash should be the first one again")
	}
	fresh := filepath.Join(dir, "web.sif.new")
	write(fresh, "sif two")
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(fresh, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fresh, image); err != nil {
		t.Fatal(err)
	}
	if base().ConfigHash() == want {
		t.Error("a new image file under the same name left the hash as it was")
	}
}

package main

// The example stack of the README (example/), built and run as a user
// would: its services talk to each other by name, keep their state in a
// named volume across runs, and stop gracefully on Ctrl-C.

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
)

// TestExampleStack runs the README's first command's stack: it builds the
// example's images offline (debootstrap from Debian's mirror) and checks
// that the services talk to each other by name, that the counter persists
// in the named volume, and that Ctrl-C leaves nothing behind.
func TestExampleStack(t *testing.T) {
	testimg.RequireRuntime(t)
	if os.Getuid() != 0 {
		t.Skip("building the example's images needs root (debootstrap)")
	}
	build := exec.Command("bash", "example/build-images.sh")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("example/build-images.sh: %v\n%s", err, out)
	}
	compose, err := filepath.Abs("example/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	p := &project{t: t, name: "exampletest", dir: filepath.Dir(compose), stateDir: t.TempDir()}
	p.env = append(os.Environ(), "SSTACK_STATE_DIR="+p.stateDir)
	t.Cleanup(p.cleanup)

	r := p.up()
	r.waitStdout(t, "visits: 3")
	r.waitStderr(t, "redis-1 is healthy")
	page := ""
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(page, "visits = ") && time.Now().Before(deadline) {
		if resp, err := http.Get("http://127.0.0.1:8080/cgi-bin/index.cgi"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(page, "visits = ") {
		t.Errorf("web did not show the counter from redis: %q", page)
	}
	r.ctrlC(t)
	if !strings.Contains(r.stdout.String(), "counter: stopping") || !strings.Contains(r.stdout.String(), "DB saved on disk") {
		t.Errorf("services did not stop gracefully:\n%s", r.stdout)
	}
	assertNothingLeft(t, p.name)

	// A second run continues counting from the named volume.
	r = p.up()
	r.waitStdout(t, "counter: connected to redis, visits so far: ")
	out := r.stdout.String()
	if strings.Contains(out, "visits so far: 0\n") {
		t.Errorf("the count did not survive in the named volume:\n%s", out)
	}
	r.interrupt(t)
	assertNothingLeft(t, p.name)
}

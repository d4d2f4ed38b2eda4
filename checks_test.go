package main

// What would fail once instances start is refused before anything
// starts, by the same checks in `config` and `up`: an environment
// variable name Apptainer cannot pass (it made every exec of the service
// fail with 255 after its instance had started, then crash-loop with
// restart: always) and a relative mount target.

import (
	"strings"
	"testing"

	"sstack/internal/testimg"
)

func TestConfigAndUpRefuseWhatApptainerWouldRefuse(t *testing.T) {
	p := newProject(t, `
services:
  ok:
    image: busybox
    command: ["sleep", "100"]
  web:
    image: busybox
    command: ["sleep", "100"]
    restart: always
    environment:
      MY-VAR: a
      1ABC: b
    volumes:
      - ./data:data
`)
	p.write("data/.keep", "")
	want := []string{
		`service "web": environment: variable name "1ABC": Apptainer allows only letters, digits and '_', not starting with a digit; rename it`,
		`service "web": environment: variable name "MY-VAR"`,
		`service "web": volumes: target "data": want an absolute container path, such as /data`,
	}
	for _, args := range [][]string{{"config"}, {"up"}, {"up", "-d"}} {
		code, stdout, stderr := p.run(args...)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1\nstderr:\n%s", args, code, stderr)
		}
		contains(t, strings.Join(args, " ")+" stderr", stderr, want...)
		if args[0] == "config" && stdout != "" {
			t.Errorf("config printed a plan:\n%s", stdout)
		}
		for _, started := range []string{"Creating", "Created", "Started"} {
			if strings.Contains(stderr, started) {
				t.Errorf("%s: something was started:\n%s", args, stderr)
			}
		}
		assertNothingLeft(t, p.name)
	}
}

// --scale is checked as the compose file is: an instance name Apptainer
// refuses stops up before anything starts.
func TestUpScaleChecked(t *testing.T) {
	p := newProject(t, "")
	// PROJECT.LONG.1 is 250 characters long, as long as Apptainer allows.
	long := strings.Repeat("s", 250-len(p.name)-len("..1"))
	img := "    image: " + testimg.Busybox(t) + "\n    command: [\"sleep\", \"100\"]\n"
	p.write("docker-compose.yml", "services:\n  ok:\n"+img+"  "+long+":\n"+img)
	if code, _, stderr := p.run("config"); code != 0 {
		t.Fatalf("config: exit code %d:\n%s", code, stderr)
	}
	code, _, stderr := p.run("up", "--scale", long+"=100")
	if code != 1 {
		t.Errorf("exit code %d, want 1\nstderr:\n%s", code, stderr)
	}
	contains(t, "stderr", stderr, `service "`+long+`": name: instance name "`+p.name+"."+long+`.100" is`, "Apptainer allows at most 250")
	if strings.Contains(stderr, "Creating") {
		t.Errorf("something was started:\n%s", stderr)
	}
	assertNothingLeft(t, p.name)
}

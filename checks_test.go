package main

// What would fail once instances start is refused before anything
// starts, by the same checks in `config` and `up`: an environment
// variable name Apptainer cannot pass (it made every exec of the service
// fail with 255 after its instance had started, then crash-loop with
// restart: always) and a relative mount target.

import (
	"fmt"
	"strings"
	"testing"

	"sstack/internal/testimg"
)

func TestConfigAndUpRefuseWhatApptainerWouldRefuse(t *testing.T) {
	p := newProject(t, services(
		service("ok", `["sleep", "100"]`),
		service("web", `["sleep", "100"]`, "restart: always", "environment: {MY-VAR: a, 1ABC: b}", `volumes: ["./data:data"]`),
	))
	p.write("data/.keep", "")
	want := []string{
		`service "web": environment: variable name "1ABC": Apptainer allows only letters, digits and '_', not starting with a digit; rename it`,
		`service "web": environment: variable name "MY-VAR"`,
		`service "web": volumes: target "data": want an absolute container path, such as /data`,
	}
	for _, args := range [][]string{{"config"}, {"up"}, {"up", "-d"}} {
		stdout, _ := p.refusedBeforeStart(1, args, want...)
		if args[0] == "config" && stdout != "" {
			t.Errorf("config printed a plan:\n%s", stdout)
		}
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
	p.refusedBeforeStart(1, []string{"up", "--scale", long + "=100"},
		`service "`+long+`": name: instance name "`+p.name+"."+long+`.100" is`, "Apptainer allows at most 250")
}

// An environment too large for Apptainer to pass is refused by config and
// up before anything starts (it failed at up with "argument list too
// long", or "engine configuration too big"): one value over Linux's 128
// KiB per entry, or values that together pass Apptainer's 1 MiB
// configuration. A value of 100 KB reaches the process whole.
func TestEnvironmentTooLargeRefusedBeforeStart(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("huge", `["sleep", "100"]`, "env_file: huge.env"),
		service("many", `["sleep", "100"]`, "env_file: many.env"),
	))
	p.write("huge.env", "BIG="+strings.Repeat("a", 50<<20)+"\n")
	var many strings.Builder
	for i := range 9 {
		fmt.Fprintf(&many, "V%d=%s\n", i, strings.Repeat("b", 120000))
	}
	p.write("many.env", many.String())
	want := []string{
		`service "huge": environment: variable "BIG": its value is 52428800 bytes, and Linux lets one environment entry of a process hold 131072 bytes with its name`,
		`service "many": environment: the variables take 1080`,
		`Apptainer carries a process's environment in a configuration it limits to 1 MiB`,
	}
	for _, args := range [][]string{{"config", "-q"}, {"up"}} {
		p.refusedBeforeStart(1, args, want...)
	}

	ok := newProject(t, oneService("fits", `["sh", "-c", "echo length=$${#BIG}"]`, "env_file: big.env"))
	ok.write("big.env", "BIG="+strings.Repeat("c", 100000)+"\n")
	code, out, errs := ok.run()
	if code != 0 || !strings.Contains(out, "fits-1 | length=100000") {
		t.Errorf("a 100 KB value: exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	assertNothingLeft(t, ok.name)
}

package main

// Compose fidelity: behaviours of real compose files that must match
// docker compose's, each against the real Apptainer: missing bind sources
// and working directories are created, binds below tmpfs: /tmp work,
// COMPOSE_FILE comes from .env and --env-file, config has docker compose's
// flags, container_name is the replica's name, a port in use stops up
// before anything starts, and a teardown's exits are not reported as if
// the services had exited by themselves.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sstack/internal/testutil"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bare runs sstack with args in the project directory (no -f, -n
// added), and returns its exit code, stdout and stderr.
func (p *project) bare(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(sstackBin, args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// A long-syntax bind without a bind: block (or with one that does not say
// create_host_path: false) creates its missing host directory, as docker
// compose does; create_host_path: false refuses before anything starts.
func TestFidelityLongBindCreatesHostPath(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("w", `["sh", "-c", "echo made > /out/f && echo ok > /other/g && echo done"]`, "volumes: [{type: bind, source: ./made/out, target: /out}, {type: bind, source: ./made/other, target: /other, bind: {propagation: rprivate}}]"))
	code, out, errs := p.run()
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, errs)
	}
	contains(t, "stdout", out, "w-1 | done\n")
	for f, want := range map[string]string{"made/out/f": "made\n", "made/other/g": "ok\n"} {
		if b, err := os.ReadFile(filepath.Join(p.dir, f)); err != nil || string(b) != want {
			t.Errorf("%s on the host: %q, %v", f, b, err)
		}
	}
	p.assertNothingLeft()

	strict := newProject(t, oneService("w", `["true"]`, "volumes: [{type: bind, source: ./absent, target: /a, bind: {create_host_path: false}}]"))
	strict.refusedBeforeStart(1, nil, `service "w": volumes: bind source ./absent (for /a) does not exist and create_host_path is false`)
	if _, err := os.Stat(filepath.Join(strict.dir, "absent")); err == nil {
		t.Error("create_host_path: false created the path")
	}
}

// A working_dir the image lacks is created, as Docker does, also with a
// read-only root; one the image has keeps its content.
func TestFidelityWorkingDirCreated(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("rw", `["sh", "-c", "echo pwd=$$(pwd) files=$$(ls -A | wc -l); touch here && echo writable"]`, "working_dir: /srv/app/work"),
		service("ro", `["sh", "-c", "echo pwd=$$(pwd)"]`, "read_only: true", "working_dir: /opt/new"),
		service("seeded", `["sh", "-c", "echo pwd=$$(pwd) has=$$(ls hello.txt)"]`, "working_dir: /srv/seed"),
	))
	code, out, errs := p.run()
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, errs)
	}
	contains(t, "stdout", out,
		"rw-1     | pwd=/srv/app/work files=0\n", "rw-1     | writable\n",
		"ro-1     | pwd=/opt/new\n",
		"seeded-1 | pwd=/srv/seed has=hello.txt\n")
	if strings.Contains(errs, "failed to set working directory") {
		t.Errorf("stderr:\n%s", errs)
	}
	p.assertNothingLeft()
}

// tmpfs: /tmp with a file bind, a directory bind and a secret below it.
func TestFidelityTmpfsWithBindsBelow(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(service("t", `["sh", "-c", "sh /tmp/s.sh; cat /tmp/d/f; echo; cat /tmp/pw; echo; cat /run/secrets/pw; echo; touch /tmp/new && echo tmp=$$(stat -c %a /tmp)"]`, `tmpfs: ["/tmp", "/run"]`, `volumes: ["./s.sh:/tmp/s.sh:ro", "./d:/tmp/d"]`, `secrets: [{source: pw, target: /tmp/pw}, "pw"]`))+`secrets:
  pw:
    file: ./pw.txt
`)
	p.write("s.sh", "echo script ran\n")
	p.write("d/f", "in d")
	p.writeSecret("pw.txt", "s3cret")
	code, out, errs := p.run()
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, errs)
	}
	contains(t, "stdout", out, "t-1 | script ran\n", "t-1 | in d\n", "t-1 | s3cret\n", "t-1 | tmp=1777\n")
	if n := countLines(out, "t-1", "s3cret"); n != 2 {
		t.Errorf("secret read %d times, want 2 (/tmp/pw and /run/secrets/pw):\n%s", n, out)
	}
	p.assertNothingLeft()
}

// COMPOSE_FILE (and COMPOSE_PATH_SEPARATOR) is read from the .env of the
// current directory and from --env-file; a missing --env-file is named.
func TestFidelityComposeFileFromEnvFiles(t *testing.T) {
	t.Parallel()
	p := newProject(t, oneService("unused", `["true"]`))
	p.write("stack/base.yml", "services:\n  a:\n    image: ./a.sif\n")
	p.write("stack/extra.yml", "services:\n  b:\n    image: ./a.sif\n")
	p.write("stack/a.sif", "")
	p.write(".env", "COMPOSE_FILE=stack/base.yml,stack/extra.yml\nCOMPOSE_PATH_SEPARATOR=,\n")
	p.write("prod.env", "COMPOSE_FILE=stack/extra.yml\n")
	if code, out, errs := p.bare(t, "config", "--services"); code != 0 || out != "a\nb\n" {
		t.Errorf(".env: exit code %d, services %q\n%s", code, out, errs)
	}
	if code, out, errs := p.bare(t, "--env-file", "prod.env", "config", "--services"); code != 0 || out != "b\n" {
		t.Errorf("--env-file: exit code %d, services %q\n%s", code, out, errs)
	}
	code, _, errs := p.bare(t, "--env-file", "nope.env", "config")
	if code != 1 || !strings.Contains(errs, "env file nope.env (--env-file): no such file or directory") || strings.Contains(errs, "no compose file") {
		t.Errorf("missing --env-file: exit code %d\n%s", code, errs)
	}
}

// config's flags, as docker compose's: -q validates only, --services,
// --images, --format json|yaml.
func TestFidelityConfigFlags(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("web", `["true"]`, `security_opt: ["no-new-privileges:true"]`),
		"  db:\n    image: redis:7\n    command: [\"true\"]\n",
	))
	p.write("images/redis_7.sif", "")
	f := filepath.Join(p.dir, "docker-compose.yml")
	if code, out, errs := p.bare(t, "-f", f, "config", "-q"); code != 0 || out != "" {
		t.Errorf("-q: exit code %d, stdout %q\n%s", code, out, errs)
	} else if !strings.Contains(errs, `service "web": security_opt: no-new-privileges:true: not set by sstack; Apptainer sets no_new_privs itself`) {
		t.Errorf("-q: no true security_opt warning:\n%s", errs)
	}
	if code, out, _ := p.bare(t, "-f", f, "config", "--services"); code != 0 || out != "db\nweb\n" {
		t.Errorf("--services: %d %q", code, out)
	}
	if code, out, _ := p.bare(t, "-f", f, "config", "--images"); code != 0 || !strings.HasPrefix(out, "redis:7\n/") || strings.Count(out, "\n") != 2 {
		t.Errorf("--images: %d %q", code, out)
	}
	code, out, _ := p.bare(t, "-f", f, "config", "--format", "json")
	var plan struct {
		Project  string `json:"project"`
		Services []struct {
			Name string `json:"name"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(out), &plan); code != 0 || err != nil || len(plan.Services) != 2 {
		t.Errorf("--format json: %d %v\n%s", code, err, out)
	}
	if code, out, _ := p.bare(t, "-f", f, "config", "--format", "yaml"); code != 0 || !strings.Contains(out, "services:\n") {
		t.Errorf("--format yaml: %d\n%s", code, out)
	}
	if code, _, errs := p.bare(t, "-f", f, "config", "--format", "toml"); code != 2 {
		t.Errorf("--format toml: exit code %d, want 2\n%s", code, errs)
	}
	// (A missing image is no error for config: it warns, as up pulls or
	// builds it; an undeclared secret is.)
	p.write("docker-compose.yml", "services:\n  web:\n    image: redis:7\n    secrets: [nope]\n")
	if code, out, _ := p.bare(t, "-f", f, "config", "-q"); code != 1 || out != "" {
		t.Errorf("-q with a broken project: exit code %d, stdout %q", code, out)
	}
}

// container_name is what the console and `sstack logs` call the replica,
// as docker compose does; `logs SERVICE` still finds it.
func TestFidelityContainerNameIsDisplayName(t *testing.T) {
	t.Parallel()
	p := newProject(t, services(
		service("db", `["sh", "-c", "echo db says hi; trap 'exit 0' TERM; while true; do sleep 0.1; done"]`, "container_name: my-db-7"),
		service("web", `["sh", "-c", "echo web says hi; trap 'exit 0' TERM; while true; do sleep 0.1; done"]`),
	))
	r := p.up()
	r.waitStdout(t, "my-db-7 | db says hi\n")
	r.waitStdout(t, "web-1   | web says hi\n")
	for _, sel := range []string{"my-db-7", "db"} {
		if got := p.logs(t, sel); got != "my-db-7 | db says hi\n" {
			t.Errorf("logs %s = %q", sel, got)
		}
	}
	if got := p.logs(t, "--index", "1", "db"); got != "my-db-7 | db says hi\n" {
		t.Errorf("logs --index 1 db = %q", got)
	}
	p.ctrlCLeavesNothing(r)
	// After the stack stopped too, under the same names.
	if got := p.logs(t); !strings.Contains(got, "my-db-7 | db says hi\n") || !strings.Contains(got, "web-1   | web says hi\n") {
		t.Errorf("logs after the stack stopped:\n%s", got)
	}
}

// A port in use on the host stops up before anything starts, naming the
// service, the key and the port: the port a service on the host's network
// listens on (its host_ip warned about), and a host port to publish.
func TestFidelityPortInUse(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(testutil.HoldTCP(t, ":0").Port)
	for _, tt := range []struct{ mode, want string }{
		{"host", `service "web": ports: port ` + port + `/tcp is already in use on this host`},
		{"project", `service "web": ports: 127.0.0.1:` + port + `:80/tcp: host port ` + port + ` is already in use`},
	} {
		target, keys := "80", []string{}
		if tt.mode == "host" {
			target, keys = port, []string{"network_mode: host"}
		}
		p := newProject(t, oneService("web", `["sleep", "1000"]`, append(keys, `ports: ["127.0.0.1:`+port+`:`+target+`"]`)...))
		_, errs := p.refusedBeforeStart(1, nil, tt.want, "stop the program that holds it")
		if tt.mode == "host" {
			contains(t, "stderr", errs, `service "web": ports: 127.0.0.1:`+port+`:`+port+`/tcp: the host address is not honoured`)
		}
	}
}

// Once Ctrl-C or an abort has begun the teardown, the exits it causes
// print no "exited with code" line (docker compose prints none); the exit
// that aborted does.
func TestFidelityTeardownExitsNotReported(t *testing.T) {
	t.Parallel()
	compose := services(
		service("a", `["sh", "-c", "echo a up; trap 'exit 0' TERM; while true; do sleep 0.1; done"]`),
		service("b", `["sleep", "1000"]`),
	)
	p := newProject(t, compose)
	r := p.up()
	r.waitStdout(t, "a-1 | a up")
	r.waitStderr(t, "Instance "+p.name+".b.1  Started")
	p.ctrlCLeavesNothing(r)
	errs := r.stderr.String()
	if strings.Contains(errs, "exited with code") {
		t.Errorf("Ctrl-C's teardown reported exits:\n%s", errs)
	}
	contains(t, "stderr", errs, "Instance "+p.name+".a.1  Stopping", "Instance "+p.name+".b.1  Stopped")

	p = newProject(t, compose+service("job", `["sh", "-c", "exit 3"]`, "depends_on: [a, b]"))
	code, _, errs := p.run("--abort-on-container-exit")
	if code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	contains(t, "stderr", errs, "job-1 exited with code 3\n", "Aborting on container exit...")
	if n := strings.Count(errs, "exited with code"); n != 1 {
		t.Errorf("%d exit lines, want only the one that aborted:\n%s", n, errs)
	}
	p.assertNothingLeft()
}

// The warnings docker compose users grep for keep docker compose's words:
// the obsolete `version` and an unset variable, at config and at up.
func TestFidelityDockerComposeWarnings(t *testing.T) {
	t.Parallel()
	p := newProject(t, "version: '3.8'\n"+oneService("web", `["echo", "x=${UNSET_FOR_TEST}"]`))
	f := filepath.Join(p.dir, "docker-compose.yml")
	want := []string{
		"WARN " + f + ": the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion\n",
		`WARN The "UNSET_FOR_TEST" variable is not set. Defaulting to a blank string.` + "\n",
	}
	code, _, errs := p.bare(t, "-f", f, "config", "-q")
	if code != 0 {
		t.Errorf("config -q: exit code %d\n%s", code, errs)
	}
	contains(t, "config's stderr", errs, want...)
	code, _, errs = p.run()
	if code != 0 {
		t.Errorf("up: exit code %d\n%s", code, errs)
	}
	contains(t, "up's stderr", errs, want...)
	p.assertNothingLeft()
}

// hostname gives the instance its own host name (a UTS namespace of its
// own, as a container's), per replica with {{.Task.Slot}}; the host's is
// untouched. As root and as an unprivileged user alike.
func TestFidelityHostname(t *testing.T) {
	compose := services(
		service("web", `["sh", "-c", "echo name=$$(hostname); exec sleep 1000"]`, "hostname: web.example"),
		service("worker", `["sleep", "1000"]`, `hostname: "w{{.Task.Slot}}"`, "scale: 2"),
	)
	host, _ := os.Hostname()
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, compose)
		p.upDetached()
		p.waitLogs("name=web.example")
		for _, w := range []struct{ index, want string }{{"1", "w1"}, {"2", "w2"}} {
			if out := p.must("exec", "-T", "--index", w.index, "worker", "hostname"); out != w.want+"\n" {
				t.Errorf("worker-%s: hostname %q, want %s", w.index, out, w.want)
			}
		}
		if now, _ := os.Hostname(); now != host {
			t.Errorf("the host's name changed: %q, was %q", now, host)
		}
		p.downLeavesNothing()
	})
}

// ulimits are set on the service process, in both forms; for an
// unprivileged user a hard limit above the user's own is lowered to it,
// with a warning (only root may raise a hard limit).
func TestFidelityUlimits(t *testing.T) {
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		t.Fatal(err)
	}
	compose := services(
		service("app", `["sh", "-c", "echo nofile=$$(ulimit -n):$$(ulimit -Hn) core=$$(ulimit -c); exec sleep 1000"]`, "ulimits: {nofile: {soft: 1000, hard: 2000}, core: 0}"),
		service("big", `["sh", "-c", "echo hard=$$(ulimit -Hn); exec sleep 1000"]`, "ulimits: {nofile: HARD}"),
	)
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		hard := cur.Max // as much as this process has: root may keep it
		if unprivileged(t) {
			hard = cur.Max + 1000 // above the user's own
		}
		p := newP(t, strings.Replace(compose, "HARD", strconv.FormatUint(hard, 10), 1))
		errs := p.upDetached()
		p.waitLogs("app-1 | nofile=1000:2000 core=0", "big-1 | hard="+strconv.FormatUint(cur.Max, 10))
		warned := strings.Contains(errs, `WARN service "big": ulimits.nofile: hard limit `+strconv.FormatUint(hard, 10)+" is above this user's own")
		if warned != unprivileged(t) {
			t.Errorf("clamp warning %v, want it only unprivileged:\n%s", warned, errs)
		}
		p.downLeavesNothing()
	})
}

// ipc: services that share IPC (ipc: service:NAME, and NAME) see the same
// IPC namespace, the host's (with a warning: Apptainer cannot join another
// instance's); ipc: host is the host's; others have their own. As root and
// as an unprivileged user.
func TestFidelityIPC(t *testing.T) {
	compose := services(
		service("owner", `["sh", "-c", "echo ns=$$(readlink /proc/self/ns/ipc); exec sleep 1000"]`, "ipc: shareable"),
		service("user", `["sh", "-c", "echo ns=$$(readlink /proc/self/ns/ipc); exec sleep 1000"]`, "ipc: service:owner"),
		service("hosted", `["sh", "-c", "echo ns=$$(readlink /proc/self/ns/ipc); exec sleep 1000"]`, "ipc: host"),
		service("own", `["sh", "-c", "echo ns=$$(readlink /proc/self/ns/ipc); exec sleep 1000"]`),
	)
	host, err := os.Readlink("/proc/self/ns/ipc")
	if err != nil {
		t.Fatal(err)
	}
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, compose)
		errs := p.upDetached()
		contains(t, "up -d's stderr", errs, `WARN service "user": ipc: service:owner: Apptainer cannot put one instance in another's IPC namespace`)
		out := p.waitLogs("owner-1  | ns=", "user-1   | ns=", "hosted-1 | ns=", "own-1    | ns=")
		for _, name := range []string{"owner-1", "user-1", "hosted-1"} {
			if got := lines(out, name); len(got) != 1 || got[0] != "ns="+host {
				t.Errorf("%s: %v, want the host's IPC namespace %s", name, got, host)
			}
		}
		if got := lines(out, "own-1"); len(got) != 1 || got[0] == "ns="+host {
			t.Errorf("own-1: %v, want an IPC namespace of its own", got)
		}
		p.downLeavesNothing()
	})
}

// tty: true gives the service process a terminal, as docker does: a shell
// that would end at once on an empty stdin keeps running, and the process
// sees a terminal on stdin and stdout; its output reaches the logs. As
// root and as an unprivileged user.
func TestFidelityTty(t *testing.T) {
	compose := services(
		service("shell", `["sh"]`, "tty: true", "stdin_open: true"),
		service("checker", `["sh", "-c", "test -t 0 && test -t 1 && echo stdin and stdout are a terminal; exec sleep 1000"]`, "tty: true"),
		service("plain", `["sh", "-c", "test -t 0 || echo no terminal; exec sleep 1000"]`),
	)
	users(t, func(t *testing.T, newP func(*testing.T, string) *project) {
		p := newP(t, compose)
		errs := p.upDetached()
		if strings.Contains(errs, "WARN") {
			t.Errorf("warnings:\n%s", errs)
		}
		p.waitLogs("checker-1 | stdin and stdout are a terminal", "plain-1   | no terminal")
		stays(t, 3*time.Second, "shell-1 running", func() bool { return statuses(p.ps("-a"))["shell-1"] == "running" })
		p.downLeavesNothing()
	})
}

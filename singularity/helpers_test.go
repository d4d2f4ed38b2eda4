package singularity

// Unit tests of the pure helpers: no Apptainer needed.

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"proj.web.1", true},
		{"a", true},
		{"A_b-C.9", true},
		{".dot", true},
		{strings.Repeat("a", 250), true},
		{strings.Repeat("a", 251), false},
		{"", false},
		{"-x", false},
		{"has space", false},
		{"a/b", false},
		{"a:b", false},
		{"a@b", false},
		{"a*", false},
		{"ünï", false},
	}
	for _, c := range cases {
		err := ValidateName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if err := ValidateName("a b"); err == nil || !strings.Contains(err.Error(), "' '") || !strings.Contains(err.Error(), "letters, digits") {
		t.Errorf("error does not say what is wrong and what is allowed: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	cases := []struct {
		in   string
		want syscall.Signal
		ok   bool
	}{
		{"SIGTERM", syscall.SIGTERM, true},
		{"TERM", syscall.SIGTERM, true},
		{"sigterm", syscall.SIGTERM, true},
		{" SIGINT ", syscall.SIGINT, true},
		{"15", syscall.SIGTERM, true},
		{"9", syscall.SIGKILL, true},
		{"SIGQUIT", syscall.SIGQUIT, true},
		{"SIGUSR1", syscall.SIGUSR1, true},
		{"HUP", syscall.SIGHUP, true},
		{"SIGWINCH", syscall.SIGWINCH, true},
		{"SIGRTMIN", 34, true},
		{"SIGRTMIN+3", 37, true},
		{"RTMAX-2", 62, true},
		{"SIGRTMAX", 64, true},
		{"SIGRTMIN+31", 0, false},
		{"SIGRTMIN-1", 0, false},
		{"0", 0, false},
		{"65", 0, false},
		{"", 0, false},
		{"SIGFOO", 0, false},
	}
	for _, c := range cases {
		got, err := ParseSignal(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestStartArgs(t *testing.T) {
	isolation := strings.Join(isolationFlags, " ") + " --writable-tmpfs"
	cases := []struct {
		name string
		spec InstanceSpec
		want string // args joined by " | "
		err  string
	}{
		{
			name: "minimal",
			spec: InstanceSpec{Name: "p.web.1", Image: "/img/web.sif"},
			want: "-s | instance | start | " + strings.ReplaceAll(isolation, " ", " | ") + " | /img/web.sif | p.web.1",
		},
		{
			name: "binds, tmpfs, hosts",
			spec: InstanceSpec{
				Name: "p.db.1", Image: "/img/db.sif",
				Binds: []Bind{
					{Source: "/host/data", Target: "/var/lib/db"},
					{Source: "/host/a,b:c", Target: "/etc/conf\"x", ReadOnly: true},
				},
				Tmpfs:      []string{"/run", "/tmp/x/"},
				HostsFile:  "/state/hosts/db",
				ResolvConf: "/state/resolv.conf",
			},
			want: "-s | instance | start | " + strings.ReplaceAll(isolation, " ", " | ") +
				" | --mount | type=bind,source=/host/data,destination=/var/lib/db" +
				` | --mount | type=bind,"source=/host/a,b:c","destination=/etc/conf""x",readonly` +
				" | --mount | type=bind,source=/state/hosts/db,destination=/etc/hosts,readonly" +
				" | --mount | type=bind,source=/state/resolv.conf,destination=/etc/resolv.conf,readonly" +
				" | --scratch | /run | --scratch | /tmp/x | /img/db.sif | p.db.1",
		},
		{
			name: "hostname",
			spec: InstanceSpec{Name: "p.h.1", Image: "/img/h.sif", Hostname: "web.example"},
			want: "-s | instance | start | " + strings.ReplaceAll(isolation, " ", " | ") +
				" | --hostname | web.example | /img/h.sif | p.h.1",
		},
		{
			name: "host IPC",
			spec: InstanceSpec{Name: "p.i.1", Image: "/img/i.sif", HostIPC: true},
			want: "-s | instance | start | --contain | --cleanenv | " + strings.Join(isolationFlags[1:], " | ") +
				" | --writable-tmpfs | /img/i.sif | p.i.1",
		},
		{
			name: "bad hostname",
			spec: InstanceSpec{Name: "p.h.1", Image: "/img/h.sif", Hostname: "-web"},
			err:  `host name "-web"`,
		},
		{
			name: "network none",
			spec: InstanceSpec{Name: "p.n.1", Image: "/img/n.sif", Net: Network{None: true}},
			want: "-s | instance | start | " + strings.ReplaceAll(isolation, " ", " | ") +
				" | --net | --network | none | /img/n.sif | p.n.1",
		},
		{
			// --containall gives /tmp and /var/tmp a tmpfs of its own; a
			// --scratch there would break binds below them.
			name: "tmpfs on /tmp and /var/tmp",
			spec: InstanceSpec{
				Name: "p.t.1", Image: "/img/t.sif",
				Binds: []Bind{{Source: "/host/s.sh", Target: "/tmp/s.sh"}},
				Tmpfs: []string{"/tmp", "/var/tmp/", "/tmp/cache"},
			},
			want: "-s | instance | start | " + strings.ReplaceAll(isolation, " ", " | ") +
				" | --mount | type=bind,source=/host/s.sh,destination=/tmp/s.sh" +
				" | --scratch | /tmp/cache | /img/t.sif | p.t.1",
		},
		{
			name: "read-only root",
			spec: InstanceSpec{Name: "p.ro.1", Image: "/img/ro.sif", ReadOnlyRoot: true},
			want: "-s | instance | start | " + strings.Join(isolationFlags, " | ") + " | /img/ro.sif | p.ro.1",
		},
		{name: "bad name", spec: InstanceSpec{Name: "a b", Image: "/i.sif"}, err: "not allowed"},
		{name: "no image", spec: InstanceSpec{Name: "a"}, err: "no image"},
		{name: "relative bind source", spec: InstanceSpec{Name: "a", Image: "/i", Binds: []Bind{{Source: "x", Target: "/x"}}}, err: "absolute host path"},
		{name: "relative bind target", spec: InstanceSpec{Name: "a", Image: "/i", Binds: []Bind{{Source: "/x", Target: "x"}}}, err: "absolute container path"},
		{name: "relative tmpfs", spec: InstanceSpec{Name: "a", Image: "/i", Tmpfs: []string{"run"}}, err: "absolute"},
		{name: "tmpfs with comma", spec: InstanceSpec{Name: "a", Image: "/i", Tmpfs: []string{"/a,b"}}, err: "comma"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkStartArgs(t, c.spec, c.want, c.err)
		})
	}
	// A relative image path is made absolute: the client runs in "/".
	args, err := StartArgs(InstanceSpec{Name: "a", Image: "rel.sif"})
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if got := args[len(args)-2]; got != filepath.Join(wd, "rel.sif") {
		t.Errorf("image %q, want absolute", got)
	}
}

func TestProcessArgs(t *testing.T) {
	cases := []struct {
		spec ProcessSpec
		want []string
		err  string
	}{
		{ProcessSpec{Instance: "p.w.1", Args: []string{"sh", "-c", "echo hi"}},
			[]string{"-s", "exec", "--cleanenv", "--no-eval", "--pwd", "/", "instance://p.w.1", "sh", "-c", "echo hi"}, ""},
		{ProcessSpec{Instance: "p.w.1", Run: true, Pwd: "/srv"},
			[]string{"-s", "run", "--cleanenv", "--no-eval", "--pwd", "/srv", "instance://p.w.1"}, ""},
		{ProcessSpec{Instance: "p.w.1", Run: true, Args: []string{"--flag"}},
			[]string{"-s", "run", "--cleanenv", "--no-eval", "--pwd", "/", "instance://p.w.1", "--flag"}, ""},
		{ProcessSpec{Instance: "p.w.1"}, nil, "no command"},
		{ProcessSpec{Instance: "p.w.1", Args: []string{"x"}, Pwd: "rel"}, nil, "absolute"},
		{ProcessSpec{Instance: "", Args: []string{"x"}}, nil, "empty"},
	}
	for _, c := range cases {
		got, err := processArgs(c.spec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("processArgs(%+v): err = %v, want %q", c.spec, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("processArgs(%+v) = %q, %v; want %q", c.spec, got, err, c.want)
		}
	}
}

func TestStopArgs(t *testing.T) {
	cases := []struct {
		sig     string
		timeout time.Duration
		want    string
		err     bool
	}{
		{"SIGTERM", 10 * time.Second, "-s 15 -t 10", false},
		{"", 10 * time.Second, "-s 15 -t 10", false},
		{"INT", 1500 * time.Millisecond, "-s 2 -t 2", false},
		{"9", 0, "-s 9 -t 0", false},
		{"SIGQUIT", -time.Second, "-s 3 -t 0", false},
		{"SIGBOGUS", time.Second, "", true},
	}
	for _, c := range cases {
		args, err := stopArgs("p.w.1", c.sig, c.timeout)
		if c.err {
			if err == nil {
				t.Errorf("stopArgs(%q): no error", c.sig)
			}
			continue
		}
		want := "-s instance stop " + c.want + " p.w.1"
		if got := strings.Join(args, " "); err != nil || got != want {
			t.Errorf("stopArgs(%q, %v) = %q, %v; want %q", c.sig, c.timeout, got, err, want)
		}
	}
	if _, err := stopArgs("a*", "TERM", time.Second); err == nil {
		t.Error("stopArgs accepted a glob as name")
	}
}

func TestClientEnv(t *testing.T) {
	base := []string{
		"PATH=/usr/bin", "HOME=/root", "TERM=xterm", "LANG=C.UTF-8",
		"APPTAINERENV_FOO=1", "SINGULARITYENV_BAR=2",
		"APPTAINER_BIND=/x", "SINGULARITY_CONTAIN=1", "APPTAINER_SILENT=1",
		"APPTAINER_CACHEDIR=/c", "APPTAINER_TMPDIR=/t", "SINGULARITY_CONFIGDIR=/cfg",
	}
	want := []string{"PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "APPTAINER_CACHEDIR=/c", "APPTAINER_TMPDIR=/t", "SINGULARITY_CONFIGDIR=/cfg"}
	if got := clientEnv(base); !reflect.DeepEqual(got, want) {
		t.Errorf("clientEnv = %q, want %q", got, want)
	}
}

func TestServiceEnv(t *testing.T) {
	got, err := serviceEnv([]string{"PATH=/bin", "APPTAINERENV_X=host"}, []string{"A=1", "B=x=y,z", "C=", "lower_1=v"})
	want := []string{"PATH=/bin", "APPTAINERENV_A=1", "APPTAINERENV_B=x=y,z", "APPTAINERENV_C=", "APPTAINERENV_lower_1=v"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("serviceEnv = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"NOEQUALS", "a.b=1", "1X=1", "=v", "A-B=1", "NUL=a\x00b"} {
		if _, err := serviceEnv(nil, []string{bad}); err == nil {
			t.Errorf("serviceEnv accepted %q", bad)
		}
	}
}

func TestSummarize(t *testing.T) {
	out := []byte("INFO:    something\nFATAL:   container creation failed:   mount   /x\n\nERROR:   cleanup failed\n")
	if got, want := summarize(out), "FATAL: container creation failed: mount /x; ERROR: cleanup failed"; got != want {
		t.Errorf("summarize = %q, want %q", got, want)
	}
	if got := summarize([]byte("a\nb\nc\nd\n")); got != "b; c; d" {
		t.Errorf("summarize without FATAL = %q", got)
	}
	if got := summarize(nil); got != "no output" {
		t.Errorf("summarize(nil) = %q", got)
	}
}

func TestParseInstanceList(t *testing.T) {
	out := `{
	"instances": [
		{"instance": "p.web.1", "pid": 4440, "img": "/tmp/web.sif", "ip": "", "logErrPath": "/x.err", "logOutPath": "/x.out"}
	]
}`
	got, err := parseInstanceList([]byte(out))
	want := []InstanceInfo{{Name: "p.web.1", Pid: 4440, Img: "/tmp/web.sif", LogOutPath: "/x.out"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseInstanceList = %+v, %v", got, err)
	}
	if got, err := parseInstanceList([]byte(`{"instances": []}`)); err != nil || len(got) != 0 {
		t.Errorf("empty list = %+v, %v", got, err)
	}
	if _, err := parseInstanceList([]byte("garbage")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseSIFList(t *testing.T) {
	out := `------------------------------------------------------------------------------
ID   |GROUP   |LINK    |SIF POSITION (start-end)  |TYPE
------------------------------------------------------------------------------
1    |1       |NONE    |32176-32213               |Def.FILE
2    |1       |NONE    |32213-34404               |JSON.Generic
3    |1       |NONE    |36864-1081344             |FS (Squashfs/*System/amd64)
`
	if off, err := parseSIFList([]byte(out)); err != nil || off != 36864 {
		t.Errorf("parseSIFList = %d, %v", off, err)
	}
	noFS := strings.ReplaceAll(out, "FS (Squashfs/*System/amd64)", "FS (Encrypted squashfs/*System/amd64)")
	if _, err := parseSIFList([]byte(noFS)); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("encrypted image: err = %v", err)
	}
}

func TestParseStat(t *testing.T) {
	state, ppid, err := parseStat("1234 (a) b (c)) S 42 1234 1234 0 -1")
	if err != nil || state != 'S' || ppid != 42 {
		t.Errorf("parseStat = %c %d %v", state, ppid, err)
	}
	if _, _, err := parseStat("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestRealRunscript(t *testing.T) {
	placeholder := "#!/bin/sh\n# Copyright\n\necho \"There is no runscript defined for this container\\n\";"
	cases := map[string]bool{
		"":                                      false,
		"#!/bin/sh\n# comment\n":                false,
		placeholder:                             false,
		"#!/bin/sh\nexec redis-server \"$@\"\n": true,
		"#!/bin/sh\nOCI_ENTRYPOINT=''\nOCI_CMD='nginx'": true,
	}
	for script, want := range cases {
		if got := realRunscript(script); got != want {
			t.Errorf("realRunscript(%q) = %v, want %v", script, got, want)
		}
	}
}

func TestCapWriter(t *testing.T) {
	w := &capWriter{max: 5}
	for _, s := range []string{"ab", "cdef", "gh"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Errorf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if string(w.buf) != "abcde" {
		t.Errorf("kept %q, want abcde", w.buf)
	}
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("run/x")
	mk("var")
	mk("data")
	ln("../run", "var/run")          // relative
	ln("/data", "abs")               // absolute, resolved inside root
	ln("../../../../../data", "esc") // tries to leave root
	ln("loop2", "loop1")
	ln("loop1", "loop2")
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	noFetch := func(string) error { return nil }
	cases := []struct {
		in    string
		want  string
		found bool
		err   bool
	}{
		{"/run/x", "run/x", true, false},
		{"/var/run/x", "run/x", true, false},
		{"/abs", "data", true, false},
		{"/esc", "data", true, false},
		{"/var/../run/./x/", "run/x", true, false},
		{"/", "", true, false},
		{"/missing/dir", "", false, false},
		{"/file/below", "", false, false},
		{"/loop1", "", false, true},
	}
	for _, c := range cases {
		got, found, err := resolveInRoot(root, c.in, noFetch)
		if (err != nil) != c.err || found != c.found || got != c.want {
			t.Errorf("resolveInRoot(%q) = %q, %v, %v; want %q, %v, err=%v", c.in, got, found, err, c.want, c.found, c.err)
		}
	}
}

func TestSignalNameRoundTrip(t *testing.T) {
	for n := 1; n <= sigRTMAX; n++ {
		name := SignalName(syscall.Signal(n))
		got, err := ParseSignal(name)
		if err != nil || got != syscall.Signal(n) {
			t.Errorf("ParseSignal(SignalName(%d) = %q) = %d, %v", n, name, got, err)
		}
	}
	for n, want := range map[int]string{15: "SIGTERM", 34: "SIGRTMIN", 37: "SIGRTMIN+3", 49: "SIGRTMIN+15", 50: "SIGRTMAX-14", 64: "SIGRTMAX"} {
		if got := SignalName(syscall.Signal(n)); got != want {
			t.Errorf("SignalName(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestValidateEnv(t *testing.T) {
	for _, name := range []string{"A", "_", "a_1", "PATH", "_9"} {
		if err := ValidateEnv(name, "x,y=z"); err != nil {
			t.Errorf("ValidateEnv(%q): %v", name, err)
		}
	}
	for _, c := range []struct{ name, value, want string }{
		{"MY-VAR", "", `"MY-VAR": Apptainer allows only letters, digits and '_'`},
		{"1ABC", "", "not starting with a digit"},
		{"", "", `variable name ""`},
		{"a.b", "", "rename it"},
		{"A", "a\x00b", "NUL"},
	} {
		if err := ValidateEnv(c.name, c.value); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ValidateEnv(%q, %q) = %v, want %q", c.name, c.value, err, c.want)
		}
	}
}

func TestValidateMounts(t *testing.T) {
	for _, c := range []struct {
		bind Bind
		want string // "" valid
	}{
		{Bind{Source: "/a", Target: "/b"}, ""},
		{Bind{Source: "/a,b:c", Target: "/x y\"z"}, ""},
		{Bind{Source: "a", Target: "/b"}, "absolute host path"},
		{Bind{Source: "/a", Target: "data"}, `target "data": want an absolute container path, such as /data`},
		{Bind{Source: "/a", Target: "/"}, "container's root"},
		{Bind{Source: "/a", Target: "/x/.."}, "container's root"},
		{Bind{Source: "/a\nb", Target: "/b"}, "line break"},
		{Bind{Source: "/a", Target: "/b\n"}, "line break"},
	} {
		err := ValidateBind(c.bind)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("ValidateBind(%+v) = %v, want %q", c.bind, err, c.want)
		}
	}
	for target, want := range map[string]string{"/run": "", "run": "absolute", "/a,b": "comma", "/": "root"} {
		err := ValidateTmpfs(target)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("ValidateTmpfs(%q) = %v, want %q", target, err, want)
		}
	}
	if err := ValidateWorkingDir("app"); err == nil || !strings.Contains(err.Error(), "such as /app") {
		t.Errorf("ValidateWorkingDir(app) = %v", err)
	}
	if err := ValidateArgs([]string{"a", "b\x00"}); err == nil {
		t.Error("ValidateArgs accepted a NUL byte")
	}
}

func TestProvidedByMount(t *testing.T) {
	spec := InstanceSpec{
		Binds: []Bind{{Source: "/h/src", Target: "/app"}},
		Tmpfs: []string{"/scratch/"},
	}
	for dir, want := range map[string]bool{
		"/app": true, "/app/sub": true, "/app/": true, "/scratch/x": true, "/scratch": true,
		"/apple": false, "/srv": false, "/": false,
	} {
		if got := providedByMount(spec, dir); got != want {
			t.Errorf("providedByMount(%q) = %v, want %v", dir, got, want)
		}
	}
}

// checkStartArgs checks StartArgs(spec): joined with " | ", its arguments
// are want, or, when wantErr is not empty, it fails with an error that
// says wantErr.
func checkStartArgs(t *testing.T, spec InstanceSpec, want, wantErr string) {
	t.Helper()
	args, err := StartArgs(spec)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(args, " | "); got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
}

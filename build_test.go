package main

// Builds from Apptainer definition files: `Bootstrap: localimage` on the
// busybox test root filesystem with %files, %environment and %runscript
// (as root on these machines %post fails, see the facts file).

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sstack/internal/testimg"
	"sstack/internal/testutil"
)

// definition is a definition file that copies greeting.txt from the
// build context into the image and prints it.
func definition(t *testing.T) string {
	return "Bootstrap: localimage\nFrom: " + testimg.BusyboxRootfs(t) + `

%files
    greeting.txt /greeting.txt

%environment
    export WHO=definition

%runscript
    echo "$(cat /greeting.txt) from the $WHO"
`
}

func modTime(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

func TestBuildOnUp(t *testing.T) {
	p := newProject(t, "services:\n  app:\n    build:\n      context: ./src\n      dockerfile: app.def\n")
	p.write("src/app.def", definition(t))
	p.write("src/greeting.txt", "v1\n")
	sif := filepath.Join(p.dir, "images", p.name+"-app+latest.sif")

	code, stdout, stderr := p.run("config")
	if code != 0 {
		t.Fatalf("config: exit %d\n%s", code, stderr)
	}
	contains(t, "config stderr", stderr, `WARN service "app": build: no SIF of the image built from ./src/app.def`, "sstack build app")
	contains(t, "config stdout", stdout, `definition: "`+filepath.Join(p.dir, "src/app.def")+`"`)

	// Missing: up builds it, in the build context.
	code, stdout, stderr = p.run()
	if code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	contains(t, "stdout", stdout, "app-1 | v1 from the definition")
	contains(t, "stderr", stderr, "app Building ./src/app.def", "app Built ./src/app.def (")
	built := modTime(t, sif)

	// Unchanged: neither build nor up --build builds it again.
	code, _, stderr = p.run("build")
	if code != 0 || !strings.Contains(stderr, "app Up to date: ./images/"+p.name+"-app+latest.sif") {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := p.run("up", "--build"); code != 0 || strings.Contains(stderr, "Building") {
		t.Fatalf("up --build of an unchanged image: exit %d\n%s", code, stderr)
	}
	if !modTime(t, sif).Equal(built) {
		t.Error("an unchanged image was built again")
	}

	// The context changed: up keeps the image (as docker compose),
	// up --build builds it again.
	p.write("src/greeting.txt", "v2\n")
	code, stdout, _ = p.run()
	if code != 0 || !strings.Contains(stdout, "| v1 from") {
		t.Fatalf("up without --build: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = p.run("up", "--build")
	if code != 0 || !strings.Contains(stdout, "app-1 | v2 from the definition") {
		t.Fatalf("up --build: exit %d\n%s%s", code, stdout, stderr)
	}

	// --no-cache builds even what did not change.
	before := modTime(t, sif)
	if code, _, stderr := p.run("build", "--no-cache"); code != 0 || !strings.Contains(stderr, "app Built") {
		t.Fatalf("build --no-cache: exit %d\n%s", code, stderr)
	}
	if modTime(t, sif).Equal(before) {
		t.Error("build --no-cache did not build")
	}
	entries, _ := os.ReadDir(filepath.Join(p.dir, "images"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"." + p.name + "-app+latest.sif.build", p.name + "-app+latest.sif"}; !slices.Equal(names, want) {
		t.Errorf("image directory %v, want %v", names, want)
	}
	p.assertNothingLeft()
}

// TestBuildDefinitionExtension: x-sstack.definition, built under the
// image: name; pull_policy: build builds without trying a pull (there
// is no registry for this name).
func TestBuildDefinitionExtension(t *testing.T) {
	p := newProject(t, `services:
  app:
    image: example.org/team/app:2
    pull_policy: build
    x-sstack:
      definition: defs/app.def
`)
	p.write("defs/app.def", definition(t))
	p.write("greeting.txt", "hello\n")
	code, stdout, stderr := p.run()
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	contains(t, "stdout", stdout, "app-1 | hello from the definition")
	if strings.Contains(stderr, "Pulling") {
		t.Errorf("pull_policy: build pulled:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "images", "example.org%team%app+2.sif")); err != nil {
		t.Error(err)
	}
	// pull_policy: build builds at every up, when something changed.
	code, _, stderr = p.run()
	if code != 0 || !strings.Contains(stderr, "app Up to date") {
		t.Errorf("second up: exit %d\n%s", code, stderr)
	}
	p.assertNothingLeft()
}

// TestBuildDockerfile: a Dockerfile is refused by up and build with the
// two ways that work; config only warns.
func TestBuildDockerfile(t *testing.T) {
	p := newProject(t, `services:
  web:
    build:
      context: .
      target: prod
  other:
    image: busybox
    command: ["true"]
`)
	p.write("Dockerfile", "FROM debian:12 AS prod\n")
	want := []string{
		`service "web": build: `, "./Dockerfile is a Dockerfile (stage \"prod\"), and Apptainer cannot build Dockerfiles",
		"docker build -t " + p.name + "-web --target prod . && docker save " + p.name + "-web -o " + p.name + "-web.tar",
		"apptainer build ./images/" + p.name + "-web+latest.sif docker-archive://" + p.name + "-web.tar",
		"Bootstrap:", "build.dockerfile or x-sstack.definition",
	}
	code, _, stderr := p.run("config")
	if code != 0 {
		t.Fatalf("config: exit %d\n%s", code, stderr)
	}
	contains(t, "config stderr", stderr, want...)
	for _, args := range [][]string{{"up"}, {"build"}, {"build", "web"}} {
		code, stdout, stderr := p.run(args...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
		contains(t, strings.Join(args, " "), stderr, want...)
		for _, wrong := range []string{"docker-daemon://", "apptainer pull", "Creating"} {
			if strings.Contains(stdout+stderr, wrong) {
				t.Errorf("%v: %q in:\n%s", args, wrong, stderr)
			}
		}
	}
	p.assertNothingLeft()
}

// TestBuildFailure: apptainer's FATAL line, nothing started, no SIF.
func TestBuildFailure(t *testing.T) {
	p := newProject(t, "services:\n  app:\n    build: {dockerfile: app.def}\n")
	p.write("app.def", "Bootstrap: localimage\nFrom: ./no-such-base.sif\n\n%runscript\n  echo hi\n")
	p.refusedBeforeStart(1, nil, `service "app": build: building `, "FATAL:")
	if entries, _ := os.ReadDir(filepath.Join(p.dir, "images")); len(entries) != 0 {
		t.Errorf("left in the image directory: %v", entries)
	}
}

// An image changed in place (written over at the same path, as a copy
// does) is inspected anew by the next up: sstack keeps apptainer's
// answers about an image only while the file is unchanged. Here the
// runscript goes away, so the service has nothing to run.
func TestImageChangedInPlaceSeenByNextUp(t *testing.T) {
	t.Parallel()
	p := newProject(t, "services:\n  app:\n    image: ./app.sif\n")
	sif := filepath.Join(p.dir, "app.sif")
	copyImage := func(from string) { testutil.WriteFile(t, sif, testutil.ReadFile(t, from), 0o644) }
	copyImage(testimg.BusyboxWithRunscript(t, "echo from the runscript"))
	for i := 0; i < 2; i++ { // the second up with what the first kept
		code, stdout, stderr := p.run()
		if code != 0 || !strings.Contains(stdout, "app-1 | from the runscript") {
			t.Fatalf("up %d: exit %d\n%s%s", i+1, code, stdout, stderr)
		}
	}
	copyImage(testimg.Busybox(t))
	p.refusedBeforeStart(1, nil, "has no runscript", "nothing to run")
}

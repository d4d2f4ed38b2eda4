package main

// Benchmarks of the replicas' own addresses (issue 16): what one replica
// carries to another through the stack's namespace, against the host's
// loopback, and what a lookup of a service name costs.

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timedScript is a shell script that runs cmd under busybox's time,
// whose "real" line (seconds, to the hundredth) parseSeconds reads.
func timedScript(cmd string) string {
	return `time -p sh -c '` + cmd + `' 2>&1 >/dev/null | grep '^real'`
}

func parseSeconds(b *testing.B, what string, out []byte, err error) time.Duration {
	b.Helper()
	f := strings.Fields(string(out))
	if err != nil || len(f) < 2 || f[len(f)-2] != "real" {
		b.Fatalf("%s: %v: %s", what, err, out)
	}
	s, perr := strconv.ParseFloat(f[len(f)-1], 64)
	if perr != nil {
		b.Fatalf("%s: %q", what, out)
	}
	return time.Duration(s * float64(time.Second))
}

// BenchmarkReplicaThroughput: a 1 GiB download by busybox wget from
// busybox httpd, replica to replica by name (client -> web), and, the
// floor, the same binaries on the host's loopback; then 100 lookups of
// the service name by busybox nslookup in one replica.
func BenchmarkReplicaThroughput(b *testing.B) {
	e := newBenchEnv(b)
	const size = 1 << 30 // sparse; long enough for time's hundredths
	www, busybox, hostPort := e.httpdFloor(size)
	compose := fmt.Sprintf("services:\n  web:\n    image: %s\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n    volumes: [\"%s:/www:ro\"]\n  client:\n    image: %s\n    command: [\"sleep\", \"3600\"]\n", e.image, www, e.image)
	project := benchName("benchrep")
	composeFile := e.writeFile("docker-compose.yml", compose)
	run := e.startSstack(composeFile, project)
	exec := func(script string) ([]byte, error) {
		return e.sstackCmd("-f", composeFile, "-n", project, "exec", "-T", "client", "sh", "-c", script).CombinedOutput()
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		// A 404 for / is an answer: web is reached.
		if out, err := exec("wget -qO- http://web/ >/dev/null"); err == nil || strings.Contains(string(out), "404") {
			break
		} else if time.Now().After(deadline) {
			b.Fatalf("client cannot reach web: %v: %s; stderr:\n%s", err, out, run.stderr)
		}
	}
	mibs := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	download := func(replica bool) float64 {
		if replica {
			out, err := exec(timedScript("wget -qO /dev/null http://web/blob"))
			return mibs(parseSeconds(b, "replica download", out, err))
		}
		out, err := exec0(busybox, strings.Replace(timedScript(busybox+" wget -qO /dev/null http://127.0.0.1:"+hostPort+"/blob"), "time -p", busybox+" time -p", 1))
		return mibs(parseSeconds(b, "loopback download", out, err))
	}
	var loop, replica, lookup []float64
	b.ResetTimer()
	alternate(b,
		func() { loop = append(loop, download(false)) },
		func() { replica = append(replica, download(true)) },
		func() {
			out, err := exec(timedScript("for i in $(seq 100); do nslookup -type=a web >/dev/null || exit 1; done"))
			lookup = append(lookup, float64(parseSeconds(b, "lookups", out, err))/100/1e6)
		},
	)
	b.StopTimer()
	_ = run.cmd.Process.Signal(os.Interrupt)
	run.wait(b, time.Minute)
	b.Logf("host loopback %s MiB/s; replica to replica %s MiB/s; nslookup web %s ms each", fmtSeries(loop), fmtSeries(replica), fmtSeries(lookup))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(loop), "loopback-MiB/s")
	b.ReportMetric(median(replica), "replica-MiB/s")
	b.ReportMetric(pairRatio(replica, loop), "ratio")
	b.ReportMetric(median(lookup), "lookup-ms")
}

// exec0 runs script with busybox's sh on the host.
func exec0(busybox, script string) ([]byte, error) {
	return exec.Command(busybox, "sh", "-c", script).CombinedOutput()
}

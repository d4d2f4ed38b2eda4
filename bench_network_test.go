package main

// Benchmarks of the stack network (issue 15): what it adds to up, and
// what a published port carries, each against its floor in the same run.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkUpNetwork: up of N services with a network namespace and an
// address each (the default) and on the host's network (--network host),
// each against the raw floor of the same iteration (instances on the
// host's network).
func BenchmarkUpNetwork(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) { benchUpNetwork(b, n) })
	}
}

func benchUpNetwork(b *testing.B, n int) {
	e := newBenchEnv(b)
	composeFile := e.writeFile("docker-compose.yml", benchCompose(e.image, n, 1))
	hosts := e.writeFile("hosts", "127.0.0.1\tlocalhost\n")
	var floor, stack, host []float64
	var floorCPU, stackCPU, hostCPU cpuSeries
	b.ResetTimer()
	alternate(b,
		func() { up, _ := e.floorUp(hosts, n); floor = append(floor, ms(up)); floorCPU.add(e.last) },
		func() { up, _ := e.sstackUp(composeFile, n); stack = append(stack, ms(up)); stackCPU.add(e.last) },
		func() {
			up, _ := e.sstackUp(composeFile, n, "--network", "host")
			host = append(host, ms(up))
			hostCPU.add(e.last)
		},
	)
	b.StopTimer()
	b.Logf("floor up %s ms; stack network %s ms; host network %s ms", fmtSeries(floor), fmtSeries(stack), fmtSeries(host))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(floor), "floor-up-ms")
	b.ReportMetric(median(stack), "stacknet-up-ms")
	b.ReportMetric(median(host), "hostnet-up-ms")
	b.ReportMetric(pairRatio(stack, floor), "stacknet-ratio")
	b.ReportMetric(pairRatio(host, floor), "hostnet-ratio")
	reportCPU(b, "floor", floorCPU)
	reportCPU(b, "stacknet", stackCPU)
	reportCPU(b, "hostnet", hostCPU)
}

// BenchmarkPublishedThroughput: a 200 MiB download from busybox httpd,
// through a port published from the stack network (slirp4netns) and, the
// floor, from the same httpd binary on the host's loopback.
func BenchmarkPublishedThroughput(b *testing.B) {
	e := newBenchEnv(b)
	const size = 200 << 20
	www, _, hostPort := e.httpdFloor(size)
	stackPort := benchFreePort(b)
	compose := fmt.Sprintf("services:\n  web:\n    image: %s\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n    volumes: [\"%s:/www:ro\"]\n    ports: [\"127.0.0.1:%s:80\"]\n", e.image, www, stackPort)
	project := benchName("benchnet")
	run := e.startSstack(e.writeFile("docker-compose.yml", compose), project)
	download := func(port string) float64 {
		var last error
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			t0 := time.Now()
			resp, err := http.Get("http://127.0.0.1:" + port + "/blob")
			if err != nil {
				last = err
				continue
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != size {
				b.Fatalf("port %s: %d bytes, %v", port, n, err)
			}
			return float64(n) / (1 << 20) / time.Since(t0).Seconds()
		}
		b.Fatalf("port %s: %v; stderr:\n%s", port, last, run.stderr)
		return 0
	}
	var loop, published []float64
	b.ResetTimer()
	alternate(b,
		func() { loop = append(loop, download(hostPort)) },
		func() { published = append(published, download(stackPort)) },
	)
	b.StopTimer()
	_ = run.cmd.Process.Signal(os.Interrupt)
	run.wait(b, time.Minute)
	b.Logf("host loopback %s MiB/s; published port %s MiB/s", fmtSeries(loop), fmtSeries(published))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(loop), "loopback-MiB/s")
	b.ReportMetric(median(published), "published-MiB/s")
	b.ReportMetric(pairRatio(published, loop), "ratio")
}

// httpdFloor serves a sparse file of size, www/blob, from busybox httpd on
// the host's loopback at hostPort: the floor of the download benchmarks.
func (e *benchEnv) httpdFloor(size int64) (www, busybox, hostPort string) {
	b := e.b
	www = filepath.Join(e.dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(www, "blob"))
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	if busybox, err = exec.LookPath("busybox"); err != nil {
		b.Skip(err)
	}
	hostPort = benchFreePort(b)
	floor := exec.Command(busybox, "httpd", "-f", "-p", "127.0.0.1:"+hostPort, "-h", www)
	if err := floor.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = floor.Process.Kill(); _ = floor.Wait() })
	return www, busybox, hostPort
}

func benchFreePort(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

package compose

import (
	"bytes"
	"strings"
	"testing"
)

func TestResources(t *testing.T) {
	tests := []struct {
		name  string
		svc   string // the service's keys, indented by 4
		want  *Resources
		warns []string // keys warned about
	}{
		{name: "none", svc: "", want: nil},
		{
			name: "every service key",
			svc: `    cpus: 1.1
    cpu_shares: 512
    cpuset: "0-1,3"
    mem_limit: 256m
    mem_reservation: 128m
    memswap_limit: 1g
    pids_limit: 100
    oom_kill_disable: true
    blkio_config:
      weight: 300
`,
			want: &Resources{CPUs: 1.1, CPUShares: 512, CPUSet: "0-1,3", Memory: 256 << 20, MemoryReservation: 128 << 20, MemorySwap: 1 << 30,
				PidsLimit: 100, OOMKillDisable: true, BlkioWeight: 300,
				Keys: []string{"cpus", "cpu_shares", "cpuset", "mem_limit", "mem_reservation", "memswap_limit", "pids_limit", "oom_kill_disable", "blkio_config.weight"}},
		},
		{
			name: "deploy.resources",
			svc: `    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64M, pids: 20}
        reservations: {memory: 32M}
`,
			want: &Resources{CPUs: 0.5, Memory: 64 << 20, MemoryReservation: 32 << 20, PidsLimit: 20,
				Keys: []string{"deploy.resources.limits.cpus", "deploy.resources.limits.memory", "deploy.resources.reservations.memory", "deploy.resources.limits.pids"}},
		},
		{
			name: "the same value twice",
			svc:  "    mem_limit: 1g\n    deploy:\n      resources:\n        limits: {memory: 1024m}\n",
			want: &Resources{Memory: 1 << 30, Keys: []string{"mem_limit"}},
		},
		{
			name: "unlimited pids and swap",
			svc:  "    pids_limit: -1\n    mem_limit: 1g\n    memswap_limit: -1\n",
			want: &Resources{Memory: 1 << 30, MemorySwap: -1, Keys: []string{"mem_limit", "memswap_limit"}},
		},
		{
			name:  "oom_kill_disable without a limit warns",
			svc:   "    oom_kill_disable: true\n",
			want:  &Resources{OOMKillDisable: true, Keys: []string{"oom_kill_disable"}},
			warns: []string{"oom_kill_disable"},
		},
		{
			name: "what is not applied warns",
			svc: `    blkio_config:
      device_read_bps: [{path: /dev/sda, rate: 1mb}]
    deploy:
      resources:
        reservations:
          cpus: "1"
          devices: [{capabilities: [tpu]}]
`,
			want:  nil,
			warns: []string{"blkio_config.device_read_bps", "deploy.resources.reservations.cpus", "deploy.resources.reservations.devices"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := planOf(t, "services:\n  a:\n    image: redis:7\n"+tt.svc, nil)
			eq(t, p.Service("a").Resources, tt.want)
			for _, k := range tt.warns {
				mustWarn(t, p, "a", k)
			}
			if len(tt.warns) == 0 && len(p.Warnings) > 0 {
				t.Errorf("unexpected warnings: %v", p.Warnings)
			}
		})
	}
}

func TestResourceErrors(t *testing.T) {
	tests := []struct{ svc, want string }{
		{"    cpus: 1\n    deploy:\n      resources:\n        limits: {cpus: '2'}\n", `service "a": cpus: 1 and deploy.resources.limits.cpus: 2 differ; keep one of them`},
		{"    mem_limit: 1g\n    deploy:\n      resources:\n        limits: {memory: 2g}\n", `service "a": mem_limit: 1g and deploy.resources.limits.memory: 2g differ`},
		{"    memswap_limit: 1g\n", `service "a": memswap_limit: is set without mem_limit; it is the limit of memory plus swap: set mem_limit too`},
		{"    mem_limit: 1g\n    memswap_limit: 512m\n", `memswap_limit: 512m is less than mem_limit 1g`},
		{"    mem_limit: 1g\n    mem_reservation: 2g\n", `mem_reservation: 2g is more than the memory limit 1g`},
		{"    cpuset: 'all'\n", `cpuset: "all": give CPU numbers and ranges, e.g. 0-3,6`},
		{"    blkio_config: {weight: 5}\n", `blkio_config.weight: 5: give a weight from 10 to 1000`},
	}
	for _, tt := range tests {
		f := newFixture(t, map[string]string{"compose.yaml": "services:\n  a:\n    image: redis:7\n" + tt.svc}, fixtureImages...)
		_, err := f.load(t, f.opts())
		wantErrors(t, err, tt.want)
	}
}

func TestPrintResources(t *testing.T) {
	p, _ := planOf(t, "services:\n  a:\n    image: redis:7\n    cpus: 0.5\n    mem_limit: 64m\n    memswap_limit: -1\n    pids_limit: 50\n", nil)
	var b bytes.Buffer
	if err := p.Print(&b); err != nil {
		t.Fatal(err)
	}
	want := `    resources: {cpus: 0.5, memory: "64m", memory_swap: "-1", pids_limit: 50}`
	if !strings.Contains(b.String(), want+"\n") {
		t.Errorf("config lacks %s:\n%s", want, b.String())
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{1 << 30: "1g", 3 << 29: "1536m", 1536: "1536", 2048: "2k", 1000: "1000", -1: "-1", 0: "0"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %s, want %s", n, got, want)
		}
	}
}

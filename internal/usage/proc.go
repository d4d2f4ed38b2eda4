package usage

import (
	"os"
	"strconv"
	"strings"
)

// procScan is one pass over /proc: the processes of each PID namespace,
// shared by every instance of a Read that has no cgroup of its own.
type procScan struct {
	byNamespace map[string][]int
	self        string // the reader's own PID namespace
}

func (r *Reader) scanProc() *procScan {
	s := &procScan{byNamespace: map[string][]int{}}
	s.self, _ = os.Readlink(r.path("proc", "self", "ns", "pid"))
	entries, _ := os.ReadDir(r.path("proc"))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		// Another user's process cannot be read: it is in no instance of ours.
		ns, err := os.Readlink(r.path("proc", e.Name(), "ns", "pid"))
		if err != nil {
			continue
		}
		s.byNamespace[ns] = append(s.byNamespace[ns], pid)
	}
	return s
}

// stat is what usage needs of /proc/PID/stat.
type stat struct {
	ppid    int
	ticks   uint64 // utime+stime+cutime+cstime
	threads int
	rss     uint64 // pages
}

// fromProc sums the processes of the PID namespace of init. When init
// shares the reader's namespace (an instance started without a PID
// namespace of its own), the namespace would be the whole host: init and
// its descendants are summed instead.
func (r *Reader) fromProc(s *procScan, init int) (Usage, bool) {
	ns, err := os.Readlink(r.path("proc", strconv.Itoa(init), "ns", "pid"))
	if err != nil {
		return Usage{}, false
	}
	stats := map[int]stat{}
	var pids []int
	if ns == s.self {
		pids = r.descendants(s.byNamespace[ns], init, stats)
	} else {
		pids = s.byNamespace[ns]
	}
	u := Usage{Source: SourceProc}
	var ticks uint64
	for _, pid := range pids {
		st, ok := stats[pid]
		if !ok {
			if st, ok = r.readStat(pid); !ok {
				continue // exited since the scan
			}
		}
		u.Processes++
		u.Threads += st.threads
		ticks += st.ticks
		u.MemoryBytes += st.rss * pageSize
		io := readKeyed(r.path("proc", strconv.Itoa(pid), "io"))
		u.ReadBytes += io["read_bytes:"]
		u.WriteBytes += io["write_bytes:"]
	}
	if u.Processes == 0 {
		return Usage{}, false
	}
	u.CPUSeconds = float64(ticks) / clockTicks
	u.WorkingSetBytes = u.MemoryBytes
	return u, true
}

// descendants are init and the processes under it among pids, by parent
// pid; their stats are kept in stats.
func (r *Reader) descendants(pids []int, init int, stats map[int]stat) []int {
	children := map[int][]int{}
	for _, pid := range pids {
		st, ok := r.readStat(pid)
		if !ok {
			continue
		}
		stats[pid] = st
		children[st.ppid] = append(children[st.ppid], pid)
	}
	if _, ok := stats[init]; !ok {
		return nil
	}
	out := []int{init}
	seen := map[int]bool{init: true}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// readStat reads /proc/PID/stat: "pid (comm) state ppid ..."; comm may
// hold spaces and parentheses, so it ends at the last ')'. Fields after
// it, numbered as in proc(5) less 3: ppid 1, utime 11, stime 12, cutime
// 13, cstime 14, num_threads 17, rss 21.
func (r *Reader) readStat(pid int) (stat, bool) {
	b, err := readBytes(r.path("proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	rp := strings.LastIndexByte(s, ')')
	if rp < 0 {
		return stat{}, false
	}
	f := strings.Fields(s[rp+1:])
	if len(f) < 22 {
		return stat{}, false
	}
	num := func(i int) uint64 {
		n, _ := strconv.ParseUint(f[i], 10, 64)
		return n
	}
	return stat{
		ppid:    int(num(1)),
		ticks:   num(11) + num(12) + num(13) + num(14),
		threads: int(num(17)),
		rss:     num(21),
	}, true
}

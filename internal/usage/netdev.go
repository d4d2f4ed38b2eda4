package usage

import (
	"strconv"
	"strings"
)

// Interface is one network interface of a network namespace, with its
// counters since it was made.
type Interface struct {
	Name          string
	ReceiveBytes  uint64
	TransmitBytes uint64
}

// Network reads the interfaces of the network namespace pid is in, from
// /proc/PID/net/dev. sstack's instances share their stack's namespace
// (package stacknet), so this counts a stack, not a replica.
func (r *Reader) Network(pid int) ([]Interface, error) {
	b, err := readBytes(r.path("proc", strconv.Itoa(pid), "net", "dev"))
	if err != nil {
		return nil, err
	}
	return parseNetDev(string(b)), nil
}

// parseNetDev reads "  NAME: rx_bytes rx_packets (6 more) tx_bytes ..."
// lines after the two header lines.
func parseNetDev(s string) []Interface {
	var out []Interface
	for _, line := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		rx, err1 := strconv.ParseUint(f[0], 10, 64)
		tx, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, Interface{Name: strings.TrimSpace(name), ReceiveBytes: rx, TransmitBytes: tx})
	}
	return out
}

package compose

import (
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"sstack/singularity"
)

// Ulimit is one resource limit of a service process (compose ulimits):
// Soft and Hard, -1 for unlimited.
type Ulimit struct {
	Name string `json:"name"`
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// ulimits translates compose ulimits, in both the short (nofile: 1024)
// and the {soft, hard} form.
func (t *translator) ulimits(sc types.ServiceConfig) []Ulimit {
	var out []Ulimit
	for _, name := range sortedKeys(sc.Ulimits) {
		u := sc.Ulimits[name]
		if u == nil {
			continue
		}
		l := Ulimit{Name: name, Soft: int64(u.Soft), Hard: int64(u.Hard)}
		if u.Single != 0 {
			l.Soft, l.Hard = int64(u.Single), int64(u.Single)
		}
		if err := singularity.ValidateRlimit(singularity.Rlimit{Name: l.Name, Soft: l.Soft, Hard: l.Hard}); err != nil {
			t.fail(sc.Name, "ulimits", "%v", err)
			continue
		}
		out = append(out, l)
	}
	return slices.Clip(out)
}

package compose

import "testing"

// Instance names are made and read in one place: replicas, one-offs, and
// any other instance refused.
func TestParseInstanceName(t *testing.T) {
	for _, c := range []struct {
		name             string
		project, service string
		replica          int
		ok               bool
	}{
		{InstanceName("app", "web", 3), "app", "web", 3, true},
		{OneOffInstanceName("app", "web", "run-0a1b2c3d"), "app", "web", 0, true},
		{"app.web", "", "", 0, false},
		{"someone-elses", "", "", 0, false},
		{"a.b.c.d", "", "", 0, false},
	} {
		p, s, r, ok := ParseInstanceName(c.name)
		if p != c.project || s != c.service || r != c.replica || ok != c.ok {
			t.Errorf("%q: %q %q %d %v, want %q %q %d %v", c.name, p, s, r, ok, c.project, c.service, c.replica, c.ok)
		}
	}
}

package compose

import (
	"encoding/json"
	"io"
	"slices"
)

// The other outputs of `sstack config` (Print is the YAML one): the JSON
// form of the plan and docker compose's --services and --images lists.

// WriteJSON writes the plan as indented JSON. Secret and config values
// given by content are not part of it (Mount.Content is never encoded).
func (p *Plan) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ServiceNames are the plan's service names, sorted, as `docker compose
// config --services` lists them.
func (p *Plan) ServiceNames() []string {
	names := make([]string, len(p.Services))
	for i, s := range p.Services {
		names[i] = s.Name
	}
	slices.Sort(names)
	return names
}

// ImageNames are the images of the services (sorted by service name), as
// written in the compose file, or the resolved path when nothing was
// written: `docker compose config --images`.
func (p *Plan) ImageNames() []string {
	var out []string
	for _, name := range p.ServiceNames() {
		s := p.Service(name)
		img := s.ImageRef
		if img == "" {
			img = s.Image
		}
		out = append(out, img)
	}
	return out
}

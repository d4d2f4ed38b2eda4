package images

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"

	"sstack/compose"
)

// Row is one service's image, as `sstack images` lists it.
type Row struct {
	Service string `json:"Service"`
	Image   string `json:"Image"` // image: as written (or the built image's name)
	Path    string `json:"Path"`  // the SIF or sandbox used
	// Source: "pulled" (from a registry), "built" (from a definition
	// file), "file" (a path in the compose file), "missing".
	Source string `json:"Source"`
	Size   int64  `json:"Size"`
	// ID names the content: the build hash of a built image, else the
	// sha256 of the SIF (a sandbox directory has none).
	ID string `json:"ID"`
}

// Rows lists the image of every service of plan, one row each.
func Rows(plan *compose.Plan) []Row {
	rows := make([]Row, 0, len(plan.Services))
	for _, s := range plan.Services {
		r := Row{Service: s.Name, Image: s.ImageRef, Path: s.Image, Source: "file"}
		if src := s.ImageSource; src != nil {
			if r.Image == "" {
				r.Image = src.Name
			}
			switch {
			case src.Build != nil && storedHash(s.Image) != "":
				r.Source, r.ID = "built", storedHash(s.Image)
			case src.Pull != "":
				r.Source = "pulled"
			}
		}
		fi, err := os.Stat(s.Image)
		switch {
		case err != nil:
			r.Source = "missing"
		case fi.Mode().IsRegular():
			r.Size = fi.Size()
			if r.ID == "" {
				r.ID = fileDigest(s.Image)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func fileDigest(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// ShortID is an ID as docker prints IMAGE ID: 12 hex digits.
func ShortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

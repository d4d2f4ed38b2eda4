package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"syscall"
)

// ConfigHash says whether a running service must be recreated to match s
// (docker compose's config-hash label): a digest of everything its
// replicas are made from. That is its plan entry but for the replica count
// (scale changes replicas, not their configuration) and for what records
// how the plan was made (ImageSource, Problems); the identity of the image
// file (a new SIF under the same name is a new image); and the content of
// the secret and config files it binds. Environment already holds what its
// env files say.
func (s *Service) ConfigHash() string {
	h := sha256.New()
	entry := *s
	entry.Replicas, entry.ImageSource, entry.Problems = 0, nil, nil
	b, _ := json.Marshal(entry) // plain data: it always marshals
	h.Write(b)
	io.WriteString(h, "\x00image "+fileIdentity(s.Image))
	for _, m := range s.Mounts {
		switch {
		case m.Content != nil:
			io.WriteString(h, "\x00content "+m.Target+"\x00"+*m.Content)
		case m.Kind == MountSecret || m.Kind == MountConfig:
			io.WriteString(h, "\x00file "+m.Target+"\x00")
			hashFile(h, m.Source)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileIdentity tells a file apart from another at the same path without
// reading it (an image is large): device, inode, size and modification
// time, as make and rsync do. A directory (a sandbox image) is its path.
func fileIdentity(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	id := strconv.FormatInt(fi.Size(), 10) + " " + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id += " " + strconv.FormatUint(st.Dev, 10) + ":" + strconv.FormatUint(st.Ino, 10)
	}
	return id
}

// hashFile adds a small file's content (secrets and configs), or that it
// cannot be read, to h.
func hashFile(h io.Writer, path string) {
	f, err := os.Open(path)
	if err != nil {
		io.WriteString(h, "unreadable")
		return
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		io.WriteString(h, "unreadable")
	}
}

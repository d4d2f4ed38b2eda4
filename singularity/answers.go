package singularity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
)

// Answers of apptainer that depend on one file only (the runtime's
// `--version`, an image's `inspect`) are kept on disk, keyed by the
// file's identity, so that an up does not wait for those commands each
// time: each is an apptainer client, tens of ms on a loaded node before
// the first instance can start (issue 18: up of 10 services against its
// floor). A file replaced or changed (a rebuild, an upgrade) has another
// identity and is asked again. Only answers are kept: a failure is asked
// again next time. The cache is best effort: where it cannot be read or
// written (no home, a read-only one), apptainer is asked as before.

// fileID is what makes an answer about path still true: the file at the
// path, not replaced (device, inode) and not changed (size, times).
type fileID struct {
	Path  string `json:"path"`
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"` // ns
	Ctime int64  `json:"ctime"` // ns
}

func idOf(path string) (fileID, bool) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return fileID{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{
		Path: path, Dev: uint64(sys.Dev), Ino: sys.Ino, Size: st.Size(),
		Mtime: sys.Mtim.Nano(), Ctime: sys.Ctim.Nano(),
	}, true
}

// answerEntry is one kept answer: the identity it was given for.
type answerEntry struct {
	ID     fileID          `json:"id"`
	Answer json.RawMessage `json:"answer"`
}

// answersDir is where answers are kept: the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache), sstack/apptainer. A variable for tests.
var answersDir = func() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "sstack", "apptainer")
}

// answerFile is the one file of kind's answer about path: a later answer
// about the same path (the file changed) replaces it, so the cache holds
// one entry per path and kind.
func answerFile(kind, path string) string {
	dir := answersDir()
	if dir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(path))
	return filepath.Join(dir, kind+"-"+hex.EncodeToString(sum[:12])+".json")
}

// keptAnswer fills answer with kind's kept answer about the file id
// names and tells whether there was one for the file as it is now.
func keptAnswer(kind string, id fileID, answer any) bool {
	file := answerFile(kind, id.Path)
	if file == "" {
		return false
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	var e answerEntry
	if json.Unmarshal(data, &e) != nil || e.ID != id {
		return false
	}
	return json.Unmarshal(e.Answer, answer) == nil
}

// keepAnswer keeps kind's answer about path, given while the file was as
// id says (taken before apptainer was asked: a file changed meanwhile is
// asked again next time). Written whole (a temporary file renamed), so a
// reader never sees half an entry.
func keepAnswer(kind string, id fileID, answer any) {
	file := answerFile(kind, id.Path)
	if file == "" {
		return
	}
	raw, err := json.Marshal(answer)
	if err != nil {
		return
	}
	data, err := json.Marshal(answerEntry{ID: id, Answer: raw})
	if err != nil {
		return
	}
	if os.MkdirAll(filepath.Dir(file), 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".answer-")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), file) != nil {
		_ = os.Remove(tmp.Name())
	}
}

// asked returns kind's answer about path: the kept one if the file is
// unchanged, else ask's, kept for next time.
func asked[T any](kind, path string, ask func() (T, error)) (T, error) {
	id, ok := idOf(path)
	var answer T
	if ok && keptAnswer(kind, id, &answer) {
		return answer, nil
	}
	answer, err := ask()
	if err == nil && ok {
		keepAnswer(kind, id, answer)
	}
	return answer, err
}

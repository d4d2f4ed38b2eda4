package engine

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/logs/logstest"
	"sstack/internal/projects"
)

// The running stack's Logs reads its store: a service of its plan that
// logged nothing is no error, one outside the plan is; following lasts
// while the stack holds its project's lock and ends with the stack.
func TestSupervisorLogs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "proj")
	unlock, err := projects.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := &Supervisor{}
	s.current.Store(&compose.Plan{Project: "proj", StateDir: dir, Services: []compose.Service{{Name: "web"}, {Name: "quiet"}}})
	w := logstest.Store(t, dir, logstest.Record{Name: "web-1", Stream: "stdout", Text: "hello\n"})

	if err := s.Logs(context.Background(), api.LogsOptions{Services: []string{"quiet"}}, &logstest.LogLines{}); err != nil {
		t.Errorf("Logs of a silent service of the plan: %v", err)
	}
	if err := s.Logs(context.Background(), api.LogsOptions{Services: []string{"nosuch"}}, &logstest.LogLines{}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Logs of a service outside the plan: %v", err)
	}
	followed := logstest.Follow(t, s.Logs, api.LogsOptions{}, w, "web-1", unlock)
	w.Close()
	if want := []string{"web-1 stdout hello", "web-1 stdout later"}; !reflect.DeepEqual(followed.Lines(), want) || !reflect.DeepEqual(followed.Said(), []string{api.LogsStopped}) {
		t.Errorf("Logs -f gave %q, status %q; want %q and the stack's end", followed.Lines(), followed.Said(), want)
	}
}

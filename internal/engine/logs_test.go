package engine

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sstack/compose"
	"sstack/internal/api"
	"sstack/internal/logs/logstest"
	"sstack/internal/logstore"
	"sstack/internal/projects"
	"sstack/internal/statedir"
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
	w, err := logstore.NewWriter(statedir.Logs(dir), 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w.Write("web-1", "stdout", t0, []byte("hello\n"), 1)
	w.Flush()

	if err := s.Logs(context.Background(), api.LogsOptions{Services: []string{"quiet"}}, &logstest.LogLines{}); err != nil {
		t.Errorf("Logs of a silent service of the plan: %v", err)
	}
	if err := s.Logs(context.Background(), api.LogsOptions{Services: []string{"nosuch"}}, &logstest.LogLines{}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Logs of a service outside the plan: %v", err)
	}

	followed := &logstest.LogLines{}
	done := make(chan error, 1)
	go func() { done <- s.Logs(context.Background(), api.LogsOptions{Follow: true}, followed) }()
	time.Sleep(300 * time.Millisecond)
	w.Write("web-1", "stdout", t0.Add(time.Second), []byte("later\n"), 1)
	w.Flush()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("logs -f ended while the stack ran: %v", err)
	default:
	}
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("logs -f went on after the stack ended")
	}
	w.Close()
	if want := []string{"web-1 stdout hello", "web-1 stdout later"}; !reflect.DeepEqual(followed.Lines(), want) || !reflect.DeepEqual(followed.Said(), []string{api.LogsStopped}) {
		t.Errorf("Logs -f gave %q, status %q; want %q and the stack's end", followed.Lines(), followed.Said(), want)
	}
}

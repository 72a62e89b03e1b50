package spool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/spool"
	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

// registry stands for the registry: it refuses results while down.
type registry struct {
	mu     sync.Mutex
	down   bool
	stored map[string]*wire.InvocationResponse
	calls  int
}

func newRegistry(down bool) *registry {
	return &registry{down: down, stored: map[string]*wire.InvocationResponse{}}
}

func (r *registry) deliver(_ context.Context, e spool.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.down {
		return errors.New("etcd unreachable")
	}
	r.stored[e.ReqID] = e.Response
	return nil
}

func (r *registry) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *registry) get(id string) (*wire.InvocationResponse, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stored[id], r.calls
}

func open(t *testing.T, dir string, reg *registry, maxBytes int64) *spool.Spool {
	t.Helper()
	s, err := spool.Open(spool.Config{Dir: dir, MaxBytes: maxBytes, Deliver: reg.deliver,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func run(t *testing.T, s *spool.Spool) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func entry(id string) spool.Entry {
	return spool.Entry{ReqID: id, Response: &wire.InvocationResponse{ReqID: id, Success: true, Result: `"ok"`},
		Expires: time.Now().Add(time.Hour)}
}

func TestDeliversOnceRegistryAnswers(t *testing.T) {
	reg := newRegistry(true)
	s := open(t, t.TempDir(), reg, 1<<20)
	run(t, s)
	if err := s.Put(entry("f-1")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if resp, ok := s.Get("f-1"); !ok || resp.Result != `"ok"` {
		t.Fatalf("Get while the registry is down: %+v, %v", resp, ok)
	}
	testutil.WaitUntil(t, 5*time.Second, "delivery retried", func() bool {
		_, calls := reg.get("f-1")
		return calls >= 3
	})
	reg.setDown(false)
	testutil.WaitUntil(t, 5*time.Second, "result delivered", func() bool {
		resp, _ := reg.get("f-1")
		return resp != nil && s.Len() == 0
	})
	if _, ok := s.Get("f-1"); ok {
		t.Error("delivered result still in the spool")
	}
	if s.Bytes() != 0 {
		t.Errorf("spool holds %d bytes after delivering everything", s.Bytes())
	}
}

func TestReopenKeepsResults(t *testing.T) {
	dir := t.TempDir()
	reg := newRegistry(true)
	s := open(t, dir, reg, 1<<20)
	if err := s.Put(entry("f-restart")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	expired := entry("f-expired")
	expired.Expires = time.Now().Add(-time.Second)
	if err := s.Put(expired); err != nil {
		t.Fatalf("Put expired: %v", err)
	}
	// Debris of a crash: a half-written temporary and a corrupt file.
	os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "f-corrupt.json"), []byte("{not json"), 0o600)

	reg.setDown(false)
	s2 := open(t, dir, reg, 1<<20)
	if s2.Len() != 1 {
		t.Fatalf("reopened spool holds %d results, want 1 (expired and corrupt ones dropped)", s2.Len())
	}
	if _, ok := s2.Get("f-restart"); !ok {
		t.Fatal("reopened spool lost the result")
	}
	run(t, s2)
	testutil.WaitUntil(t, 5*time.Second, "result delivered after reopen", func() bool {
		resp, _ := reg.get("f-restart")
		return resp != nil
	})
	files, _ := os.ReadDir(dir)
	if len(files) != 0 {
		t.Errorf("spool directory still holds %d files", len(files))
	}
}

func TestFullRefusesAndKeepsWhatItHolds(t *testing.T) {
	reg := newRegistry(true)
	s := open(t, t.TempDir(), reg, 300)
	if err := s.Put(entry("f-a")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	held := s.Bytes()
	var err error
	for i := 0; err == nil && i < 10; i++ {
		err = s.Put(entry("f-b" + string(rune('0'+i))))
	}
	if !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Put beyond the limit: got %v, want ErrFull", err)
	}
	if s.Bytes() > 300 {
		t.Errorf("spool holds %d bytes, limit 300", s.Bytes())
	}
	if _, ok := s.Get("f-a"); !ok || held <= 0 {
		t.Error("a refused Put lost an earlier result")
	}
}

func TestRefusesBadEntries(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, newRegistry(true), 1<<20)
	for _, e := range []spool.Entry{
		{ReqID: "../escape", Response: &wire.InvocationResponse{}, Expires: time.Now().Add(time.Hour)},
		{ReqID: "", Response: &wire.InvocationResponse{}, Expires: time.Now().Add(time.Hour)},
		{ReqID: "f-1", Expires: time.Now().Add(time.Hour)},
	} {
		if err := s.Put(e); !errors.Is(err, spool.ErrInvalid) {
			t.Errorf("Put(%q): got %v, want ErrInvalid", e.ReqID, err)
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 || s.Len() != 0 {
		t.Errorf("refused entries left %d files, %d entries", len(files), s.Len())
	}
	if _, ok := s.Get("../escape"); ok {
		t.Error("Get of a refused id found something")
	}
}

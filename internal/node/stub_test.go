package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/serverledge/serverledge/internal/container"
)

// stubRuntime is a minimal in-memory container.Runtime used until the
// shared fake lands.
type stubRuntime struct {
	mu         sync.Mutex
	seq        int
	images     map[string]bool
	containers map[string]*stubContainer
	calls      map[string]int
	latency    map[string]time.Duration
	badCode    bool
}

type stubContainer struct {
	info    container.Info
	spec    container.Spec
	loaded  bool
	started bool
}

func newStub(images ...string) *stubRuntime {
	s := &stubRuntime{images: map[string]bool{}, containers: map[string]*stubContainer{}, calls: map[string]int{}, latency: map[string]time.Duration{}}
	for _, im := range images {
		s.images[im] = true
	}
	return s
}

func (s *stubRuntime) enter(ctx context.Context, op string) error {
	s.mu.Lock()
	s.calls[op]++
	d := s.latency[op]
	s.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *stubRuntime) Create(ctx context.Context, spec container.Spec) (string, error) {
	if err := s.enter(ctx, "Create"); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.images[spec.Image] {
		return "", fmt.Errorf("%w: %s", container.ErrImageNotFound, spec.Image)
	}
	s.seq++
	id := fmt.Sprintf("id%d", s.seq)
	s.containers[id] = &stubContainer{info: container.Info{ID: id, Name: spec.Name, Labels: spec.Labels}, spec: spec}
	return id, nil
}

func (s *stubRuntime) Start(ctx context.Context, id string) error {
	if err := s.enter(ctx, "Start"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return container.ErrNotFound
	}
	c.started = true
	c.info.Running = true
	return nil
}

func (s *stubRuntime) Resize(ctx context.Context, id string, memoryMB int64, cpus float64) error {
	if err := s.enter(ctx, "Resize"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return container.ErrNotFound
	}
	c.spec.MemoryMB, c.spec.CPUs = memoryMB, cpus
	return nil
}

func (s *stubRuntime) Load(ctx context.Context, id string, req container.LoadRequest) error {
	if err := s.enter(ctx, "Load"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return container.ErrNotFound
	}
	if s.badCode || req.Handler == "bad" {
		return fmt.Errorf("%w: bad handler", container.ErrBadCode)
	}
	c.loaded = true
	return nil
}

func (s *stubRuntime) Invoke(ctx context.Context, id string, req container.InvokeRequest) (container.InvokeResult, error) {
	if err := s.enter(ctx, "Invoke"); err != nil {
		return container.InvokeResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return container.InvokeResult{}, container.ErrNotFound
	}
	if !c.loaded {
		return container.InvokeResult{}, container.ErrNotLoaded
	}
	return container.InvokeResult{Success: true, Result: `"ok"`}, nil
}

func (s *stubRuntime) Remove(ctx context.Context, id string) error {
	if err := s.enter(ctx, "Remove"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.containers, id)
	return nil
}

func (s *stubRuntime) List(ctx context.Context, labels map[string]string) ([]container.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []container.Info
next:
	for _, c := range s.containers {
		for k, v := range labels {
			if c.info.Labels[k] != v {
				continue next
			}
		}
		out = append(out, c.info)
	}
	return out, nil
}

func (s *stubRuntime) ImageExists(ctx context.Context, image string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.images[image], nil
}

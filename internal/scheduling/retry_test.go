package scheduling_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/testutil"
)

// TestContainerDeadWhileIdleIsRetried kills the only idle container behind
// the pool's back (the pool hears no event): the next request finds it dead
// before the function got its input and runs on a new container.
func TestContainerDeadWhileIdleIsRetried(t *testing.T) {
	n := setup(t, config{memoryMB: 512, queue: 4, deaf: true})
	f := fn(t, "f", 128)
	if _, err := n.sched.Invoke(context.Background(), req(f, 0)); err != nil {
		t.Fatal(err)
	}
	infos, err := n.rt.List(context.Background(), nil)
	if err != nil || len(infos) != 1 {
		t.Fatalf("List = %v, %v; want the one container", infos, err)
	}
	if err := n.rt.Kill(infos[0].ID); err != nil {
		t.Fatal(err)
	}
	resp, err := n.sched.Invoke(context.Background(), req(f, 0))
	if err != nil || !resp.Success {
		t.Fatalf("request after the idle container died: %+v, %v; want it retried on a new container", resp, err)
	}
	if resp.IsWarmStart {
		t.Error("the retried request reports a warm start")
	}
	if got := n.rt.Stats().Creates; got != 2 {
		t.Errorf("containers created = %d, want 2", got)
	}
}

// TestUnavailableIsRetriedOnlyOnce makes two containers in a row fail
// before the function gets its input: the request fails after one retry,
// and the next request is served.
func TestUnavailableIsRetriedOnlyOnce(t *testing.T) {
	n := setup(t, config{memoryMB: 512, queue: 4})
	f := fn(t, "f", 128)
	for range 2 {
		n.rt.FailNext(fake.OpInvoke, fmt.Errorf("%w: connection refused", container.ErrUnavailable))
	}
	_, err := n.sched.Invoke(context.Background(), req(f, 0))
	if !errors.Is(err, scheduling.ErrContainer) || !errors.Is(err, container.ErrUnavailable) {
		t.Fatalf("request on two failing containers: %v, want ErrContainer wrapping ErrUnavailable", err)
	}
	if _, err := n.sched.Invoke(context.Background(), req(f, 0)); err != nil {
		t.Fatalf("next request: %v; want it served (one retry per request, not more)", err)
	}
}

// TestCrashAfterInputIsNotRetried checks that a function that crashed with
// its input is not run a second time.
func TestCrashAfterInputIsNotRetried(t *testing.T) {
	n := setup(t, config{memoryMB: 512, queue: 4})
	f := fn(t, "f", 128)
	n.rt.FailNext(fake.OpInvoke, fmt.Errorf("%w: out of memory", container.ErrCrashed))
	if _, err := n.sched.Invoke(context.Background(), req(f, 0)); !errors.Is(err, container.ErrCrashed) {
		t.Fatalf("crashed request: %v, want ErrCrashed", err)
	}
	if got := n.rt.Stats().Creates; got != 1 {
		t.Errorf("containers created = %d, want 1 (no retry)", got)
	}
}

// concurrentRequests sends k requests of a function with MaxConcurrency
// slots that block until all k run at once, and returns how many
// containers served them.
func concurrentRequests(t *testing.T, slots, k int) int64 {
	t.Helper()
	n := setup(t, config{memoryMB: 4096, queue: 64, createLatency: 50 * time.Millisecond})
	release := make(chan struct{})
	n.rt.Register("f.block", func(ctx context.Context, _ *fake.Call) (any, error) {
		select {
		case <-release:
			return "ok", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	f := fn(t, "conc", 128)
	f.Handler = "f.block"
	f.MaxConcurrency = slots
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			if _, err := n.sched.Invoke(context.Background(), req(f, 0)); err != nil {
				t.Errorf("request: %v", err)
			}
		})
	}
	testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("%d requests in flight", k), func() bool {
		return n.pool.Stats().InFlight["conc"] == k
	})
	close(release)
	wg.Wait()
	return n.rt.Stats().Creates
}

func TestConcurrencyNRequestsShareOneContainer(t *testing.T) {
	if got := concurrentRequests(t, 4, 4); got != 1 {
		t.Errorf("4 concurrent requests of a MaxConcurrency-4 function used %d containers, want 1", got)
	}
}

func TestConcurrencyNPlusOneRequestsStartASecondContainer(t *testing.T) {
	if got := concurrentRequests(t, 4, 5); got != 2 {
		t.Errorf("5 concurrent requests of a MaxConcurrency-4 function used %d containers, want 2", got)
	}
}

func TestConcurrencyOneKeepsOneRequestPerContainer(t *testing.T) {
	if got := concurrentRequests(t, 1, 3); got != 3 {
		t.Errorf("3 concurrent requests of a MaxConcurrency-1 function used %d containers, want 3", got)
	}
}

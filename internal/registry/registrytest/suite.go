// Package registrytest holds the conformance suite every registry.Registry
// implementation passes, and helpers that start etcd servers for the tests
// of any package.
package registrytest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

// TTL is the lease TTL the suite uses; etcd grants nothing shorter than 2 s
// with its default election timeout.
const TTL = 2 * time.Second

// expiryGrace is how long after a TTL ends an expired key may still be seen:
// etcd checks leases twice a second and keep-alives renew them early.
const expiryGrace = 3 * time.Second

// eventTimeout bounds the wait for one watch event.
const eventTimeout = 5 * time.Second

// Run runs the conformance suite. newRegistry must return an empty registry,
// not shared with any other call; the suite closes it when the subtest ends.
// Subtests run in parallel.
func Run(t *testing.T, newRegistry func(t *testing.T) registry.Registry) {
	tests := []struct {
		name string
		run  func(t *testing.T, r registry.Registry)
	}{
		{"CreateThenExists", testCreateExists},
		{"GetReturnsDefinitionAndCode", testGetReturnsDefinition},
		{"GetLargeCode", testGetLargeCode},
		{"FunctionWithoutCode", testWithoutCode},
		{"CodeSizes", testCodeSizes},
		{"GetUnknown", testGetUnknown},
		{"Update", testUpdate},
		{"UpdateUnknown", testUpdateUnknown},
		{"Delete", testDelete},
		{"ListSorted", testListSorted},
		{"ConcurrentCreate", testConcurrentCreate},
		{"WatchSeesChanges", testWatch},
		{"WatchEndsWithContext", testWatchEnds},
		{"Nodes", testNodes},
		{"NodeLeaseExpiry", testNodeLeaseExpiry},
		{"ResultPendingThenDone", testResultPendingDone},
		{"ResultUnknown", testResultUnknown},
		{"ResultExpiry", testResultExpiry},
		{"PendingNeedsRegisteredNode", testPendingNeedsRegisteredNode},
		{"ResultLostWithNode", testResultLostWithNode},
		{"ResultLostOnDeregister", testResultLostOnDeregister},
		{"NodeIDHeld", testNodeIDHeld},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRegistry(t)
			t.Cleanup(func() {
				if err := r.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.run(t, r)
		})
	}
}

// NewFunction returns a valid python function whose code is the base64 of
// code.
func NewFunction(t testing.TB, name, code string) *function.Function {
	t.Helper()
	f := &function.Function{
		Name:            name,
		Runtime:         function.RuntimePython,
		MemoryMB:        128,
		Handler:         "main.handler",
		TarFunctionCode: base64.StdEncoding.EncodeToString([]byte(code)),
		AllowedZones:    []string{"zone-a"},
	}
	if err := f.Normalize(); err != nil {
		t.Fatalf("Normalize %s: %v", name, err)
	}
	return f
}

func testCreateExists(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	if err := r.CreateFunction(ctx, NewFunction(t, "f", "v1")); err != nil {
		t.Fatalf("first create: %v", err)
	}
	err := r.CreateFunction(ctx, NewFunction(t, "f", "v2"))
	if !errors.Is(err, registry.ErrExists) {
		t.Fatalf("second create: got %v, want ErrExists", err)
	}
	got, err := r.GetFunction(ctx, "f")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if want := NewFunction(t, "f", "v1"); got.Version != want.Version {
		t.Errorf("a failed create replaced the function: version %s, want %s", got.Version, want.Version)
	}
}

func testGetReturnsDefinition(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	want := NewFunction(t, "hello", "print('hi')")
	want.TimeoutSeconds = 30
	want.CPUDemand = 0.5
	if err := want.Normalize(); err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if err := r.CreateFunction(ctx, want); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := r.GetFunction(ctx, "hello")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if def := want.WithoutCode(); !reflect.DeepEqual(got, &def) {
		t.Errorf("get returned\n%+v\nwant the definition without code\n%+v", got, def)
	}
	got.AllowedZones[0] = "changed"
	again, err := r.GetFunction(ctx, "hello")
	if err != nil {
		t.Fatalf("get again: %v", err)
	}
	if again.AllowedZones[0] != "zone-a" {
		t.Errorf("changing a returned function changed the stored one")
	}
	checkCode(t, r, "hello", want.Version, "print('hi')")
	code, err := r.GetCode(ctx, "hello", want.Version)
	if err != nil {
		t.Fatalf("get code: %v", err)
	}
	code[0] = 'X'
	checkCode(t, r, "hello", want.Version, "print('hi')")
}

// checkCode checks that GetCode of name at version returns want.
func checkCode(t *testing.T, r registry.Registry, name, version, want string) {
	t.Helper()
	code, err := r.GetCode(t.Context(), name, version)
	if err != nil {
		t.Fatalf("get code of %s version %s: %v", name, version, err)
	}
	if string(code) != want {
		t.Errorf("code of %s version %s: got %d bytes %.20q, want %d bytes %.20q", name, version, len(code), code, len(want), want)
	}
}

// checkNoCode checks that GetCode of name at version returns ErrNotFound.
func checkNoCode(t *testing.T, r registry.Registry, name, version string) {
	t.Helper()
	if code, err := r.GetCode(t.Context(), name, version); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("get code of %s version %s: got %d bytes, error %v; want ErrNotFound", name, version, len(code), err)
	}
}

func testGetLargeCode(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	// Twice etcd's default request size limit of 1.5 MiB.
	code := LargeCode(3 << 20)
	f := NewFunction(t, "large", code)
	if err := r.CreateFunction(ctx, f); err != nil {
		t.Fatalf("create: %v", err)
	}
	checkCode(t, r, "large", f.Version, code)
	update := NewFunction(t, "large", code[:len(code)/2])
	if err := r.UpdateFunction(ctx, update); err != nil {
		t.Fatalf("update: %v", err)
	}
	got, err := r.GetFunction(ctx, "large")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.TarFunctionCode != "" || got.Version != update.Version {
		t.Errorf("get returned %d bytes of code (version %s), want the updated definition without code (version %s)",
			len(got.TarFunctionCode), got.Version, update.Version)
	}
	checkCode(t, r, "large", update.Version, code[:len(code)/2])
	checkNoCode(t, r, "large", f.Version)
	if err := r.DeleteFunction(ctx, "large"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := r.GetFunction(ctx, "large"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("get after delete: got %v, want ErrNotFound", err)
	}
	checkNoCode(t, r, "large", update.Version)
}

// testCodeSizes round-trips code of every padding of its base64 and of
// sizes around 1 MiB of base64, where stores may cut code into chunks.
func testCodeSizes(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	const mib = 1 << 20
	for _, n := range []int{1, 2, 3, 4, mib/4*3 - 1, mib / 4 * 3, mib/4*3 + 1, mib/4*3 + 2, 2 * mib / 4 * 3} {
		code := LargeCode(n)
		f := NewFunction(t, fmt.Sprintf("size-%d", n), code)
		if err := r.CreateFunction(ctx, f); err != nil {
			t.Fatalf("create with %d bytes of code: %v", n, err)
		}
		checkCode(t, r, f.Name, f.Version, code)
	}
}

func testWithoutCode(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	f := &function.Function{Name: "image", Runtime: function.RuntimeCustom, CustomImage: "example/fn:1"}
	if err := f.Normalize(); err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if err := r.CreateFunction(ctx, f); err != nil {
		t.Fatalf("create: %v", err)
	}
	code, err := r.GetCode(ctx, "image", f.Version)
	if err != nil || len(code) != 0 {
		t.Errorf("get code of a function without code: got %d bytes, error %v; want none", len(code), err)
	}
}

// LargeCode returns n bytes of code, for tests of functions too large for
// one etcd request.
func LargeCode(n int) string {
	return string(bytes.Repeat([]byte("serverledge!"), n/12+1)[:n])
}

func testGetUnknown(t *testing.T, r registry.Registry) {
	_, err := r.GetFunction(t.Context(), "nope")
	if !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	checkNoCode(t, r, "nope", "0123456789abcdef")
}

func testUpdate(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	v1 := NewFunction(t, "f", "v1")
	if err := r.CreateFunction(ctx, v1); err != nil {
		t.Fatalf("create: %v", err)
	}
	v2 := NewFunction(t, "f", "v2")
	if err := r.UpdateFunction(ctx, v2); err != nil {
		t.Fatalf("update: %v", err)
	}
	got, err := r.GetFunction(ctx, "f")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.TarFunctionCode != "" || got.Version != v2.Version {
		t.Errorf("get after update returned code %q version %s, want no code and version %s",
			got.TarFunctionCode, got.Version, v2.Version)
	}
	checkCode(t, r, "f", v2.Version, "v2")
	// The code of a replaced version is gone: it is never served for the new one.
	checkNoCode(t, r, "f", v1.Version)
}

func testUpdateUnknown(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	err := r.UpdateFunction(ctx, NewFunction(t, "ghost", "v1"))
	if !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if _, err := r.GetFunction(ctx, "ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a failed update created the function: get returned %v", err)
	}
}

func testDelete(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	for _, name := range []string{"keep", "drop"} {
		if err := r.CreateFunction(ctx, NewFunction(t, name, name)); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	if err := r.DeleteFunction(ctx, "drop"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := r.GetFunction(ctx, "drop"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("get after delete: got %v, want ErrNotFound", err)
	}
	names, err := r.ListFunctions(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if !reflect.DeepEqual(names, []string{"keep"}) {
		t.Errorf("list after delete: %q, want [keep]", names)
	}
	if err := r.DeleteFunction(ctx, "drop"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second delete: got %v, want ErrNotFound", err)
	}
	if err := r.DeleteFunction(ctx, "never"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("delete unknown: got %v, want ErrNotFound", err)
	}
}

func testListSorted(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	names, err := r.ListFunctions(ctx)
	if err != nil {
		t.Fatalf("list empty: %v", err)
	}
	if names == nil || len(names) != 0 {
		t.Errorf("list of an empty registry: %#v, want an empty non-nil slice", names)
	}
	for _, name := range []string{"b", "a-2", "C", "a", "a.1"} {
		if err := r.CreateFunction(ctx, NewFunction(t, name, name)); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	names, err = r.ListFunctions(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	want := []string{"C", "a", "a-2", "a.1", "b"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("list: %q, want %q", names, want)
	}
}

func testConcurrentCreate(t *testing.T, r registry.Registry) {
	const writers = 8
	fns := make([]*function.Function, writers)
	for i := range fns {
		fns[i] = NewFunction(t, "race", fmt.Sprintf("writer %d", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			errs[i] = r.CreateFunction(t.Context(), fns[i])
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("writers %d and %d both created the function", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, registry.ErrExists):
			t.Errorf("writer %d: got %v, want nil or ErrExists", i, err)
		}
	}
	if won < 0 {
		t.Fatalf("no writer created the function: %v", errs)
	}
	got, err := r.GetFunction(t.Context(), "race")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Version != fns[won].Version {
		t.Errorf("stored function is not the winner's")
	}
}

func testWatch(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	if err := r.CreateFunction(ctx, NewFunction(t, "before", "x")); err != nil {
		t.Fatalf("create before watch: %v", err)
	}
	w1, err := r.WatchFunctions(ctx)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	w2, err := r.WatchFunctions(ctx)
	if err != nil {
		t.Fatalf("second watch: %v", err)
	}
	v1, v2 := NewFunction(t, "f", "v1"), NewFunction(t, "f", "v2")
	if err := r.CreateFunction(ctx, v1); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := r.UpdateFunction(ctx, v2); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := r.DeleteFunction(ctx, "f"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	d1, d2 := v1.WithoutCode(), v2.WithoutCode()
	want := []registry.FunctionEvent{
		{Type: registry.FunctionPut, Name: "f", Function: &d1},
		{Type: registry.FunctionPut, Name: "f", Function: &d2},
		{Type: registry.FunctionDeleted, Name: "f"},
	}
	for i, w := range []<-chan registry.FunctionEvent{w1, w2} {
		for j, we := range want {
			got := nextEvent(t, w)
			if !reflect.DeepEqual(got, we) {
				t.Fatalf("watcher %d, event %d: got %s, want %s", i+1, j+1, describe(got), describe(we))
			}
		}
	}
}

func testWatchEnds(t *testing.T, r registry.Registry) {
	ctx, cancel := context.WithCancel(t.Context())
	w, err := r.WatchFunctions(ctx)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	cancel()
	timeout := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-w:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("watch channel still open %v after its context ended", eventTimeout)
		}
	}
}

func nextEvent(t *testing.T, w <-chan registry.FunctionEvent) registry.FunctionEvent {
	t.Helper()
	select {
	case e, ok := <-w:
		if !ok {
			t.Fatalf("watch channel closed early")
		}
		return e
	case <-time.After(eventTimeout):
		t.Fatalf("no watch event within %v", eventTimeout)
	}
	return registry.FunctionEvent{}
}

func describe(e registry.FunctionEvent) string {
	kind := map[registry.EventType]string{registry.FunctionPut: "put", registry.FunctionDeleted: "delete"}[e.Type]
	if e.Function == nil {
		return fmt.Sprintf("%s %s", kind, e.Name)
	}
	return fmt.Sprintf("%s %s (version %s, %d bytes of code)", kind, e.Name, e.Function.Version, len(e.Function.TarFunctionCode))
}

func testNodes(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	nodes := []registry.NodeInfo{
		{ID: "n2", URL: "http://127.0.0.1:2", Area: "zone-a"},
		{ID: "n1", URL: "http://127.0.0.1:1", Area: "zone-a"},
		{ID: "c1", URL: "http://127.0.0.1:3", Area: "region/1", Cloud: true},
	}
	for _, n := range nodes {
		if err := r.RegisterNode(ctx, n, time.Minute); err != nil {
			t.Fatalf("register %s: %v", n.ID, err)
		}
	}
	checkIDs(t, r, "zone-a", "n1", "n2")
	checkIDs(t, r, "region/1", "c1")
	checkIDs(t, r, "", "c1", "n1", "n2")
	checkIDs(t, r, "zone") // A prefix of an area's name is not the area.

	all, err := r.ListNodes(ctx, "")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if all[0].URL != "http://127.0.0.1:3" || !all[0].Cloud || all[0].Updated.IsZero() {
		t.Errorf("listed %+v, want the registered record with Updated set", all[0])
	}

	updated := registry.NodeInfo{ID: "n1", URL: "http://127.0.0.1:1", Area: "zone-a",
		Status: &wire.StatusResponse{AvailableMemMB: 512}}
	if err := r.UpdateNode(ctx, updated); err != nil {
		t.Fatalf("update: %v", err)
	}
	got, err := r.ListNodes(ctx, "zone-a")
	if err != nil {
		t.Fatalf("list after update: %v", err)
	}
	if got[0].ID != "n1" || got[0].Status == nil || got[0].Status.AvailableMemMB != 512 {
		t.Errorf("after update listed %+v, want n1 with its new status", got[0])
	}
	if err := r.UpdateNode(ctx, registry.NodeInfo{ID: "stranger", Area: "zone-a"}); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("update of an unregistered node: got %v, want ErrNotFound", err)
	}
	checkIDs(t, r, "zone-a", "n1", "n2")

	moved := updated
	moved.Area = "zone-b"
	if err := r.UpdateNode(ctx, moved); err != nil {
		t.Fatalf("update to another area: %v", err)
	}
	checkIDs(t, r, "zone-a", "n2")
	checkIDs(t, r, "zone-b", "n1")

	if err := r.DeregisterNode(ctx, "n2"); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	checkIDs(t, r, "", "c1", "n1")
	if err := r.DeregisterNode(ctx, "n2"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second deregister: got %v, want ErrNotFound", err)
	}
	if err := r.UpdateNode(ctx, nodes[0]); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("update after deregister: got %v, want ErrNotFound", err)
	}
	checkIDs(t, r, "", "c1", "n1")
}

func checkIDs(t *testing.T, r registry.Registry, area string, want ...string) {
	t.Helper()
	nodes, err := r.ListNodes(t.Context(), area)
	if err != nil {
		t.Fatalf("list %q: %v", area, err)
	}
	got := make([]string, 0, len(nodes))
	for _, n := range nodes {
		got = append(got, n.ID)
	}
	if want == nil {
		want = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nodes of area %q: %q, want %q", area, got, want)
	}
}

func testNodeLeaseExpiry(t *testing.T, r registry.Registry) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := registry.NodeInfo{ID: "mortal", URL: "http://127.0.0.1:9", Area: "zone-a"}
	if err := r.RegisterNode(ctx, n, TTL); err != nil {
		t.Fatalf("register: %v", err)
	}
	time.Sleep(TTL + TTL/2)
	checkIDs(t, r, "zone-a", "mortal")

	// Ending the registering context is what a crash looks like: the record
	// stays until its lease expires.
	cancel()
	checkIDs(t, r, "zone-a", "mortal")
	testutil.WaitUntil(t, TTL+expiryGrace, "node record expires", func() bool {
		nodes, err := r.ListNodes(t.Context(), "zone-a")
		return err == nil && len(nodes) == 0
	})
	if err := r.UpdateNode(t.Context(), n); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("update of an expired node: got %v, want ErrNotFound", err)
	}
}

// registerRunner registers the node that accepts the suite's async
// requests, kept alive while ctx lives.
func registerRunner(t *testing.T, ctx context.Context, r registry.Registry, id string, ttl time.Duration) {
	t.Helper()
	n := registry.NodeInfo{ID: id, URL: "http://127.0.0.1:7", Area: "zone-a"}
	if err := r.RegisterNode(ctx, n, ttl); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

func testResultPendingDone(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	registerRunner(t, ctx, r, "runner", time.Minute)
	if err := r.PutPending(ctx, "req-1", "runner", time.Minute); err != nil {
		t.Fatalf("put pending: %v", err)
	}
	res, err := r.GetResult(ctx, "req-1")
	if err != nil || res.State != registry.ResultPending || res.Response != nil || res.Node != "runner" {
		t.Fatalf("get pending: %+v, error %v; want pending on runner", res, err)
	}
	if err := r.PutPending(ctx, "req-1", "runner", time.Minute); !errors.Is(err, registry.ErrExists) {
		t.Errorf("second put pending: got %v, want ErrExists", err)
	}
	want := &wire.InvocationResponse{Success: true, Result: `{"x":1}`, ResponseTime: 0.25, Duration: 0.1,
		IsWarmStart: true, ReqID: "req-1", Output: "hello\n"}
	if err := r.PutResult(ctx, "req-1", want, time.Minute); err != nil {
		t.Fatalf("put result: %v", err)
	}
	res, err = r.GetResult(ctx, "req-1")
	if err != nil || res.State != registry.ResultDone {
		t.Fatalf("get done: %+v, error %v; want done, nil", res, err)
	}
	if !reflect.DeepEqual(res.Response, want) {
		t.Errorf("get done returned %+v, want %+v", res.Response, want)
	}
	if err := r.PutPending(ctx, "req-1", "runner", time.Minute); !errors.Is(err, registry.ErrExists) {
		t.Errorf("put pending over a result: got %v, want ErrExists", err)
	}
	if res, err := r.GetResult(ctx, "req-1"); err != nil || res.State != registry.ResultDone {
		t.Errorf("a refused put pending changed the result: %+v, error %v", res, err)
	}
}

func testResultUnknown(t *testing.T, r registry.Registry) {
	res, err := r.GetResult(t.Context(), "no-such-request")
	if !errors.Is(err, registry.ErrNotFound) || res.Response != nil {
		t.Fatalf("got %+v, error %v; want nothing, ErrNotFound", res, err)
	}
}

func testResultExpiry(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	registerRunner(t, ctx, r, "runner", time.Minute)
	if err := r.PutPending(ctx, "pending", "runner", TTL); err != nil {
		t.Fatalf("put pending: %v", err)
	}
	if err := r.PutResult(ctx, "done", &wire.InvocationResponse{Success: true}, TTL); err != nil {
		t.Fatalf("put result: %v", err)
	}
	for _, id := range []string{"pending", "done"} {
		if _, err := r.GetResult(ctx, id); err != nil {
			t.Fatalf("get %s right after put: %v", id, err)
		}
	}
	testutil.WaitUntil(t, TTL+expiryGrace, "results expire", func() bool {
		_, errP := r.GetResult(ctx, "pending")
		_, errD := r.GetResult(ctx, "done")
		return errors.Is(errP, registry.ErrNotFound) && errors.Is(errD, registry.ErrNotFound)
	})
}

func testPendingNeedsRegisteredNode(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	if err := r.PutPending(ctx, "orphan", "nobody", time.Minute); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("put pending for an unregistered node: got %v, want ErrNotFound", err)
	}
	if _, err := r.GetResult(ctx, "orphan"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a refused put pending left a record: %v", err)
	}
}

// testResultLostWithNode checks that a pending request is reported lost,
// naming its node, once the node's registration expires (what a crash
// looks like), and that a late result still replaces it.
func testResultLostWithNode(t *testing.T, r registry.Registry) {
	nodeCtx, crash := context.WithCancel(t.Context())
	defer crash()
	registerRunner(t, nodeCtx, r, "mortal-runner", TTL)
	ctx := t.Context()
	if err := r.PutPending(ctx, "req-lost", "mortal-runner", time.Minute); err != nil {
		t.Fatalf("put pending: %v", err)
	}
	if res, err := r.GetResult(ctx, "req-lost"); err != nil || res.State != registry.ResultPending {
		t.Fatalf("get while the node lives: %+v, %v; want pending", res, err)
	}
	crash()
	testutil.WaitUntil(t, TTL+expiryGrace, "pending request reported lost", func() bool {
		res, err := r.GetResult(ctx, "req-lost")
		return err == nil && res.State == registry.ResultLost
	})
	res, err := r.GetResult(ctx, "req-lost")
	if err != nil || res.Node != "mortal-runner" {
		t.Fatalf("lost result %+v, %v; want it to name mortal-runner", res, err)
	}
	// The node restarts under the same id: the old request stays lost.
	registerRunner(t, ctx, r, "mortal-runner", time.Minute)
	if res, err := r.GetResult(ctx, "req-lost"); err != nil || res.State != registry.ResultLost {
		t.Errorf("after the node re-registered: %+v, %v; want still lost", res, err)
	}
	if err := r.PutResult(ctx, "req-lost", &wire.InvocationResponse{Success: true}, time.Minute); err != nil {
		t.Fatalf("late put result: %v", err)
	}
	if res, err := r.GetResult(ctx, "req-lost"); err != nil || res.State != registry.ResultDone {
		t.Errorf("after a late result: %+v, %v; want done", res, err)
	}
}

// testResultLostOnDeregister checks that a node deregistered with a request
// still pending (a shutdown that could not wait for it) has it reported
// lost at once.
func testResultLostOnDeregister(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	registerRunner(t, ctx, r, "leaving", time.Minute)
	if err := r.PutPending(ctx, "req-left", "leaving", time.Minute); err != nil {
		t.Fatalf("put pending: %v", err)
	}
	if err := r.DeregisterNode(ctx, "leaving"); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if res, err := r.GetResult(ctx, "req-left"); err != nil || res.State != registry.ResultLost || res.Node != "leaving" {
		t.Errorf("after deregister: %+v, %v; want lost on leaving", res, err)
	}
}

// testNodeIDHeld checks that a live registration holds its id: a second
// registration of the id changes nothing and names the holder.
func testNodeIDHeld(t *testing.T, r registry.Registry) {
	ctx := t.Context()
	first := registry.NodeInfo{ID: "twin", URL: "http://127.0.0.1:11", Area: "zone-a"}
	if err := r.RegisterNode(ctx, first, time.Minute); err != nil {
		t.Fatalf("register: %v", err)
	}
	second := registry.NodeInfo{ID: "twin", URL: "http://127.0.0.1:12", Area: "zone-b"}
	err := r.RegisterNode(ctx, second, time.Minute)
	if !errors.Is(err, registry.ErrExists) {
		t.Fatalf("second register: got %v, want ErrExists", err)
	}
	nodes, lerr := r.ListNodes(ctx, "")
	if lerr != nil || len(nodes) != 1 || nodes[0].URL != first.URL {
		t.Fatalf("after a refused register listed %+v (%v), want only the first", nodes, lerr)
	}
	if err := r.DeregisterNode(ctx, "twin"); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if err := r.RegisterNode(ctx, second, time.Minute); err != nil {
		t.Fatalf("register after deregister: %v", err)
	}
	checkIDs(t, r, "zone-b", "twin")
}

// UniquePrefix returns an etcd key prefix no other test uses, so that tests
// can share one etcd server.
func UniquePrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/test/%s-%d", name, time.Now().UnixNano())
}

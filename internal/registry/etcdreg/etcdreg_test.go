package etcdreg_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/etcdreg"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

// servers are the etcd servers every test runs against: the same test body
// against an embedded server and an external process.
var servers = []struct {
	name  string
	start func(testing.TB) []string
}{
	{"embedded", registrytest.StartEmbeddedEtcd},
	{"external", registrytest.StartExternalEtcd},
}

// forEachServer runs body against each server, in parallel.
func forEachServer(t *testing.T, body func(t *testing.T, endpoints []string)) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			body(t, srv.start(t))
		})
	}
}

func newRegistry(t *testing.T, endpoints []string) *etcdreg.Registry {
	t.Helper()
	return openRegistry(t, endpoints, registrytest.UniquePrefix(t))
}

func openRegistry(t *testing.T, endpoints []string, prefix string) *etcdreg.Registry {
	t.Helper()
	r, err := etcdreg.New(t.Context(), etcdreg.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestConformance(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		registrytest.Run(t, func(t *testing.T) registry.Registry { return newRegistry(t, endpoints) })
	})
}

func TestNewFailsWhenEtcdDoesNotAnswer(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := etcdreg.New(t.Context(), etcdreg.Config{
		Endpoints:   []string{"http://127.0.0.1:1"},
		DialTimeout: 500 * time.Millisecond,
	})
	if err == nil {
		t.Fatal("New succeeded with nothing listening")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q does not name the endpoint", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("New took %v to fail with a 500ms dial timeout", elapsed)
	}
}

// TestLargestFunction is not parallel: moving 16 MiB through etcd takes
// enough CPU to upset the lease timing of the other tests.
func TestLargestFunction(t *testing.T) {
	forEachServer(t, func(t *testing.T, endpoints []string) {
		r := newRegistry(t, endpoints)
		code := registrytest.LargeCode(function.MaxCodeBytes)
		f := registrytest.NewFunction(t, "largest", code)
		if err := r.CreateFunction(t.Context(), f); err != nil {
			t.Fatalf("create: %v", err)
		}
		got, err := r.GetCode(t.Context(), "largest", f.Version)
		if err != nil {
			t.Fatalf("get code: %v", err)
		}
		if string(got) != code {
			t.Errorf("got %d bytes of code, want %d", len(got), len(code))
		}
	})
}

// TestWatchDeliversDefinitionsOnly checks that neither the watch nor the
// stored record carries code: a watch event is as small as the definition,
// whatever the size of the code.
func TestWatchDeliversDefinitionsOnly(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		prefix := registrytest.UniquePrefix(t)
		r := openRegistry(t, endpoints, prefix)
		w, err := r.WatchFunctions(t.Context())
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, size := range []int{100, 3 << 20} {
			f := registrytest.NewFunction(t, fmt.Sprintf("f%d", size), registrytest.LargeCode(size))
			if err := r.CreateFunction(t.Context(), f); err != nil {
				t.Fatalf("create: %v", err)
			}
			select {
			case e := <-w:
				if e.Type != registry.FunctionPut || e.Function == nil || e.Function.Version != f.Version {
					t.Fatalf("event %v %s, want the put of %s", e.Type, e.Name, f.Name)
				}
				if e.Function.TarFunctionCode != "" {
					t.Errorf("event of %s carries %d bytes of code, want none", f.Name, len(e.Function.TarFunctionCode))
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no watch event")
			}
			resp, err := r.Client().Get(t.Context(), prefix+"/functions/"+f.Name)
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("get record: %v", err)
			}
			if v := resp.Kvs[0].Value; len(v) > 1024 || strings.Contains(string(v), "TarFunctionCode") {
				t.Errorf("record of %s is %d bytes and holds code: %.200s", f.Name, len(v), v)
			}
		}
	})
}

// TestReadsOlderRecords reads the two layouts earlier versions wrote: the
// base64 code inline in the record, and base64 chunks.
func TestReadsOlderRecords(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		prefix := registrytest.UniquePrefix(t)
		r := openRegistry(t, endpoints, prefix)
		inline := registrytest.NewFunction(t, "inline", "inline code")
		chunked := registrytest.NewFunction(t, "chunked", registrytest.LargeCode(1<<20))
		put := func(key string, value any) {
			t.Helper()
			b, ok := value.([]byte)
			if !ok {
				var err error
				if b, err = json.Marshal(value); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := r.Client().Put(t.Context(), key, string(b)); err != nil {
				t.Fatalf("put %s: %v", key, err)
			}
		}
		w, err := r.WatchFunctions(t.Context())
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		put(prefix+"/functions/inline", inline)
		// Earlier versions cut the base64 into chunks of 1 MiB and recorded no size.
		b64 := chunked.TarFunctionCode
		put(prefix+"/code/chunked/old/000000", []byte(b64[:1<<20]))
		put(prefix+"/code/chunked/old/000001", []byte(b64[1<<20:]))
		rec := map[string]any{"Name": "chunked", "Runtime": chunked.Runtime, "MemoryMB": chunked.MemoryMB,
			"Handler": chunked.Handler, "Version": chunked.Version, "CodeID": "old", "CodeChunks": 2}
		put(prefix+"/functions/chunked", rec)

		for _, f := range []*function.Function{inline, chunked} {
			select {
			case e := <-w:
				if e.Name != f.Name || e.Function == nil || e.Function.TarFunctionCode != "" {
					t.Errorf("event %s: want the put of %s without code", describeEvent(e), f.Name)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no watch event for %s", f.Name)
			}
			got, err := r.GetFunction(t.Context(), f.Name)
			if err != nil || got.TarFunctionCode != "" || got.Version != f.Version {
				t.Errorf("get %s: %+v, %v; want version %s without code", f.Name, got, err, f.Version)
			}
			want, _ := f.Code()
			code, err := r.GetCode(t.Context(), f.Name, f.Version)
			if err != nil || !bytes.Equal(code, want) {
				t.Errorf("get code of %s: %d bytes, %v; want %d bytes", f.Name, len(code), err, len(want))
			}
		}
		// Replacing an older chunked record drops its chunks.
		if err := r.UpdateFunction(t.Context(), registrytest.NewFunction(t, "chunked", "new")); err != nil {
			t.Fatalf("update: %v", err)
		}
		if resp, err := r.Client().Get(t.Context(), prefix+"/code/chunked/old/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
			t.Errorf("old chunks after update: %v, %v; want none", resp, err)
		}
	})
}

func describeEvent(e registry.FunctionEvent) string {
	if e.Function == nil {
		return fmt.Sprintf("%v %s", e.Type, e.Name)
	}
	return fmt.Sprintf("%v %s (version %s, %d bytes of code)", e.Type, e.Name, e.Function.Version, len(e.Function.TarFunctionCode))
}

func TestPrefixesAreIsolated(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		a, b := newRegistry(t, endpoints), newRegistry(t, endpoints)
		if err := a.CreateFunction(t.Context(), registrytest.NewFunction(t, "f", "a")); err != nil {
			t.Fatalf("create in a: %v", err)
		}
		if _, err := b.GetFunction(t.Context(), "f"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("registry b sees registry a's function: %v", err)
		}
		if err := b.CreateFunction(t.Context(), registrytest.NewFunction(t, "f", "b")); err != nil {
			t.Errorf("create of the same name under another prefix: %v", err)
		}
	})
}

func TestNodeRegisteredAgainAfterLeaseLoss(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		prefix := registrytest.UniquePrefix(t)
		r := openRegistry(t, endpoints, prefix)
		n := registry.NodeInfo{ID: "n1", URL: "http://127.0.0.1:1", Area: "zone-a"}
		if err := r.RegisterNode(t.Context(), n, registrytest.TTL); err != nil {
			t.Fatalf("register: %v", err)
		}
		// Revoke the lease behind the registry's back, as etcd does when it
		// has not heard from the node for a TTL.
		lease := onlyLease(t, r, prefix+"/nodes/")
		if _, err := r.Client().Revoke(t.Context(), lease); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		testutil.WaitUntil(t, 10*time.Second, "node registered again", func() bool {
			nodes, err := r.ListNodes(t.Context(), "zone-a")
			return err == nil && len(nodes) == 1 && nodes[0].ID == "n1"
		})
		if got := onlyLease(t, r, prefix+"/nodes/"); got == lease {
			t.Errorf("node record still under the revoked lease %x", lease)
		}
		// The new lease is kept alive too.
		time.Sleep(registrytest.TTL + time.Second)
		if nodes, err := r.ListNodes(t.Context(), "zone-a"); err != nil || len(nodes) != 1 {
			t.Errorf("after one more TTL: nodes %v, error %v; want n1", nodes, err)
		}
	})
}

func TestUpdateNodeAfterLeaseLoss(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		prefix := registrytest.UniquePrefix(t)
		r := openRegistry(t, endpoints, prefix)
		n := registry.NodeInfo{ID: "n1", URL: "http://127.0.0.1:1", Area: "zone-a"}
		if err := r.RegisterNode(t.Context(), n, time.Minute); err != nil {
			t.Fatalf("register: %v", err)
		}
		if _, err := r.Client().Revoke(t.Context(), onlyLease(t, r, prefix+"/nodes/")); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		n.URL = "http://127.0.0.1:2"
		if err := r.UpdateNode(t.Context(), n); err != nil {
			t.Fatalf("update after the lease was revoked: %v", err)
		}
		nodes, err := r.ListNodes(t.Context(), "zone-a")
		if err != nil || len(nodes) != 1 || nodes[0].URL != n.URL {
			t.Errorf("nodes %v, error %v; want n1 with the new URL", nodes, err)
		}
	})
}

func TestDeregisterNodeOfAnotherClient(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		prefix := registrytest.UniquePrefix(t)
		owner, admin := openRegistry(t, endpoints, prefix), openRegistry(t, endpoints, prefix)
		n := registry.NodeInfo{ID: "n1", URL: "http://127.0.0.1:1", Area: "zone-a"}
		if err := owner.RegisterNode(t.Context(), n, time.Minute); err != nil {
			t.Fatalf("register: %v", err)
		}
		if err := admin.DeregisterNode(t.Context(), "n1"); err != nil {
			t.Fatalf("deregister from another client: %v", err)
		}
		if nodes, err := owner.ListNodes(t.Context(), ""); err != nil || len(nodes) != 0 {
			t.Errorf("nodes %v, error %v; want none", nodes, err)
		}
	})
}

// TestNodeIDHeldAcrossClients checks what two node processes sharing an
// etcd see: the second to register an id is refused with the first's URL,
// and the first's pending requests are reported lost by the second once the
// first stops renewing its lease.
func TestNodeIDHeldAcrossClients(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		prefix := registrytest.UniquePrefix(t)
		live, dup := openRegistry(t, endpoints, prefix), openRegistry(t, endpoints, prefix)
		n := registry.NodeInfo{ID: "n1", URL: "http://127.0.0.1:1", Area: "zone-a"}
		if err := live.RegisterNode(t.Context(), n, registrytest.TTL); err != nil {
			t.Fatalf("register: %v", err)
		}
		err := dup.RegisterNode(t.Context(), registry.NodeInfo{ID: "n1", URL: "http://127.0.0.1:2", Area: "zone-b"}, registrytest.TTL)
		if !errors.Is(err, registry.ErrExists) || !strings.Contains(err.Error(), n.URL) {
			t.Fatalf("duplicate register: got %v, want ErrExists naming %s", err, n.URL)
		}
		if err := dup.PutPending(t.Context(), "req", "n1", time.Minute); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("put pending through a registry that does not hold the node: got %v, want ErrNotFound", err)
		}
		if err := live.PutPending(t.Context(), "req", "n1", time.Minute); err != nil {
			t.Fatalf("put pending: %v", err)
		}
		if res, err := dup.GetResult(t.Context(), "req"); err != nil || res.State != registry.ResultPending {
			t.Fatalf("get from the other client: %+v, %v; want pending", res, err)
		}
		// Close stops the keep-alive without deregistering, as a crash does.
		live.Close()
		testutil.WaitUntil(t, 10*time.Second, "pending request reported lost", func() bool {
			res, err := dup.GetResult(t.Context(), "req")
			return err == nil && res.State == registry.ResultLost && res.Node == "n1"
		})
		if err := dup.RegisterNode(t.Context(), n, registrytest.TTL); err != nil {
			t.Errorf("register after the holder's lease expired: %v", err)
		}
	})
}

func TestResultsShareLeases(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		prefix := registrytest.UniquePrefix(t)
		r := openRegistry(t, endpoints, prefix)
		const ttl = 10 * time.Minute
		runner := registry.NodeInfo{ID: "runner", URL: "http://127.0.0.1:1", Area: "zone-a"}
		if err := r.RegisterNode(t.Context(), runner, time.Minute); err != nil {
			t.Fatalf("register: %v", err)
		}
		for _, id := range []string{"a", "b", "c"} {
			if err := r.PutPending(t.Context(), id, "runner", ttl); err != nil {
				t.Fatalf("put pending %s: %v", id, err)
			}
		}
		if err := r.PutResult(t.Context(), "a", &wire.InvocationResponse{Success: true}, ttl); err != nil {
			t.Fatalf("put result: %v", err)
		}
		leases := leasesUnder(t, r, prefix+"/results/")
		if len(leases) != 1 {
			t.Fatalf("4 result writes in a row use %d leases, want 1", len(leases))
		}
		ttlResp, err := r.Client().TimeToLive(t.Context(), leases[0])
		if err != nil {
			t.Fatalf("time to live: %v", err)
		}
		// A shared lease outlives each result's TTL by at most 10 s.
		if got := time.Duration(ttlResp.TTL) * time.Second; got < ttl-time.Second || got > ttl+10*time.Second {
			t.Errorf("shared lease has %v left, want between %v and %v", got, ttl, ttl+10*time.Second)
		}
	})
}

func TestClosedRegistry(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, endpoints []string) {
		r := newRegistry(t, endpoints)
		w, err := r.WatchFunctions(context.Background())
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		select {
		case _, ok := <-w:
			if ok {
				t.Errorf("watch delivered an event after Close")
			}
		case <-time.After(5 * time.Second):
			t.Errorf("watch channel still open after Close")
		}
		if _, err := r.ListFunctions(t.Context()); !errors.Is(err, etcdreg.ErrClosed) {
			t.Errorf("list after close: got %v, want ErrClosed", err)
		}
	})
}

// leasesUnder returns the distinct leases of the keys under prefix.
func leasesUnder(t *testing.T, r *etcdreg.Registry, prefix string) []clientv3.LeaseID {
	t.Helper()
	resp, err := r.Client().Get(t.Context(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get %s: %v", prefix, err)
	}
	var leases []clientv3.LeaseID
	for _, kv := range resp.Kvs {
		if id := clientv3.LeaseID(kv.Lease); !slices.Contains(leases, id) {
			leases = append(leases, id)
		}
	}
	return leases
}

// onlyLease returns the lease of the one key under prefix.
func onlyLease(t *testing.T, r *etcdreg.Registry, prefix string) clientv3.LeaseID {
	t.Helper()
	leases := leasesUnder(t, r, prefix)
	if len(leases) != 1 {
		t.Fatalf("keys under %s have leases %v, want one", prefix, leases)
	}
	return leases[0]
}

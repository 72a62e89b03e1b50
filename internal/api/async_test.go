package api_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/etcdreg"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/spool"
	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

// outage is how long etcd stays down while async requests complete: longer
// than the ~5 s after which results used to be lost.
const outage = 6 * time.Second

// TestAsyncResultsSurviveEtcdOutage stops a real etcd while async requests
// run: their results are spooled, /poll on the node answers from the spool
// meanwhile, and once etcd is back every result reaches the registry, where
// another node finds it.
func TestAsyncResultsSurviveEtcdOutage(t *testing.T) {
	etcd := registrytest.StartEtcdProcess(t)
	prefix := registrytest.UniquePrefix(t)
	open := func() *etcdreg.Registry {
		r, err := etcdreg.New(t.Context(), etcdreg.Config{Endpoints: etcd.Endpoints(), Prefix: prefix,
			RequestTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	reg, other := open(), open()
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), MaxBytes: 1 << 20, Deliver: api.DeliverSpooled(reg),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sp.Run(ctx)
	n := newTestNode(t, nodeOpts{reg: reg, configure: func(c *api.Config) { c.Spool = sp }})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.sleep")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	var ids []string
	for i := range 3 {
		code, body := n.do(t, "POST", "/invoke/hello", map[string]any{"Async": true, "Params": map[string]any{"ms": 500 + 100*i}})
		if code != 200 {
			t.Fatalf("async invoke: %d %s", code, body)
		}
		ids = append(ids, decode[wire.AsyncResponse](t, body).ReqID)
	}

	// A cold start reads the function's code from etcd (then from the
	// node's code cache): the outage begins once the code was loaded.
	testutil.WaitUntil(t, 30*time.Second, "the function's code loaded", func() bool {
		return n.rt.Stats().Loads > 0
	})
	etcd.Stop()
	down := time.Now()
	testutil.WaitUntil(t, 30*time.Second, "every result spooled while etcd is down", func() bool {
		return sp.Len() == len(ids)
	})
	for _, id := range ids {
		code, body := n.do(t, "GET", "/poll/"+id, nil)
		if r := decode[wire.InvocationResponse](t, body); code != 200 || !r.Success {
			t.Errorf("poll %s on the node while etcd is down: %d %s; want the spooled result", id, code, body)
		}
	}
	// The outage itself is the scenario: it must outlast the old ~5 s.
	time.Sleep(time.Until(down.Add(outage)))
	etcd.Start()

	testutil.WaitUntil(t, 30*time.Second, "spool delivered once etcd is back", func() bool {
		return sp.Len() == 0
	})
	// The other client's connection may still be in its reconnect backoff
	// after the outage: like a polling user, it asks again until it answers.
	for _, id := range ids {
		var res registry.Result
		var err error
		testutil.WaitUntil(t, 30*time.Second, "another node reaches etcd again", func() bool {
			res, err = other.GetResult(t.Context(), id)
			return err == nil
		})
		if res.State != registry.ResultDone || !res.Response.Success {
			t.Errorf("result %s seen by another node after the outage: %+v; want done", id, res)
		}
	}
}

// TestPollReportsStoppedNode checks that a request whose node's
// registration ended before it finished is reported as failed, naming the
// node, instead of running forever.
func TestPollReportsStoppedNode(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.sleep")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body := n.do(t, "POST", "/invoke/hello", map[string]any{"Async": true, "Params": map[string]any{"ms": 3000}})
	if code != 200 {
		t.Fatalf("async invoke: %d %s", code, body)
	}
	id := decode[wire.AsyncResponse](t, body).ReqID
	if err := n.reg.DeregisterNode(t.Context(), "api-test"); err != nil {
		t.Fatal(err)
	}
	code, body = n.do(t, "GET", "/poll/"+id, nil)
	r := decode[wire.InvocationResponse](t, body)
	if code != 200 || r.Success || r.Error != "node api-test stopped before the request finished" {
		t.Errorf("poll after the node stopped: %d %s; want 200, Success false and the node named", code, body)
	}
}

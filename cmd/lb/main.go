// Command lb is the cloud load balancer: the entry point of a cloud region.
// It discovers the region's cloud nodes from the registry and reverse-proxies
// every request to the one with the most free memory, so edge nodes can
// offload vertically to a single address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/httplimit"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/etcdreg"
)

func main() {
	etcdAddr := flag.String("etcd.address", "127.0.0.1:2379", "comma-separated etcd endpoints")
	area := flag.String("registry.area", "default", "the cloud region served")
	ip := flag.String("api.ip", "127.0.0.1", "listen address")
	port := flag.Int("api.port", 1324, "listen port")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, strings.Split(*etcdAddr, ","), *area, net.JoinHostPort(*ip, strconv.Itoa(*port))); err != nil {
		log.Error("lb stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, endpoints []string, area, addr string) error {
	reg, err := etcdreg.New(ctx, etcdreg.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer reg.Close()
	b := &balancer{reg: reg, area: area, log: log}
	b.refresh(ctx)
	go b.refreshLoop(ctx)

	proxy := &httputil.ReverseProxy{
		Transport: httplimit.NewTransport(),
		Rewrite: func(r *httputil.ProxyRequest) {
			target := r.In.Context().Value(targetKey{}).(*url.URL)
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "cloud node unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}
	srv := newServer(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, ok := b.pick()
		if !ok {
			http.Error(w, "no cloud node available in region "+area, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
	}), serverTimeouts)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("load balancer ready", "addr", addr, "region", area)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

type targetKey struct{}

// serverTimeouts are the load balancer's HTTP server limits.
var serverTimeouts = httplimit.Timeouts{
	ReadHeader:     10 * time.Second,
	Read:           60 * time.Second,
	Write:          90 * time.Second,
	Idle:           120 * time.Second,
	MaxHeaderBytes: 64 << 10,
}

// longRequestTimeout bounds a proxied synchronous invocation or prewarm:
// the longest function timeout plus room for queueing and a cold start on
// the cloud node.
const longRequestTimeout = function.MaxTimeoutSeconds*time.Second + 5*time.Minute

// newServer returns the load balancer's server: every request is bounded by
// the write timeout, except invocations and prewarms, which may take up to
// longRequestTimeout once their body is read.
func newServer(addr string, proxy http.Handler, t httplimit.Timeouts) *http.Server {
	long := httplimit.Extend(longRequestTimeout)(bounded(longRequestTimeout, proxy))
	short := bounded(t.Write, proxy)
	srv := &http.Server{
		Addr: addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/invoke/") || r.URL.Path == "/prewarm" {
				long.ServeHTTP(w, r)
				return
			}
			short.ServeHTTP(w, r)
		}),
	}
	t.Apply(srv)
	return srv
}

// bounded ends the proxied request d after it started, so that a cloud
// node that never answers does not hold the client's connection.
func bounded(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// balancer keeps the region's cloud nodes and their last advertised load.
type balancer struct {
	reg  registry.Registry
	area string
	log  *slog.Logger

	mu    sync.Mutex
	nodes []registry.NodeInfo
	next  int
}

func (b *balancer) refreshLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.refresh(ctx)
		}
	}
}

func (b *balancer) refresh(ctx context.Context) {
	nodes, err := b.reg.ListNodes(ctx, b.area)
	if err != nil {
		b.log.Warn("listing cloud nodes", "err", err)
		return
	}
	cloud := nodes[:0]
	for _, n := range nodes {
		if n.Cloud {
			cloud = append(cloud, n)
		}
	}
	b.mu.Lock()
	b.nodes = cloud
	b.mu.Unlock()
}

// pick returns the node with the most free pool memory, rotating among ties.
func (b *balancer) pick() (*url.URL, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.nodes) == 0 {
		return nil, false
	}
	best := -1
	var bestFree int64 = -1
	for i := range b.nodes {
		n := b.nodes[(b.next+i)%len(b.nodes)]
		var free int64
		if n.Status != nil {
			free = n.Status.AvailableMemMB
		}
		if free > bestFree {
			best, bestFree = (b.next+i)%len(b.nodes), free
		}
	}
	b.next++
	u, err := url.Parse(b.nodes[best].URL)
	if err != nil {
		return nil, false
	}
	return u, true
}

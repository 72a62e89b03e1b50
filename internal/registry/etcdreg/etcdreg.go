// Package etcdreg implements registry.Registry on etcd.
//
// Layout under the prefix (default /serverledge):
//
//	<prefix>/functions/<name>      JSON function.Function, code included
//	<prefix>/nodes/<area>/<id>     JSON registry.NodeInfo under the node's lease
//	<prefix>/nodeids/<id>          JSON claim of the id (instance, URL) under the same lease
//	<prefix>/results/<reqID>       JSON result record under a TTL lease
//
// Area and id are path-escaped in keys. Every create, update and delete of a
// function is a single transaction, so concurrent writers cannot both win.
package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/internal/zapslog"
)

// Defaults used when a Config field is empty.
const (
	// DefaultPrefix is the root of every key the registry writes.
	DefaultPrefix = "/serverledge"
	// DefaultDialTimeout bounds New's first round trip to etcd.
	DefaultDialTimeout = 5 * time.Second
	// DefaultRequestTimeout bounds one request when ctx has no earlier deadline.
	DefaultRequestTimeout = 5 * time.Second
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("registry closed")

// Config configures a Registry.
type Config struct {
	// Endpoints are the etcd client URLs, e.g. http://127.0.0.1:2379.
	Endpoints []string
	// DialTimeout bounds New's check that etcd answers; default DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds every request, so that an unreachable etcd fails
	// calls instead of blocking them; default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Prefix is the root of every key; default DefaultPrefix.
	Prefix string
	// Logger receives the registry's and the etcd client's logs; default slog.Default().
	Logger *slog.Logger
}

// Registry is a registry.Registry backed by etcd. It is safe for concurrent use.
type Registry struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger

	// ctx ends on Close and stops every background goroutine.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	nodes  map[string]*nodeReg

	// leaseMu guards leases, the shared result leases by TTL in seconds.
	leaseMu sync.Mutex
	leases  map[int64]resultLease
}

var _ registry.Registry = (*Registry)(nil)

// New connects to etcd and checks, within cfg.DialTimeout, that it answers.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd registry: no endpoints configured")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "registry")
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// Failed calls are logged by the client before they are retried or
		// returned; the registry reports them itself.
		Logger: zapslog.New(cfg.Logger.With("component", "etcd-client"), slog.LevelWarn, "retrying of unary invoker failed"),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd registry: client for %v: %w", cfg.Endpoints, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pingCtx, cfg.Prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd registry: etcd at %s does not answer: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	bg, stop := context.WithCancel(context.Background())
	return &Registry{
		cli:     cli,
		prefix:  strings.TrimSuffix(cfg.Prefix, "/"),
		timeout: cfg.RequestTimeout,
		log:     log,
		ctx:     bg,
		cancel:  stop,
		nodes:   make(map[string]*nodeReg),
		leases:  make(map[int64]resultLease),
	}, nil
}

// Client returns the underlying etcd client, for callers that need etcd
// features the Registry interface does not offer.
func (r *Registry) Client() *clientv3.Client {
	return r.cli
}

// Close stops node keep-alives (their records then expire with their
// leases), ends every watch and closes the client.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
	if err := r.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd registry: close: %w", err)
	}
	return nil
}

// reqCtx bounds one request by the request timeout and by Close.
func (r *Registry) reqCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if r.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	stop := context.AfterFunc(r.ctx, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// goroutine runs f in the background unless the registry is closed; Close
// waits for it.
func (r *Registry) goroutine(f func()) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
	return nil
}

// sleep waits for d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Command serverledge runs one Serverledge node: the HTTP API, the warm pool
// of function containers, and the local scheduler. With no etcd.address
// configured it starts an embedded etcd so that a single node needs nothing
// but Docker.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/client"
	"github.com/serverledge/serverledge/internal/config"
	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/httplimit"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/embedded"
	"github.com/serverledge/serverledge/internal/registry/etcdreg"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/spool"
)

func main() {
	cfg, err := config.Load(os.Args[1:], os.LookupEnv)
	if errors.Is(err, config.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "serverledge: configuration: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Log.Level}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("node stopped", "err", err)
		os.Exit(1)
	}
}

// run starts every part of the node and tears them down in reverse order
// once ctx ends.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	endpoints := cfg.Etcd.Endpoints
	if cfg.Etcd.UseEmbedded() {
		srv, err := embedded.Start(ctx, embedded.Config{
			Dir:       cfg.Etcd.Embedded.Dir,
			ClientURL: "http://127.0.0.1:" + strconv.Itoa(cfg.Etcd.Embedded.ClientPort),
			PeerURL:   "http://127.0.0.1:" + strconv.Itoa(cfg.Etcd.Embedded.PeerPort),
			Logger:    log,
		})
		if err != nil {
			return err
		}
		defer srv.Close()
		endpoints = srv.Endpoints()
		log.Info("embedded etcd started", "dir", cfg.Etcd.Embedded.Dir, "endpoints", endpoints)
	}
	reg, err := etcdreg.New(ctx, etcdreg.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer reg.Close()

	// Nothing the node owns is touched before it holds the API port and
	// its id: a second node of the same name must leave the first intact.
	addr := net.JoinHostPort(cfg.API.IP, strconv.Itoa(cfg.API.Port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if holder := holderURL(ctx, reg, cfg.Node.Name); holder != "" {
			return fmt.Errorf("api: %w (node id %q is held by the running node at %s)", err, cfg.Node.Name, holder)
		}
		return fmt.Errorf("api: %w", err)
	}
	defer l.Close()
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	info := registry.NodeInfo{ID: cfg.Node.Name, URL: cfg.APIURL(), Area: cfg.Registry.Area, Cloud: cfg.Cloud.Enabled}
	if err := claimNodeID(ctx, bg, reg, info, cfg.Registry.TTL, log); err != nil {
		return err
	}
	deregister := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := reg.DeregisterNode(dctx, info.ID); err != nil {
			log.Warn("deregistering", "err", err)
		}
	}

	sp, err := spool.Open(spool.Config{
		Dir:      cfg.Async.SpoolDir,
		MaxBytes: cfg.Async.SpoolMaxBytes,
		Deliver:  api.DeliverSpooled(reg),
		Logger:   log,
	})
	if err != nil {
		deregister()
		return fmt.Errorf("async spool: %w", err)
	}
	go sp.Run(bg)

	rt, err := docker.New(ctx, docker.Options{
		RunDir:       cfg.Container.RunDir,
		Network:      cfg.Container.Network,
		TmpSizeMB:    cfg.Container.TmpSizeBytes >> 20,
		StartTimeout: cfg.Container.StartTimeout,
		Logger:       log,
	})
	if err != nil {
		deregister()
		return fmt.Errorf("docker: %w", err)
	}
	for _, r := range function.BuiltinRuntimes() {
		if ok, err := rt.ImageExists(ctx, r.Image); err == nil && !ok {
			log.Warn("runtime image missing; build it with `make images`", "runtime", r.Name, "image", r.Image)
		}
	}

	codes, err := registry.NewCodeCache(reg, cfg.Registry.CodeCacheMB<<20)
	if err != nil {
		return err
	}
	var sched *scheduling.Scheduler
	pool, err := node.New(rt, node.Config{
		NodeID:           cfg.Node.Name,
		MemoryMB:         cfg.Container.PoolMemoryMB,
		CPUs:             cfg.Container.PoolCPUs,
		Expiration:       cfg.Container.Expiration,
		JanitorInterval:  cfg.Janitor.Interval,
		StemCells:        cfg.Container.Stemcells,
		StemCellMemoryMB: cfg.Container.StemcellMemoryMB,
		Code:             codes.Get,
		OnFree:           func() { sched.Notify() },
		Logger:           log,
	})
	if err != nil {
		deregister()
		return fmt.Errorf("pool: %w", err)
	}
	sched = scheduling.New(pool, scheduling.Config{
		QueueCapacity: cfg.Scheduler.QueueCapacity,
		QueueMaxWait:  cfg.Scheduler.QueueMaxWait,
		NodeURL:       cfg.APIURL(),
		NodeID:        cfg.Node.Name,
		Area:          cfg.Registry.Area,
		Logger:        log,
	})
	if err := pool.Start(ctx); err != nil {
		deregister()
		return fmt.Errorf("pool: %w", err)
	}
	shutdownPool := func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout)
		defer cancel()
		if err := pool.Shutdown(sctx); err != nil {
			log.Warn("removing containers", "err", err)
		}
	}

	cache, err := registry.NewCache(reg, 1024)
	if err != nil {
		deregister()
		shutdownPool()
		return err
	}
	go cache.Watch(bg, log, func(ev registry.FunctionEvent) {
		version := ""
		if ev.Type == registry.FunctionPut && ev.Function != nil {
			version = ev.Function.Version
		}
		pool.FunctionChanged(ev.Name, version)
		codes.Forget(ev.Name, version)
	})
	go sched.Run(bg)

	metricsPath := ""
	if cfg.Metrics.Enabled {
		metricsPath = cfg.Metrics.Path
	}
	srv := api.New(api.Config{
		NodeID:         cfg.Node.Name,
		URL:            cfg.APIURL(),
		Area:           cfg.Registry.Area,
		Cloud:          cfg.Cloud.Enabled,
		MaxBodyBytes:   cfg.API.MaxBodyBytes,
		AsyncResultTTL: cfg.Async.ResultTTL,
		MetricsPath:    metricsPath,
		Timeouts: httplimit.Timeouts{
			ReadHeader:     cfg.API.Timeouts.ReadHeader,
			Read:           cfg.API.Timeouts.Read,
			Write:          cfg.API.Timeouts.Write,
			Idle:           cfg.API.Timeouts.Idle,
			MaxHeaderBytes: int(cfg.API.MaxHeaderBytes),
		},
		LongRequestTimeout: longRequestTimeout(cfg),
		MaxUploads:         cfg.API.MaxUploads,
		UploadThreshold:    cfg.API.UploadThreshold,
		Spool:              sp,
		MetricFuncs:        cfg.Metrics.MaxFunctions,
		Pprof:              cfg.Debug.Pprof,
		Logger:             log,
	}, reg, cache, sched, pool)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	go reportLoad(bg, reg, info, srv, log)
	log.Info("serverledge node ready", "url", cfg.APIURL(), "node", cfg.Node.Name, "area", cfg.Registry.Area)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-serveErr:
		log.Error("api server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("stopping api", "err", err)
	}
	if sp.Len() > 0 {
		log.Warn("async results still spooled; they are delivered when the node starts again", "count", sp.Len(), "dir", cfg.Async.SpoolDir)
	}
	deregister()
	cancelBG()
	shutdownPool()
	return err
}

// longRequestTimeout is how long a synchronous invocation's response may
// take once its body is read: the queue wait, a cold start, the longest
// function timeout, and a margin.
func longRequestTimeout(cfg *config.Config) time.Duration {
	return cfg.Scheduler.QueueMaxWait + cfg.Container.StartTimeout +
		function.MaxTimeoutSeconds*time.Second + time.Minute
}

// claimRetry is the pause between two attempts to claim a node id held by
// a previous run of this node.
const claimRetry = 500 * time.Millisecond

// claimNodeID registers the node, which claims its id, kept alive while
// keep lives. A node restarted after a crash finds its previous run's claim
// until that run's lease expires, so a held id is tried again for up to a
// TTL (plus a margin) unless its holder answers as a live node; then the
// error names the holder.
func claimNodeID(ctx, keep context.Context, reg registry.Registry, info registry.NodeInfo, ttl time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(ttl + 2*time.Second)
	waiting := false
	for {
		err := reg.RegisterNode(keep, info, ttl)
		if err == nil {
			return nil
		}
		if !errors.Is(err, registry.ErrExists) {
			return fmt.Errorf("registry: register node %s: %w", info.ID, err)
		}
		holder := holderURL(ctx, reg, info.ID)
		if holder != "" && answersAs(ctx, holder, info.ID) {
			return fmt.Errorf("node id %q is in use by the running node at %s; give this node another node.name: %w", info.ID, holder, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node id %q is still held after %v (registry.ttl); another node of that name is alive: %w", info.ID, ttl, err)
		}
		if !waiting {
			log.Warn("node id held, likely by this node's previous run; waiting for its lease to expire", "node", info.ID, "holder", holder, "ttl", ttl)
			waiting = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(claimRetry):
		}
	}
}

// holderURL returns the advertised URL of the node registered as id, or "".
func holderURL(ctx context.Context, reg registry.Registry, id string) string {
	nodes, err := reg.ListNodes(ctx, "")
	if err != nil {
		return ""
	}
	for _, n := range nodes {
		if n.ID == id {
			return n.URL
		}
	}
	return ""
}

// answersAs reports whether the node at url answers GET /status as id.
func answersAs(ctx context.Context, url, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := client.New(url)
	if err != nil {
		return false
	}
	st, err := cl.Status(ctx)
	return err == nil && st.NodeID == id
}

// reportLoad refreshes the node's advertised load every second so that
// neighbours see an overloaded node quickly.
func reportLoad(ctx context.Context, reg registry.Registry, info registry.NodeInfo, srv *api.Server, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		info.Status = srv.Status()
		info.Updated = time.Now()
		if err := reg.UpdateNode(ctx, info); err != nil && ctx.Err() == nil {
			log.Debug("load report", "err", err)
		}
	}
}

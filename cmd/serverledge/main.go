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
	"github.com/serverledge/serverledge/internal/config"
	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/embedded"
	"github.com/serverledge/serverledge/internal/registry/etcdreg"
	"github.com/serverledge/serverledge/internal/scheduling"
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

	rt, err := docker.New(ctx, docker.Options{
		RunDir:       cfg.Container.RunDir,
		Network:      cfg.Container.Network,
		StartTimeout: cfg.Container.StartTimeout,
		Logger:       log,
	})
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	for _, r := range function.BuiltinRuntimes() {
		if ok, err := rt.ImageExists(ctx, r.Image); err == nil && !ok {
			log.Warn("runtime image missing; build it with `make images`", "runtime", r.Name, "image", r.Image)
		}
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
		OnFree:           func() { sched.Notify() },
		Logger:           log,
	})
	if err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	sched = scheduling.New(pool, scheduling.Config{
		QueueCapacity: cfg.Scheduler.QueueCapacity,
		QueueMaxWait:  cfg.Scheduler.QueueMaxWait,
		NodeURL:       cfg.APIURL(),
		Logger:        log,
	})
	if err := pool.Start(ctx); err != nil {
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
		shutdownPool()
		return err
	}
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	go cache.Watch(bg, log, func(ev registry.FunctionEvent) {
		version := ""
		if ev.Type == registry.FunctionPut && ev.Function != nil {
			version = ev.Function.Version
		}
		pool.FunctionChanged(ev.Name, version)
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
		Logger:         log,
	}, reg, cache, sched, pool)

	addr := net.JoinHostPort(cfg.API.IP, strconv.Itoa(cfg.API.Port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		shutdownPool()
		return fmt.Errorf("api: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()

	info := registry.NodeInfo{ID: cfg.Node.Name, URL: cfg.APIURL(), Area: cfg.Registry.Area, Cloud: cfg.Cloud.Enabled}
	if err := reg.RegisterNode(bg, info, cfg.Registry.TTL); err != nil {
		log.Warn("registering node", "err", err)
	}
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
	if err := reg.DeregisterNode(sctx, info.ID); err != nil {
		log.Warn("deregistering", "err", err)
	}
	cancelBG()
	shutdownPool()
	return err
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

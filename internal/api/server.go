// Package api serves the Serverledge HTTP API (SPEC §2) with echo.
//
// Paths, JSON field names and status codes are those of the original
// Serverledge so that existing clients work unchanged. Every error reply is
// a short plain-text message; malformed input is a 4xx and changes nothing.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// Config configures the API server.
type Config struct {
	// NodeID identifies this node.
	NodeID string
	// URL is the node's advertised base URL.
	URL string
	// Area is the edge zone or cloud region.
	Area string
	// Cloud is true for a cloud node.
	Cloud bool
	// MaxBodyBytes bounds every request body.
	MaxBodyBytes int64
	// AsyncResultTTL is how long async results stay pollable.
	AsyncResultTTL time.Duration
	// MetricsPath serves Prometheus metrics when not empty.
	MetricsPath string
	// Logger receives request errors.
	Logger *slog.Logger
}

// Server is the node's HTTP API.
type Server struct {
	cfg   Config
	echo  *echo.Echo
	reg   registry.Registry
	cache *registry.Cache
	sched *scheduling.Scheduler
	pool  *node.Pool
	log   *slog.Logger
	host  *hostSampler
	met   *metrics

	// bg tracks async invocations so shutdown can wait for them.
	bg    sync.WaitGroup
	bgCtx context.Context
	stop  context.CancelFunc
}

// New builds the API server.
func New(cfg Config, reg registry.Registry, cache *registry.Cache, sched *scheduling.Scheduler, pool *node.Pool) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 32 << 20
	}
	if cfg.AsyncResultTTL <= 0 {
		cfg.AsyncResultTTL = time.Hour
	}
	bgCtx, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, reg: reg, cache: cache, sched: sched, pool: pool,
		log: cfg.Logger, host: newHostSampler(), bgCtx: bgCtx, stop: stop,
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	e.POST("/create", s.create)
	e.POST("/update", s.update)
	e.POST("/delete", s.delete)
	e.GET("/function", s.list)
	e.GET("/function/:name", s.describe)
	e.POST("/invoke/:name", s.invoke)
	e.GET("/poll/:id", s.poll)
	e.POST("/prewarm", s.prewarm)
	e.GET("/status", s.status)
	if cfg.MetricsPath != "" {
		s.met = newMetrics()
		e.GET(cfg.MetricsPath, echo.WrapHandler(s.met.handler()))
	}
	s.echo = e
	return s
}

// Handler returns the HTTP handler, for tests and custom servers.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.echo.Listener = l
	err := s.echo.Start("")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and waits, until ctx ends, for
// in-flight sync and async requests to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.echo.Shutdown(ctx)
	done := make(chan struct{})
	go func() {
		s.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.stop()
		err = errors.Join(err, fmt.Errorf("async requests still running: %w", ctx.Err()))
	}
	return err
}

// Status reports the node's pool and host figures, as served by GET /status.
func (s *Server) Status() *wire.StatusResponse {
	st := s.pool.Stats()
	out := &wire.StatusResponse{
		URL:                     s.cfg.URL,
		AvailableWarmContainers: st.Idle,
		AvailableMemMB:          st.FreeMemoryMB,
		AvailableCPUs:           st.FreeCPUs,
		DropCount:               s.sched.DropCount(),
		Coordinates:             wire.Coordinates{X: []float64{0, 0}},
		NodeID:                  s.cfg.NodeID,
		Area:                    s.cfg.Area,
		Cloud:                   s.cfg.Cloud,
		BusyContainers:          st.Busy,
		StemCells:               st.StemCells,
		QueueLength:             s.sched.QueueLength(),
		PoolMemoryMB:            st.TotalMemoryMB,
		PoolCPUs:                st.TotalCPUs,
	}
	s.host.fill(out)
	return out
}

// errorHandler turns every error into a plain-text message with its status.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code := http.StatusInternalServerError
	msg := err.Error()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = he.Code
		msg = fmt.Sprint(he.Message)
	}
	if code >= 500 {
		s.log.Warn("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", code, "err", msg)
	}
	if err := c.String(code, msg); err != nil {
		s.log.Debug("writing error reply", "err", err)
	}
}

// httpError builds an echo error with a plain message.
func httpError(code int, format string, args ...any) error {
	return echo.NewHTTPError(code, fmt.Sprintf(format, args...))
}

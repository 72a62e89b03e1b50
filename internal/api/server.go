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

	"github.com/serverledge/serverledge/internal/httplimit"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/spool"
	"github.com/serverledge/serverledge/internal/wire"
)

// Defaults of the HTTP server's limits, used when a Config field is zero.
const (
	// DefaultReadHeaderTimeout bounds receiving a request's headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds receiving a whole request.
	DefaultReadTimeout = 60 * time.Second
	// DefaultWriteTimeout bounds a response, from the end of the headers.
	DefaultWriteTimeout = 90 * time.Second
	// DefaultIdleTimeout bounds an idle keep-alive connection.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultMaxHeaderBytes bounds a request's header block.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultLongRequestTimeout bounds a sync invocation's response: the
	// longest function timeout plus room for queueing and a cold start.
	DefaultLongRequestTimeout = 20 * time.Minute
	// DefaultMaxUploads is how many large bodies are read at once.
	DefaultMaxUploads = 8
	// DefaultUploadThreshold is the body size above which a body is large.
	DefaultUploadThreshold = 64 << 10
	// DefaultUploadWait is how long a large body waits for a slot.
	DefaultUploadWait = time.Second
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
	// CodeFetchTimeout bounds fetching a TarFunctionCode given as a URL
	// (default DefaultCodeFetchTimeout).
	CodeFetchTimeout time.Duration
	// MetricsPath serves Prometheus metrics when not empty.
	MetricsPath string
	// Timeouts are the HTTP server's timeouts and header limit; zero
	// fields take the Default values.
	Timeouts httplimit.Timeouts
	// LongRequestTimeout bounds the response of a sync invocation or a
	// prewarm, past Timeouts.Write; default DefaultLongRequestTimeout.
	LongRequestTimeout time.Duration
	// MaxUploads bounds the request bodies over UploadThreshold bytes (or
	// of undeclared length) read at once; a request that finds no slot
	// within UploadWait gets 503. Defaults DefaultMaxUploads,
	// DefaultUploadThreshold and DefaultUploadWait.
	MaxUploads int
	// UploadThreshold is the body size above which a body is large.
	UploadThreshold int64
	// UploadWait is how long a large body waits for a slot.
	UploadWait time.Duration
	// Spool keeps the async results the registry cannot take, and answers
	// /poll for them meanwhile; nil means results are only logged then.
	Spool *spool.Spool
	// MetricFuncs bounds the distinct function label values of
	// the metrics (DefaultMetricsMaxFunctions when ≤ 0).
	MetricFuncs int
	// Pprof serves net/http/pprof under /debug/pprof/ when true.
	Pprof bool
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
	hdrs  headerCache
	// fetchSlots bounds the code URLs fetched at once.
	fetchSlots chan struct{}
	met        *metrics
	// uploads bounds the large request bodies read at once.
	uploads *httplimit.Uploads

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
	cfg.Timeouts = withDefaults(cfg.Timeouts)
	if cfg.LongRequestTimeout <= 0 {
		cfg.LongRequestTimeout = DefaultLongRequestTimeout
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = DefaultMaxUploads
	}
	if cfg.UploadThreshold <= 0 {
		cfg.UploadThreshold = DefaultUploadThreshold
	}
	if cfg.UploadWait <= 0 {
		cfg.UploadWait = DefaultUploadWait
	}
	if cfg.CodeFetchTimeout <= 0 {
		cfg.CodeFetchTimeout = DefaultCodeFetchTimeout
	}
	bgCtx, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, reg: reg, cache: cache, sched: sched, pool: pool,
		log: cfg.Logger, host: newHostSampler(), bgCtx: bgCtx, stop: stop,
		fetchSlots: make(chan struct{}, maxCodeFetches),
		uploads:    httplimit.NewUploads(cfg.MaxUploads, cfg.UploadThreshold, cfg.UploadWait),
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	cfg.Timeouts.Apply(e.Server)
	e.Pre(s.refuseOversized, echo.WrapMiddleware(s.uploads.Middleware))
	long := echo.WrapMiddleware(httplimit.Extend(cfg.LongRequestTimeout))
	e.POST("/create", s.create)
	e.POST("/update", s.update)
	e.POST("/delete", s.delete)
	e.GET("/function", s.list)
	e.GET("/function/:name", s.describe)
	e.POST("/invoke/:name", s.invoke, long)
	e.GET("/poll/:id", s.poll)
	e.POST("/prewarm", s.prewarm, long)
	e.GET("/status", s.status)
	if cfg.MetricsPath != "" {
		s.met = newMetrics(pool, sched, cfg.MetricFuncs)
		if sched != nil {
			sched.SetHooks(s.met)
		}
		e.GET(cfg.MetricsPath, echo.WrapHandler(s.met.handler()))
	}
	if cfg.Pprof {
		registerPprof(e)
	}
	s.echo = e
	return s
}

// Handler returns the HTTP handler, for tests and custom servers.
func (s *Server) Handler() http.Handler { return s.echo }

// UploadsInFlight returns how many large request bodies are being read.
func (s *Server) UploadsInFlight() int { return s.uploads.InFlight() }

// withDefaults fills the zero fields of t.
func withDefaults(t httplimit.Timeouts) httplimit.Timeouts {
	if t.ReadHeader <= 0 {
		t.ReadHeader = DefaultReadHeaderTimeout
	}
	if t.Read <= 0 {
		t.Read = DefaultReadTimeout
	}
	if t.Write <= 0 {
		t.Write = DefaultWriteTimeout
	}
	if t.Idle <= 0 {
		t.Idle = DefaultIdleTimeout
	}
	if t.MaxHeaderBytes <= 0 {
		t.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return t
}

// refuseOversized answers 400 to a request whose declared body length is
// over the limit, before any of the body is read or an upload slot taken.
func (s *Server) refuseOversized(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().ContentLength > s.cfg.MaxBodyBytes {
			c.Response().Header().Set("Connection", "close")
			return httpError(http.StatusBadRequest, "request body exceeds the limit of %d bytes", s.cfg.MaxBodyBytes)
		}
		return next(c)
	}
}

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
	fillResources(out, st, time.Now())
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

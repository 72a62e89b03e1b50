package api

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/spool"
	"github.com/serverledge/serverledge/internal/wire"
)

func (s *Server) invoke(c echo.Context) error {
	arrival := time.Now()
	f, err := s.lookup(c, c.Param("name"))
	if err != nil {
		return err
	}
	var req wire.InvocationRequest
	if err := s.decodeBody(c, &req, true); err != nil {
		return err
	}
	if req.QoSClass < wire.ClassLow || req.QoSClass > wire.ClassAvailability {
		return httpError(http.StatusBadRequest, "QoSClass must be 0 (low), 1 (performance) or 2 (availability), got %d", req.QoSClass)
	}
	if req.Params == nil {
		req.Params = map[string]any{}
	}
	if err := checkArch(f); err != nil {
		return err
	}
	r := &scheduling.Request{
		ID:           f.Name + "-" + strings.ToLower(rand.Text()),
		Function:     f,
		Params:       req.Params,
		Class:        req.QoSClass,
		CanOffload:   req.OffloadingAllowed(),
		ReturnOutput: req.ReturnOutput,
		Arrival:      arrival,
	}
	if req.QoSMaxRespT > 0 {
		r.MaxRespT = time.Duration(req.QoSMaxRespT * float64(time.Second))
	}
	if req.Async {
		return s.invokeAsync(c, r)
	}
	resp, err := s.sched.Invoke(c.Request().Context(), r)
	s.met.observe(f.Name, resp, err)
	s.setNodeHeaders(c)
	if err != nil {
		return invokeError(err)
	}
	resp.ResponseTime = time.Since(arrival).Seconds()
	return c.JSON(http.StatusOK, resp)
}

// invokeError maps a scheduling error onto its status code.
func invokeError(err error) error {
	switch {
	case errors.Is(err, scheduling.ErrRejected):
		return httpError(http.StatusTooManyRequests, "%v", err)
	case errors.Is(err, scheduling.ErrTimeout):
		return httpError(http.StatusGatewayTimeout, "%v", err)
	case errors.Is(err, scheduling.ErrFunctionFailed), errors.Is(err, scheduling.ErrContainer):
		return httpError(http.StatusInternalServerError, "%v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return httpError(http.StatusServiceUnavailable, "request abandoned: %v", err)
	default:
		return httpError(http.StatusInternalServerError, "%v", err)
	}
}

// invokeAsync records the request as pending, bound to this node's
// registration, answers with its id at once and stores the result in the
// registry when it completes. A result the registry cannot take goes to the
// spool, which delivers it once the registry answers again.
func (s *Server) invokeAsync(c echo.Context, r *scheduling.Request) error {
	ctx := c.Request().Context()
	if err := s.reg.PutPending(ctx, r.ID, s.cfg.NodeID, s.cfg.AsyncResultTTL); err != nil {
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	s.setNodeHeaders(c)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		resp, err := s.sched.Invoke(s.bgCtx, r)
		s.met.observe(r.Function.Name, resp, err)
		if resp == nil {
			resp = &wire.InvocationResponse{ReqID: r.ID}
		}
		if err != nil {
			resp.Success = false
			resp.Error = err.Error()
		}
		resp.ResponseTime = time.Since(r.Arrival).Seconds()
		s.storeResult(r.ID, resp)
	}()
	return c.JSON(http.StatusOK, wire.AsyncResponse{ReqID: r.ID})
}

// resultPutTimeout bounds the first attempt to store an async result.
const resultPutTimeout = 10 * time.Second

// storeResult puts an async result in the registry, or in the spool when
// the registry does not take it.
func (s *Server) storeResult(reqID string, resp *wire.InvocationResponse) {
	expires := time.Now().Add(s.cfg.AsyncResultTTL)
	putCtx, cancel := context.WithTimeout(context.Background(), resultPutTimeout)
	defer cancel()
	err := s.reg.PutResult(putCtx, reqID, resp, s.cfg.AsyncResultTTL)
	if err == nil {
		return
	}
	if s.cfg.Spool == nil {
		s.log.Error("storing async result; it is lost", "req", reqID, "err", err)
		return
	}
	if serr := s.cfg.Spool.Put(spool.Entry{ReqID: reqID, Response: resp, Expires: expires}); serr != nil {
		s.log.Error("storing async result: registry and spool both refused it; it is lost", "req", reqID, "err", err, "spool", serr)
		return
	}
	s.log.Warn("registry refused an async result; spooled until it answers", "req", reqID, "err", err)
}

// DeliverSpooled stores a spooled result in the registry for the rest of
// its TTL; it is the spool's delivery function.
func DeliverSpooled(reg registry.Registry) spool.DeliverFunc {
	return func(ctx context.Context, e spool.Entry) error {
		ttl := time.Until(e.Expires).Round(time.Second)
		if ttl < time.Second {
			ttl = time.Second
		}
		ctx, cancel := context.WithTimeout(ctx, resultPutTimeout)
		defer cancel()
		return reg.PutResult(ctx, e.ReqID, e.Response, ttl)
	}
}

// poll answers from the spool first (a result this node could not store
// yet), then from the registry. A request whose node stopped before
// finishing it is answered like a failed one: 200, Success false, and an
// error naming the node.
func (s *Server) poll(c echo.Context) error {
	id := c.Param("id")
	if id == "" || len(id) > 200 {
		return httpError(http.StatusBadRequest, "a request id is required")
	}
	if s.cfg.Spool != nil {
		if resp, ok := s.cfg.Spool.Get(id); ok {
			return c.JSON(http.StatusOK, resp)
		}
	}
	res, err := s.reg.GetResult(c.Request().Context(), id)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return httpError(http.StatusNotFound, "request %s is unknown or its result expired", id)
		}
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	switch res.State {
	case registry.ResultPending:
		return c.JSON(http.StatusAccepted, wire.PollPending{ReqID: id, Status: "running"})
	case registry.ResultLost:
		return c.JSON(http.StatusOK, &wire.InvocationResponse{ReqID: id, Success: false,
			Error: fmt.Sprintf("node %s stopped before the request finished", res.Node)})
	default:
		return c.JSON(http.StatusOK, res.Response)
	}
}

func (s *Server) prewarm(c echo.Context) error {
	var req wire.PrewarmRequest
	if err := s.decodeBody(c, &req, false); err != nil {
		return err
	}
	if req.Instances < 0 {
		return httpError(http.StatusBadRequest, "Instances must be 0 or more, got %d", req.Instances)
	}
	f, err := s.lookup(c, req.Function)
	if err != nil {
		return err
	}
	if err := checkArch(f); err != nil {
		return err
	}
	n, err := s.pool.Prewarm(c.Request().Context(), f, req.Instances)
	if err != nil && n == 0 {
		if errors.Is(err, node.ErrImageMissing) {
			return httpError(http.StatusInternalServerError, "%v", err)
		}
		if !errors.Is(err, node.ErrNoCapacity) {
			return httpError(http.StatusInternalServerError, "prewarming %s: %v", f.Name, err)
		}
	}
	return c.JSON(http.StatusOK, wire.PrewarmResponse{Prewarmed: n})
}

func (s *Server) status(c echo.Context) error {
	return c.JSON(http.StatusOK, s.Status())
}

// checkArch refuses, with 421 Misdirected Request, a function whose
// SupportedArchs excludes this node's architecture: the request is valid,
// but must go to a node of a supported architecture (docs/api.md).
func checkArch(f *function.Function) error {
	if f.SupportsArch(runtime.GOARCH) {
		return nil
	}
	return httpError(http.StatusMisdirectedRequest, "function %s supports the architectures %s; this node is %s: send the request to a node of a supported architecture or add %s to SupportedArchs",
		f.Name, strings.Join(f.SupportedArchs, ", "), runtime.GOARCH, runtime.GOARCH)
}

// setNodeHeaders sets the headers the newest upstream load balancer reads
// (wire.Header*) from cached figures.
func (s *Server) setNodeHeaders(c echo.Context) {
	s.hdrs.set(c.Response().Header(), s.cfg.NodeID, s.pool.Stats)
}

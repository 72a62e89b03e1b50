package api

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/scheduling"
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

// invokeAsync records the request as pending, answers with its id at once
// and stores the result in the registry when it completes.
func (s *Server) invokeAsync(c echo.Context, r *scheduling.Request) error {
	ctx := c.Request().Context()
	if err := s.reg.PutPending(ctx, r.ID, s.cfg.AsyncResultTTL); err != nil {
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
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
		putCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.reg.PutResult(putCtx, r.ID, resp, s.cfg.AsyncResultTTL); err != nil {
			s.log.Error("storing async result", "req", r.ID, "err", err)
		}
	}()
	return c.JSON(http.StatusOK, wire.AsyncResponse{ReqID: r.ID})
}

func (s *Server) poll(c echo.Context) error {
	id := c.Param("id")
	if id == "" || len(id) > 200 {
		return httpError(http.StatusBadRequest, "a request id is required")
	}
	state, resp, err := s.reg.GetResult(c.Request().Context(), id)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return httpError(http.StatusNotFound, "request %s is unknown or its result expired", id)
		}
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	if state == registry.ResultPending {
		return c.JSON(http.StatusAccepted, wire.PollPending{ReqID: id, Status: "running"})
	}
	return c.JSON(http.StatusOK, resp)
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

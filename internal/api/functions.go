package api

import (
	"errors"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/wire"
)

// parseFunction decodes and validates a /create or /update body.
func (s *Server) parseFunction(c echo.Context) (*function.Function, error) {
	var req wire.FunctionRequest
	if err := s.decodeBody(c, &req, false); err != nil {
		return nil, err
	}
	f := &function.Function{
		Name:            req.Name,
		Runtime:         req.Runtime,
		MemoryMB:        req.MemoryMB,
		CPUDemand:       req.CPUDemand,
		Handler:         req.Handler,
		TarFunctionCode: req.TarFunctionCode,
		CustomImage:     req.CustomImage,
		AllowedZones:    req.AllowedZones,
		TimeoutSeconds:  req.TimeoutSeconds,
		MaxConcurrency:  req.MaxConcurrency,
		SupportedArchs:  req.SupportedArchs,
		Signature:       req.Signature,
		Env:             req.Env,
	}
	if err := s.fetchCode(c.Request().Context(), f); err != nil {
		return nil, err
	}
	if err := f.Normalize(); err != nil {
		if errors.Is(err, function.ErrUnknownRuntime) {
			return nil, httpError(http.StatusNotFound, "%v", err)
		}
		return nil, httpError(http.StatusBadRequest, "%v", err)
	}
	if err := f.CheckCode(c.Request().Context()); err != nil {
		return nil, httpError(http.StatusBadRequest, "%v", err)
	}
	return f, nil
}

func (s *Server) create(c echo.Context) error {
	f, err := s.parseFunction(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.reg.CreateFunction(ctx, f); err != nil {
		if errors.Is(err, registry.ErrExists) {
			return httpError(http.StatusConflict, "function %s already exists", f.Name)
		}
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	s.cache.Invalidate(f.Name)
	return c.JSON(http.StatusOK, wire.CreatedResponse{Created: f.Name})
}

func (s *Server) update(c echo.Context) error {
	f, err := s.parseFunction(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.reg.UpdateFunction(ctx, f); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return httpError(http.StatusNotFound, "function %s does not exist", f.Name)
		}
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	s.cache.Invalidate(f.Name)
	s.pool.FunctionChanged(f.Name, f.Version)
	return c.JSON(http.StatusOK, wire.UpdatedResponse{Updated: f.Name})
}

func (s *Server) delete(c echo.Context) error {
	var req wire.DeleteRequest
	if err := s.decodeBody(c, &req, false); err != nil {
		return err
	}
	if err := function.ValidateName(req.Name); err != nil {
		return httpError(http.StatusBadRequest, "%v", err)
	}
	ctx := c.Request().Context()
	if err := s.reg.DeleteFunction(ctx, req.Name); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return httpError(http.StatusNotFound, "function %s does not exist", req.Name)
		}
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	s.cache.Invalidate(req.Name)
	s.pool.FunctionChanged(req.Name, "")
	s.met.forget(req.Name)
	return c.JSON(http.StatusOK, wire.DeletedResponse{Deleted: req.Name})
}

func (s *Server) list(c echo.Context) error {
	names, err := s.reg.ListFunctions(c.Request().Context())
	if err != nil {
		return httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	if names == nil {
		names = []string{}
	}
	slices.Sort(names)
	return c.JSON(http.StatusOK, names)
}

// lookup returns the named function or a 400/404 error.
func (s *Server) lookup(c echo.Context, name string) (*function.Function, error) {
	if err := function.ValidateName(name); err != nil {
		return nil, httpError(http.StatusBadRequest, "%v", err)
	}
	f, err := s.cache.Get(c.Request().Context(), name)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return nil, httpError(http.StatusNotFound, "function %s does not exist", name)
		}
		return nil, httpError(http.StatusServiceUnavailable, "registry: %v", err)
	}
	return f, nil
}

func (s *Server) describe(c echo.Context) error {
	f, err := s.lookup(c, c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, f.WithoutCode())
}

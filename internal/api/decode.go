package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
)

// decodeBody reads the request body (bounded by MaxBodyBytes) into v.
// An empty body is accepted when allowEmpty is true. Malformed JSON and
// fields of the wrong type yield a 400 naming the problem.
func (s *Server) decodeBody(c echo.Context, v any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return httpError(http.StatusBadRequest, "request body exceeds the limit of %d bytes", s.cfg.MaxBodyBytes)
		}
		return httpError(http.StatusBadRequest, "reading request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return httpError(http.StatusBadRequest, "request body is empty; a JSON object is required")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return httpError(http.StatusBadRequest, "%s", describeJSONError(err))
	}
	return nil
}

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field != "" {
			return fmt.Sprintf("field %s must be %s, got JSON %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
		}
		return fmt.Sprintf("request body must be a JSON object, got JSON %s", typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	}
	return fmt.Sprintf("malformed JSON: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "float32", "float64":
		return "a number"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	default:
		return goKind
	}
}

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

// MaxJSONDepth bounds the nesting of objects and arrays in a request body
// (the body's own object counts as one level), documented in docs/api.md.
const MaxJSONDepth = 64

// decodeBody reads the request body (bounded by MaxBodyBytes) into v.
// An empty body is accepted when allowEmpty is true. Malformed JSON, JSON
// nested deeper than MaxJSONDepth and fields of the wrong type yield a 400
// naming the problem.
func (s *Server) decodeBody(c echo.Context, v any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return httpError(http.StatusBadRequest, "request body exceeds the limit of %d bytes", s.cfg.MaxBodyBytes)
		}
		return httpError(http.StatusBadRequest, "reading request body: %v", err)
	}
	return decodeJSON(body, v, allowEmpty)
}

// decodeJSON decodes body into v as decodeBody does, after checking its
// nesting depth in one pass that allocates nothing.
func decodeJSON(body []byte, v any, allowEmpty bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return httpError(http.StatusBadRequest, "request body is empty; a JSON object is required")
	}
	if at := tooDeep(body, MaxJSONDepth); at >= 0 {
		return httpError(http.StatusBadRequest, "JSON nested deeper than %d levels at byte %d", MaxJSONDepth, at)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return httpError(http.StatusBadRequest, "%s", describeJSONError(err))
	}
	return nil
}

// tooDeep returns the offset at which body opens its (limit+1)th nested
// object or array, or -1. It only tracks strings and brackets; whatever
// else is malformed is left to the decoder.
func tooDeep(body []byte, limit int) int {
	depth := 0
	inString, escaped := false, false
	for i, b := range body {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			if depth++; depth > limit {
				return i
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return -1
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

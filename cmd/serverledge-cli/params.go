package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/serverledge/serverledge/internal/wire"
)

// parseClass turns a --class value into a QoS class id (SPEC §4): a class
// name, case-insensitive, or its numeric id.
func parseClass(s string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "low", "0":
		return wire.ClassLow, nil
	case "performance", "1":
		return wire.ClassPerformance, nil
	case "availability", "2":
		return wire.ClassAvailability, nil
	}
	return 0, fmt.Errorf("invalid --class %q: want low, performance or availability (or 0, 1, 2)", s)
}

// parseParam splits a --param "name:value" at its first colon. The value is
// taken as JSON when it parses as JSON (17, 2.5, true, null, "quoted",
// [1,2], {"a":1}); otherwise it is the plain string.
func parseParam(s string) (string, any, error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("invalid --param %q: want name:value", s)
	}
	return name, parseValue(value), nil
}

// parseValue returns value decoded as JSON, numbers kept exact, or value
// itself when it is not JSON.
func parseValue(value string) any {
	if !json.Valid([]byte(value)) {
		return value
	}
	v, err := decodeJSON([]byte(value))
	if err != nil {
		return value
	}
	return v
}

// decodeJSON decodes b keeping numbers as json.Number, so that large
// integers reach the function unchanged.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// buildParams merges the JSON object in paramsFile (when not empty) with
// the --param values; a --param overrides a key of the file. The result is
// never nil, so the node always receives an object.
func buildParams(paramsFile string, params []string) (map[string]any, error) {
	out := map[string]any{}
	if paramsFile != "" {
		b, err := os.ReadFile(paramsFile)
		if err != nil {
			return nil, fmt.Errorf("reading --params_file: %w", err)
		}
		v, err := decodeJSON(b)
		if err != nil {
			return nil, fmt.Errorf("--params_file %s is not valid JSON: %w", paramsFile, err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("--params_file %s must hold a JSON object", paramsFile)
		}
		out = obj
	}
	for _, p := range params {
		name, value, err := parseParam(p)
		if err != nil {
			return nil, err
		}
		out[name] = value
	}
	return out, nil
}

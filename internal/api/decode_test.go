package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/serverledge/serverledge/internal/wire"
)

// depthOf is the reference nesting depth of valid JSON, from the decoder's tokens.
func depthOf(t *testing.T, body []byte) int {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	depth, most := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return most
		}
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if depth++; depth > most {
				most = depth
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

func TestTooDeep(t *testing.T) {
	tests := []struct {
		body  string
		limit int
		want  int
	}{
		{`{}`, 1, -1},
		{`{"a":{}}`, 1, 5},
		{`[[[]]]`, 3, -1},
		{`[[[[]]]]`, 3, 3},
		{`{"a":"[[[[[[", "b":"\"[[[["}`, 1, -1},
		{`{"a":"\\", "b":[[]]}`, 2, 16},
		{`"{{{{"`, 0, -1},
	}
	for _, tt := range tests {
		if got := tooDeep([]byte(tt.body), tt.limit); got != tt.want {
			t.Errorf("tooDeep(%s, %d) = %d, want %d", tt.body, tt.limit, got, tt.want)
		}
	}
}

// checkDecoded asserts what holds for every body: decodeJSON either
// accepts it or answers a 400, accepts nothing nested deeper than
// MaxJSONDepth, and refuses nothing valid within the bound for depth.
func checkDecoded(t *testing.T, body []byte, v any, allowEmpty bool) {
	err := decodeJSON(body, v, allowEmpty)
	if err != nil {
		var he *echo.HTTPError
		if !errors.As(err, &he) || he.Code != http.StatusBadRequest {
			t.Fatalf("decodeJSON(%q): %v is not a 400", body, err)
		}
	}
	if len(bytes.TrimSpace(body)) == 0 || !json.Valid(body) {
		if err == nil && len(bytes.TrimSpace(body)) > 0 {
			t.Fatalf("decodeJSON accepted invalid JSON %q", body)
		}
		return
	}
	deep := depthOf(t, body) > MaxJSONDepth
	if deep != (tooDeep(body, MaxJSONDepth) >= 0) {
		t.Fatalf("tooDeep disagrees with the decoder on %q", body)
	}
	if deep && err == nil {
		t.Fatalf("accepted JSON nested deeper than %d", MaxJSONDepth)
	}
	if err != nil && !deep && strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("refused %q for depth: %v", body, err)
	}
}

// FuzzDecodeInvoke decodes /invoke bodies.
func FuzzDecodeInvoke(f *testing.F) {
	f.Add([]byte(``))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"Params": {"a": 1, "b": [1, {"c": "\"]"}]}, "QoSClass": 1, "Async": true}`))
	f.Add([]byte(`{"Params": ` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}`))
	f.Add([]byte(`{"Params": [1]}`))
	f.Add([]byte(`{"CanDoOffloading": false, "QoSMaxRespT": 1e308}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req wire.InvocationRequest
		checkDecoded(t, body, &req, true)
	})
}

// FuzzDecodeCreate decodes /create and /update bodies.
func FuzzDecodeCreate(f *testing.F) {
	f.Add([]byte(`{"Name": "hello", "Runtime": "python", "Handler": "hello.echo", "TarFunctionCode": "", "MemoryMB": 128}`))
	f.Add([]byte(`{"Name": "x", "AllowedZones": [["a"]]}`))
	f.Add([]byte(`{"Name": 5}`))
	f.Add([]byte(`[` + strings.Repeat(`[`, 80) + strings.Repeat(`]`, 80) + `]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req wire.FunctionRequest
		checkDecoded(t, body, &req, false)
	})
}

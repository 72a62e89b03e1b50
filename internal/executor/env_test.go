package executor

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

const pythonEnvCode = `import os

AT_IMPORT = os.environ.get("GREETING")

def handler(params, context):
    return {"import": AT_IMPORT, "call": os.environ.get("GREETING"), "multi": os.environ.get("MULTI"), "uni": os.environ.get("UNI")}
`

const nodeEnvCode = `const atImport = process.env.GREETING;
module.exports = async function () {
  return { import: atImport, call: process.env.GREETING, multi: process.env.MULTI, uni: process.env.UNI };
};
`

// TestLoadEnvReachesFunction checks the environment sent with /load is
// visible to the function's code from its import on, in both runtimes.
func TestLoadEnvReachesFunction(t *testing.T) {
	env := map[string]string{"GREETING": "hi there", "MULTI": "a\nb=c", "UNI": "ü"}
	want := `{"import":"hi there","call":"hi there","multi":"a\nb=c","uni":"ü"}`
	for _, tc := range []struct {
		runtime, handler string
		code             map[string]string
	}{
		{"python", "fn.handler", map[string]string{"fn.py": pythonEnvCode}},
		{"nodejs", "fn.js", map[string]string{"fn.js": nodeEnvCode}},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			h := startHarness(t, workerCmd(t, tc.runtime), nil)
			if err := h.client.LoadWith(context.Background(), tc.handler, tarOf(t, tc.code), LoadOptions{Env: env}); err != nil {
				t.Fatalf("LoadWith: %v", err)
			}
			out, err := h.client.Invoke(context.Background(), InvokeRequest{})
			if err != nil || !out.Success {
				t.Fatalf("Invoke: %v %+v", err, out)
			}
			var got, exp map[string]any
			if err := json.Unmarshal([]byte(out.Result), &got); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal([]byte(want), &exp)
			for k, v := range exp {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v (result %s)", k, got[k], v, out.Result)
				}
			}
		})
	}
}

// TestLoadBadEnvHeaderRefused checks a malformed X-Env is a 400 that
// leaves the executor unspecialized, so a correct /load still succeeds.
func TestLoadBadEnvHeaderRefused(t *testing.T) {
	h := startHarness(t, workerCmd(t, "python"), nil)
	c := rawClient(h.sockDir)
	defer c.CloseIdleConnections()
	archive := tarOf(t, map[string]string{"fn.py": pythonEnvCode})
	for _, bad := range []string{
		"!!!not base64",
		base64.StdEncoding.EncodeToString([]byte(`["A=1"]`)),
		base64.StdEncoding.EncodeToString([]byte(`{"A":1}`)),
		base64.StdEncoding.EncodeToString([]byte(`{"A=B":"x"}`)),
		base64.StdEncoding.EncodeToString([]byte(`{"A":"x\u0000"}`)),
		strings.Repeat("A", MaxEnvHeaderBytes+4),
	} {
		req, err := http.NewRequest(http.MethodPost, "http://executor/load", bytes.NewReader(archive))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(HandlerHeader, "fn.handler")
		req.Header.Set(EnvHeader, bad)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), EnvHeader) {
			t.Errorf("X-Env %.40q: status %d %q, want 400 naming %s", bad, resp.StatusCode, body, EnvHeader)
		}
	}
	if err := h.client.LoadWith(context.Background(), "fn.handler", archive, LoadOptions{Env: map[string]string{"GREETING": "ok"}}); err != nil {
		t.Fatalf("a correct load after refused ones: %v", err)
	}
}

func TestEnvHeaderRoundTrip(t *testing.T) {
	env := map[string]string{"A": "1", "B": "line\nbreak", "C": ""}
	v, err := EncodeEnv(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEnv(v)
	if err != nil || len(got) != 3 || got["B"] != "line\nbreak" || got["C"] != "" {
		t.Fatalf("DecodeEnv = %v, %v", got, err)
	}
	if got, err := DecodeEnv(""); got != nil || err != nil {
		t.Errorf("DecodeEnv(\"\") = %v, %v; want nil, nil", got, err)
	}
}

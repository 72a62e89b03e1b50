// Package executor implements the executor protocol: how a node talks to the
// process inside a function container (docs/executor.md).
//
// The executor is an HTTP/1.1 server listening on a unix socket in a
// directory the node bind-mounts into the container (SocketDir). It signals
// readiness by writing one line to the FIFO ReadyFIFO in the same directory,
// so the node never polls. Endpoints:
//
//	POST /load    body: tar archive; header X-Handler: the handler, optional headers
//	              X-Concurrency: how many invocations may run at once (default 1),
//	              and X-Env: the function's environment (EncodeEnv).
//	              200 on success; 400 refused archive, handler, concurrency or
//	              environment (body says why); 409 already loaded.
//	POST /invoke  body: InvokeRequest JSON. 200 InvokeResponse (Success false for a
//	              function error); 409 not loaded; 410 container retired;
//	              500 function process crashed; 504 timeout.
//	GET  /health  200 "ok".
package executor

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Paths inside the container, and the names of the files in the bind-mounted directory.
const (
	// SocketDir is where the node mounts the per-container directory.
	SocketDir = "/run/serverledge"
	// SocketName is the executor's unix socket inside SocketDir.
	SocketName = "executor.sock"
	// ReadyFIFO is the FIFO inside SocketDir the executor writes "ready\n" to once listening.
	ReadyFIFO = "ready"
	// CodeDir is where function code is unpacked inside the container.
	CodeDir = "/code"
	// HandlerHeader carries the handler on POST /load.
	HandlerHeader = "X-Handler"
	// ConcurrencyHeader carries, on POST /load, how many invocations the
	// container serves at once (1 to MaxConcurrency; default 1).
	ConcurrencyHeader = "X-Concurrency"
	// EnvHeader carries the function's environment variables on POST
	// /load: the standard base64 of a JSON object of strings.
	EnvHeader = "X-Env"
	// MaxEnvHeaderBytes bounds the X-Env header.
	MaxEnvHeaderBytes = 512 << 10
)

// EncodeEnv encodes environment variables for the X-Env header.
func EncodeEnv(env map[string]string) (string, error) {
	b, err := json.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("encoding the environment: %w", err)
	}
	v := base64.StdEncoding.EncodeToString(b)
	if len(v) > MaxEnvHeaderBytes {
		return "", fmt.Errorf("the environment encodes to %d bytes, the limit is %d", len(v), MaxEnvHeaderBytes)
	}
	return v, nil
}

// DecodeEnv decodes an X-Env header; an empty header is no environment.
func DecodeEnv(v string) (map[string]string, error) {
	if v == "" {
		return nil, nil
	}
	if len(v) > MaxEnvHeaderBytes {
		return nil, fmt.Errorf("%s header is %d bytes, the limit is %d", EnvHeader, len(v), MaxEnvHeaderBytes)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%s header is not base64: %w", EnvHeader, err)
	}
	var env map[string]string
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%s header is not a JSON object of strings: %w", EnvHeader, err)
	}
	for k, val := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(val, 0) >= 0 {
			return nil, fmt.Errorf("%s header holds an invalid variable %q", EnvHeader, k)
		}
	}
	return env, nil
}

// InvokeRequest is the JSON body of POST /invoke.
type InvokeRequest struct {
	Params       map[string]any `json:"Params"`
	ReturnOutput bool           `json:"ReturnOutput"`
	// TimeoutMillis bounds the execution; 0 means the executor default (60 s).
	TimeoutMillis int64 `json:"TimeoutMillis"`
	// Context is passed to the handler as its second argument.
	Context map[string]any `json:"Context,omitempty"`
}

// InvokeResponse is the JSON body of a POST /invoke reply.
type InvokeResponse struct {
	Success bool `json:"Success"`
	// Result is the handler's return value, JSON-encoded.
	Result string `json:"Result"`
	Output string `json:"Output,omitempty"`
	Error  string `json:"Error,omitempty"`
	// DurationSeconds is the time spent inside the handler.
	DurationSeconds float64 `json:"Duration"`
}

// Duration returns the execution time as a time.Duration.
func (r InvokeResponse) Duration() time.Duration {
	return time.Duration(r.DurationSeconds * float64(time.Second))
}

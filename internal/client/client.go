// Package client is a Go client of the Serverledge node HTTP API (SPEC §2).
//
// It depends only on net/http and encoding/json so that small programs (the
// CLI) stay small, and it reuses one keep-alive http.Client so that callers
// that invoke often (the scheduler, when offloading) do not pay a new
// connection per request.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/httplimit"
	"github.com/serverledge/serverledge/internal/wire"
)

// Sentinel errors callers branch on with errors.Is. An *APIError matches the
// one that corresponds to its status code.
var (
	// ErrNotFound matches a 404: unknown function, runtime or request.
	ErrNotFound = errors.New("not found")
	// ErrConflict matches a 409: the function already exists.
	ErrConflict = errors.New("conflict")
	// ErrBadRequest matches a 400: an invalid request.
	ErrBadRequest = errors.New("bad request")
	// ErrRejected matches a 429: the node rejected the request for load.
	ErrRejected = errors.New("rejected")
	// ErrTimeout matches a 504: the function exceeded its timeout.
	ErrTimeout = errors.New("timeout")
	// ErrPending is returned by Poll for a request that is still running.
	ErrPending = errors.New("request still running")
)

// maxErrorBody bounds how much of an error body is read into an APIError.
const maxErrorBody = 64 << 10

// APIError is a non-success reply from a node.
type APIError struct {
	// StatusCode is the HTTP status code of the reply.
	StatusCode int
	// Message is the server's message from the reply body.
	Message string
}

// Error returns the server's message, or the status text when the body was empty.
func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return e.Message
}

// Is reports whether target is the sentinel error for e's status code.
func (e *APIError) Is(target error) bool {
	switch e.StatusCode {
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusConflict:
		return target == ErrConflict
	case http.StatusBadRequest:
		return target == ErrBadRequest
	case http.StatusTooManyRequests:
		return target == ErrRejected
	case http.StatusGatewayTimeout:
		return target == ErrTimeout
	}
	return false
}

// Default bounds of one call whose context has no deadline.
const (
	// DefaultTimeout bounds every call but a synchronous invocation.
	DefaultTimeout = 2 * time.Minute
	// DefaultInvokeTimeout bounds a synchronous invocation: the longest
	// function timeout plus room for queueing and a cold start.
	DefaultInvokeTimeout = function.MaxTimeoutSeconds*time.Second + 5*time.Minute
)

// Client talks to one Serverledge node. It is safe for concurrent use.
type Client struct {
	baseURL string
	http    *http.Client
	header  http.Header
	// timeout and invokeTimeout bound calls whose context has no deadline.
	timeout, invokeTimeout time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests through hc.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithTimeout bounds every call whose context has no deadline: d for a
// synchronous invocation as for any other call (defaults DefaultTimeout and
// DefaultInvokeTimeout).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout, c.invokeTimeout = d, d }
}

// WithHeader adds a header to every request the Client sends.
func WithHeader(key, value string) Option {
	return func(c *Client) { c.header.Add(key, value) }
}

// CallOption configures one call.
type CallOption func(*http.Request)

// WithRequestHeader sets a header on one request, for example the hop count
// of an offloaded invocation.
func WithRequestHeader(key, value string) CallOption {
	return func(r *http.Request) { r.Header.Set(key, value) }
}

// defaultTransport is shared by every Client without WithHTTPClient, so that
// clients of the same node share idle connections.
var defaultTransport = httplimit.NewTransport()

// New returns a Client of the node at baseURL, for example
// "http://127.0.0.1:1323". A baseURL without a scheme gets "http://".
func New(baseURL string, opts ...Option) (*Client, error) {
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: invalid node URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: invalid node URL %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("client: invalid node URL %q: no host", baseURL)
	}
	c := &Client{
		baseURL: strings.TrimRight(u.String(), "/"),
		http:    &http.Client{Transport: defaultTransport},
		header:  make(http.Header),
		timeout: DefaultTimeout, invokeTimeout: DefaultInvokeTimeout,
	}
	for _, opt := range opts {
		opt(c)
	}
	return c, nil
}

// BaseURL returns the node URL the Client talks to, without a trailing slash.
func (c *Client) BaseURL() string {
	return c.baseURL
}

// Create registers a new function. It returns an error matching ErrConflict
// when the function exists and ErrNotFound when the runtime is unknown.
func (c *Client) Create(ctx context.Context, fn wire.FunctionRequest) (*wire.CreatedResponse, error) {
	var out wire.CreatedResponse
	if _, err := c.do(ctx, http.MethodPost, "/create", fn, &out, nil); err != nil {
		return nil, err
	}
	return &out, nil
}

// Update replaces the definition of an existing function. It returns an
// error matching ErrNotFound when the function does not exist.
func (c *Client) Update(ctx context.Context, fn wire.FunctionRequest) (*wire.UpdatedResponse, error) {
	var out wire.UpdatedResponse
	if _, err := c.do(ctx, http.MethodPost, "/update", fn, &out, nil); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes a function. It returns an error matching ErrNotFound when
// the function does not exist.
func (c *Client) Delete(ctx context.Context, name string) (*wire.DeletedResponse, error) {
	var out wire.DeletedResponse
	if _, err := c.do(ctx, http.MethodPost, "/delete", wire.DeleteRequest{Name: name}, &out, nil); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns the names of the registered functions.
func (c *Client) List(ctx context.Context) ([]string, error) {
	var out []string
	if _, err := c.do(ctx, http.MethodGet, "/function", nil, &out, nil); err != nil {
		return nil, err
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// Describe returns the definition of a function, without its code but with
// its Version. It returns an error matching ErrNotFound when the function
// does not exist.
func (c *Client) Describe(ctx context.Context, name string) (*function.Function, error) {
	var out function.Function
	if _, err := c.do(ctx, http.MethodGet, "/function/"+url.PathEscape(name), nil, &out, nil); err != nil {
		return nil, err
	}
	return &out, nil
}

// Invoke runs a function synchronously and returns its response. req.Async
// is ignored (use InvokeAsync). A function that ran and failed is a response
// with Success false when the node reports it that way, or an *APIError with
// status 500.
func (c *Client) Invoke(ctx context.Context, name string, req wire.InvocationRequest, opts ...CallOption) (*wire.InvocationResponse, error) {
	req.Async = false
	var out wire.InvocationResponse
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.invokeTimeout)
		defer cancel()
	}
	if _, err := c.do(ctx, http.MethodPost, "/invoke/"+url.PathEscape(name), req, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// InvokeAsync submits an asynchronous invocation and returns its request id,
// to be passed to Poll. req.Async is set to true.
func (c *Client) InvokeAsync(ctx context.Context, name string, req wire.InvocationRequest, opts ...CallOption) (*wire.AsyncResponse, error) {
	req.Async = true
	var out wire.AsyncResponse
	if _, err := c.do(ctx, http.MethodPost, "/invoke/"+url.PathEscape(name), req, &out, opts); err != nil {
		return nil, err
	}
	if out.ReqID == "" {
		return nil, fmt.Errorf("client: node %s accepted the async invocation but sent no ReqId", c.baseURL)
	}
	return &out, nil
}

// Poll returns the result of an asynchronous invocation. It returns
// ErrPending while the request is still running and an error matching
// ErrNotFound for an unknown or expired request id.
func (c *Client) Poll(ctx context.Context, reqID string) (*wire.InvocationResponse, error) {
	var out wire.InvocationResponse
	status, err := c.do(ctx, http.MethodGet, "/poll/"+url.PathEscape(reqID), nil, &out, nil)
	if err != nil {
		return nil, err
	}
	if status == http.StatusAccepted {
		return nil, fmt.Errorf("request %s: %w", reqID, ErrPending)
	}
	return &out, nil
}

// Prewarm asks the node to start count idle containers of a function (0:
// only make sure its image is there) and returns how many it started.
func (c *Client) Prewarm(ctx context.Context, req wire.PrewarmRequest) (*wire.PrewarmResponse, error) {
	var out wire.PrewarmResponse
	if _, err := c.do(ctx, http.MethodPost, "/prewarm", req, &out, nil); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (*wire.StatusResponse, error) {
	var out wire.StatusResponse
	if _, err := c.do(ctx, http.MethodGet, "/status", nil, &out, nil); err != nil {
		return nil, err
	}
	return &out, nil
}

// do sends one request and decodes a 2xx JSON body into out (skipped for a
// 202, whose body the callers do not need). It returns the status code. A
// call whose context has no deadline is bounded by the client's timeout.
func (c *Client) do(ctx context.Context, method, path string, in, out any, opts []CallOption) (int, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("client: encoding %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return 0, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for _, opt := range opts {
		opt(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("client: cannot reach node %s: %w", c.baseURL, err)
	}
	defer func() {
		// Drain what is left so the connection goes back to the idle pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, readAPIError(resp)
	}
	if resp.StatusCode == http.StatusAccepted || out == nil {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("client: decoding reply to %s %s: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

// readAPIError turns an error reply into an *APIError. The body is either a
// short plain-text message or a JSON object with a message field.
func readAPIError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return &APIError{StatusCode: resp.StatusCode, Message: errorMessage(b)}
}

// errorMessage extracts the human-readable message from an error body.
func errorMessage(b []byte) string {
	text := strings.TrimSpace(string(b))
	if !strings.HasPrefix(text, "{") {
		return text
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return text
	}
	for _, key := range []string{"message", "Message", "error", "Error"} {
		if s, ok := obj[key].(string); ok && s != "" {
			return s
		}
	}
	return text
}

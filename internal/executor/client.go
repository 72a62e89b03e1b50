package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Errors returned by Client, matching the executor's status codes.
var (
	// ErrRefused is a 400 on /load: the archive or handler was refused.
	ErrRefused = errors.New("executor refused the code")
	// ErrAlreadyLoaded is a 409 on /load.
	ErrAlreadyLoaded = errors.New("executor already loaded")
	// ErrNotLoaded is a 409 on /invoke.
	ErrNotLoaded = errors.New("executor has no function loaded")
	// ErrRetired is a 410: the executor will not serve again.
	ErrRetired = errors.New("executor retired")
	// ErrCrashed is a 500 on /invoke: the function process died.
	ErrCrashed = errors.New("function process crashed")
	// ErrTimeout is a 504 on /invoke.
	ErrTimeout = errors.New("function timed out")
)

// Client talks to one executor over its unix socket. It keeps a small pool
// of keep-alive connections, one per invocation in flight, and does each
// exchange on the caller's goroutine (http.Request.Write,
// http.ReadResponse), which spares the two goroutine hand-offs per request
// of an http.Transport.
type Client struct {
	path   string
	dialer net.Dialer

	mu      sync.Mutex
	idle    []*clientConn
	maxIdle int
	closed  bool
}

// clientConn is one keep-alive connection to the executor.
type clientConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// NewClient returns a client for the executor listening on socketPath.
func NewClient(socketPath string) *Client {
	return &Client{path: socketPath, dialer: net.Dialer{Timeout: 5 * time.Second}, maxIdle: 1}
}

// Close closes the idle connections; connections in use close when their
// exchange ends.
func (c *Client) Close() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, cc := range idle {
		_ = cc.conn.Close()
	}
}

// get returns an idle connection, or nil.
func (c *Client) get() *clientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.idle); n > 0 {
		cc := c.idle[n-1]
		c.idle[n-1] = nil
		c.idle = c.idle[:n-1]
		return cc
	}
	return nil
}

// put keeps cc for reuse, or closes it when enough are kept.
func (c *Client) put(cc *clientConn) {
	c.mu.Lock()
	if !c.closed && len(c.idle) < c.maxIdle {
		c.idle = append(c.idle, cc)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = cc.conn.Close()
}

// Load sends the code archive and handler, for one invocation at a time.
func (c *Client) Load(ctx context.Context, handler string, code []byte) error {
	return c.LoadWith(ctx, handler, code, LoadOptions{Concurrency: 1})
}

// LoadConcurrent sends the code archive and handler, and the number of
// invocations the executor runs at once (1 to MaxConcurrency). The client
// then keeps up to that many idle connections.
func (c *Client) LoadConcurrent(ctx context.Context, handler string, code []byte, concurrency int) error {
	return c.LoadWith(ctx, handler, code, LoadOptions{Concurrency: concurrency})
}

// LoadOptions are the optional parts of a load.
type LoadOptions struct {
	// Concurrency is how many invocations the executor runs at once (1 to
	// MaxConcurrency; 0 means 1).
	Concurrency int
	// Env holds the environment variables the function's process gets
	// before its code is imported.
	Env map[string]string
}

// LoadWith sends the code archive and handler with opts. The client then
// keeps up to opts.Concurrency idle connections.
func (c *Client) LoadWith(ctx context.Context, handler string, code []byte, opts LoadOptions) error {
	concurrency := max(opts.Concurrency, 1)
	if concurrency > MaxConcurrency {
		return fmt.Errorf("executor load: %w: concurrency %d not in 1..%d", ErrRefused, concurrency, MaxConcurrency)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://executor/load", bytes.NewReader(code))
	if err != nil {
		return fmt.Errorf("executor load: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set(HandlerHeader, handler)
	if concurrency > 1 {
		req.Header.Set(ConcurrencyHeader, strconv.Itoa(concurrency))
	}
	if len(opts.Env) > 0 {
		v, err := EncodeEnv(opts.Env)
		if err != nil {
			return fmt.Errorf("executor load: %w", err)
		}
		req.Header.Set(EnvHeader, v)
	}
	status, body, err := c.do(req)
	if err != nil {
		return fmt.Errorf("executor load: %w", err)
	}
	switch status {
	case http.StatusOK:
		c.mu.Lock()
		c.maxIdle = concurrency
		c.mu.Unlock()
		return nil
	case http.StatusBadRequest:
		return fmt.Errorf("%w: %s", ErrRefused, body)
	case http.StatusConflict:
		return fmt.Errorf("%w: %s", ErrAlreadyLoaded, body)
	case http.StatusGone:
		return fmt.Errorf("%w: %s", ErrRetired, body)
	default:
		return fmt.Errorf("executor load: status %d: %s", status, body)
	}
}

// Invoke runs the loaded function once.
func (c *Client) Invoke(ctx context.Context, in InvokeRequest) (InvokeResponse, error) {
	payload, err := json.Marshal(in)
	if err != nil {
		return InvokeResponse{}, fmt.Errorf("executor invoke: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://executor/invoke", bytes.NewReader(payload))
	if err != nil {
		return InvokeResponse{}, fmt.Errorf("executor invoke: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	status, body, err := c.do(req)
	if err != nil {
		return InvokeResponse{}, fmt.Errorf("executor invoke: %w", err)
	}
	switch status {
	case http.StatusOK:
		var out InvokeResponse
		if err := json.Unmarshal(body, &out); err != nil {
			return InvokeResponse{}, fmt.Errorf("executor invoke: decode reply: %w", err)
		}
		return out, nil
	case http.StatusConflict:
		return InvokeResponse{}, fmt.Errorf("%w: %s", ErrNotLoaded, body)
	case http.StatusGone:
		return InvokeResponse{}, fmt.Errorf("%w: %s", ErrRetired, body)
	case http.StatusGatewayTimeout:
		return InvokeResponse{}, fmt.Errorf("%w: %s", ErrTimeout, body)
	case http.StatusInternalServerError:
		return InvokeResponse{}, fmt.Errorf("%w: %s", ErrCrashed, body)
	default:
		return InvokeResponse{}, fmt.Errorf("executor invoke: status %d: %s", status, body)
	}
}

// do sends req and returns the status and body. A request that fails on a
// reused connection before any reply byte arrived (the executor closed the
// idle connection) is sent once more on a new one.
func (c *Client) do(req *http.Request) (int, []byte, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		cc := c.get()
		reused := cc != nil
		if !reused {
			conn, err := c.dialer.DialContext(ctx, "unix", c.path)
			if err != nil {
				return 0, nil, err
			}
			cc = &clientConn{conn: conn, br: bufio.NewReaderSize(conn, 16<<10), bw: bufio.NewWriterSize(conn, 16<<10)}
		}
		status, body, keep, replied, err := cc.exchange(ctx, req)
		if err == nil {
			if keep {
				c.put(cc)
			} else {
				_ = cc.conn.Close()
			}
			return status, body, nil
		}
		_ = cc.conn.Close()
		if !reused || replied || attempt > 0 || ctx.Err() != nil || req.GetBody == nil {
			return 0, nil, err
		}
		if req.Body, err = req.GetBody(); err != nil {
			return 0, nil, err
		}
	}
}

// exchange writes req on the connection and reads the reply; keep tells
// whether the connection may be reused, replied whether any reply byte
// arrived.
func (cc *clientConn) exchange(ctx context.Context, req *http.Request) (status int, body []byte, keep, replied bool, err error) {
	conn := cc.conn
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := req.Write(cc.bw); err != nil {
		return 0, nil, false, false, ctxErr(ctx, err)
	}
	if err := cc.bw.Flush(); err != nil {
		return 0, nil, false, false, ctxErr(ctx, err)
	}
	if _, err := cc.br.Peek(1); err != nil {
		return 0, nil, false, false, ctxErr(ctx, err)
	}
	resp, err := http.ReadResponse(cc.br, req)
	if err != nil {
		return 0, nil, false, true, ctxErr(ctx, err)
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	_ = resp.Body.Close()
	if err != nil {
		return 0, nil, false, true, ctxErr(ctx, err)
	}
	if !stop() {
		// The context fired after the reply was read: the deadline it set
		// would break the next exchange on this connection.
		return resp.StatusCode, bytes.TrimSpace(body), false, true, nil
	}
	return resp.StatusCode, bytes.TrimSpace(body), !resp.Close, true, nil
}

// ctxErr prefers the context's error to the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

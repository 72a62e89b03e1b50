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

// Client talks to one executor over its unix socket. It keeps one
// keep-alive connection and does each exchange on the caller's goroutine
// (http.Request.Write, http.ReadResponse), which spares the two goroutine
// hand-offs per request of an http.Transport: the executor serves one
// request at a time anyway.
type Client struct {
	path   string
	dialer net.Dialer

	mu   sync.Mutex
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// NewClient returns a client for the executor listening on socketPath.
func NewClient(socketPath string) *Client {
	return &Client{path: socketPath, dialer: net.Dialer{Timeout: 5 * time.Second}}
}

// Close closes the connection.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeConnLocked()
}

func (c *Client) closeConnLocked() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br, c.bw = nil, nil, nil
	}
}

// Load sends the code archive and handler.
func (c *Client) Load(ctx context.Context, handler string, code []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://executor/load", bytes.NewReader(code))
	if err != nil {
		return fmt.Errorf("executor load: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set(HandlerHeader, handler)
	status, body, err := c.do(req)
	if err != nil {
		return fmt.Errorf("executor load: %w", err)
	}
	switch status {
	case http.StatusOK:
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
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		reused := c.conn != nil
		if !reused {
			conn, err := c.dialer.DialContext(ctx, "unix", c.path)
			if err != nil {
				return 0, nil, err
			}
			c.conn, c.br, c.bw = conn, bufio.NewReaderSize(conn, 16<<10), bufio.NewWriterSize(conn, 16<<10)
		}
		status, body, replied, err := c.exchange(ctx, req)
		if err == nil {
			return status, body, nil
		}
		c.closeConnLocked()
		if !reused || replied || attempt > 0 || ctx.Err() != nil || req.GetBody == nil {
			return 0, nil, err
		}
		if req.Body, err = req.GetBody(); err != nil {
			return 0, nil, err
		}
	}
}

// exchange writes req on the open connection and reads the reply; replied
// tells whether any reply byte arrived.
func (c *Client) exchange(ctx context.Context, req *http.Request) (int, []byte, bool, error) {
	conn := c.conn
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := req.Write(c.bw); err != nil {
		return 0, nil, false, ctxErr(ctx, err)
	}
	if err := c.bw.Flush(); err != nil {
		return 0, nil, false, ctxErr(ctx, err)
	}
	if _, err := c.br.Peek(1); err != nil {
		return 0, nil, false, ctxErr(ctx, err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return 0, nil, true, ctxErr(ctx, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	_ = resp.Body.Close()
	if err != nil {
		return 0, nil, true, ctxErr(ctx, err)
	}
	if resp.Close {
		c.closeConnLocked()
	}
	return resp.StatusCode, bytes.TrimSpace(body), true, nil
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

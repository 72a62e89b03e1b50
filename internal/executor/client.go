package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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

// Client talks to one executor over its unix socket, with keep-alive.
type Client struct {
	http *http.Client
}

// NewClient returns a client for the executor listening on socketPath.
func NewClient(socketPath string) *Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:        4,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
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

func (c *Client) do(req *http.Request) (int, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, bytes.TrimSpace(body), nil
}

package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/wire"
)

// fakeNode answers like a node and records the last request body and headers.
type fakeNode struct {
	srv      *httptest.Server
	conns    atomic.Int64
	mu       sync.Mutex
	lastBody []byte
	lastHdr  http.Header
	lastPath string
}

func newFakeNode(t *testing.T, handler http.HandlerFunc) *fakeNode {
	t.Helper()
	n := &fakeNode{}
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.mu.Lock()
		n.lastBody, n.lastHdr, n.lastPath = b, r.Header.Clone(), r.URL.EscapedPath()
		n.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		handler(w, r)
	}))
	n.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.conns.Add(1)
		}
	}
	n.srv.Start()
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) last() (string, []byte, http.Header) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastPath, n.lastBody, n.lastHdr
}

func newClient(t *testing.T, n *fakeNode, opts ...Option) *Client {
	t.Helper()
	c, err := New(n.srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestNewNormalizesURL(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"http://127.0.0.1:1323", "http://127.0.0.1:1323", false},
		{"http://127.0.0.1:1323/", "http://127.0.0.1:1323", false},
		{"127.0.0.1:1323", "http://127.0.0.1:1323", false},
		{"https://node.example:8443", "https://node.example:8443", false},
		{"ftp://127.0.0.1", "", true},
		{"http://", "", true},
		{"http://a b", "", true},
	}
	for _, tc := range tests {
		c, err := New(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("New(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && c.BaseURL() != tc.want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", tc.in, c.BaseURL(), tc.want)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantMsg     string
		wantIs      error
	}{
		{"plain text 404", 404, "text/plain", "function nope does not exist\n", "function nope does not exist", ErrNotFound},
		{"json message 409", 409, "application/json", `{"message":"function hello already exists"}`, "function hello already exists", ErrConflict},
		{"json Error 500", 500, "application/json", `{"Success":false,"Error":"ZeroDivisionError"}`, "ZeroDivisionError", nil},
		{"plain 429", 429, "text/plain", "rejected: queue full", "rejected: queue full", ErrRejected},
		{"plain 400", 400, "text/plain", "MemoryMB must be between 16 and 65536", "MemoryMB must be between 16 and 65536", ErrBadRequest},
		{"empty 504", 504, "text/plain", "", "504 Gateway Timeout", ErrTimeout},
		{"json without message", 400, "application/json", `{"code":7}`, `{"code":7}`, ErrBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, err := newClient(t, n).Invoke(context.Background(), "fn", wire.InvocationRequest{})
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Error() != tc.wantMsg {
				t.Errorf("APIError = %d %q, want %d %q", apiErr.StatusCode, apiErr.Error(), tc.status, tc.wantMsg)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantIs)
			}
			for _, other := range []error{ErrNotFound, ErrConflict, ErrRejected, ErrBadRequest, ErrTimeout, ErrPending} {
				if other != tc.wantIs && errors.Is(err, other) {
					t.Errorf("error for status %d matches %v", tc.status, other)
				}
			}
		})
	}
}

func TestPoll(t *testing.T) {
	done := wire.InvocationResponse{Success: true, Result: "42", Duration: 0.5, ReqID: "r-done"}
	n := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/poll/r-done":
			writeJSON(w, 200, done)
		case "/poll/r-busy":
			writeJSON(w, 202, wire.PollPending{ReqID: "r-busy", Status: "running"})
		default:
			http.Error(w, "request unknown or expired", 404)
		}
	})
	c := newClient(t, n)
	tests := []struct {
		id      string
		want    *wire.InvocationResponse
		wantErr error
	}{
		{"r-done", &done, nil},
		{"r-busy", nil, ErrPending},
		{"r-gone", nil, ErrNotFound},
	}
	for _, tc := range tests {
		got, err := c.Poll(context.Background(), tc.id)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil) != (err != nil) {
			t.Errorf("Poll(%s) error = %v, want %v", tc.id, err, tc.wantErr)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Poll(%s) = %+v, want %+v", tc.id, got, tc.want)
		}
	}
	if errors.Is(ErrPending, ErrNotFound) {
		t.Error("ErrPending matches ErrNotFound")
	}
}

func TestInvokeRequests(t *testing.T) {
	n := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		var req wire.InvocationRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad json", 400)
			return
		}
		if req.Async {
			writeJSON(w, 200, wire.AsyncResponse{ReqID: "r-1"})
			return
		}
		writeJSON(w, 200, wire.InvocationResponse{Success: true, Result: `"hi"`})
	})
	c := newClient(t, n, WithHeader("X-Client", "test"))
	ctx := context.Background()

	resp, err := c.Invoke(ctx, "my fn", wire.InvocationRequest{Params: map[string]any{"n": 3}, Async: true, QoSClass: wire.ClassPerformance}, WithRequestHeader("X-Hops", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Success || resp.Result != `"hi"` {
		t.Errorf("Invoke = %+v", resp)
	}
	path, body, hdr := n.last()
	if path != "/invoke/my%20fn" {
		t.Errorf("path %q, want /invoke/my%%20fn", path)
	}
	want := `{"Params":{"n":3},"QoSClass":1,"QoSMaxRespT":0,"Async":false,"ReturnOutput":false}`
	if string(body) != want {
		t.Errorf("body %s, want %s", body, want)
	}
	if hdr.Get("X-Hops") != "1" || hdr.Get("X-Client") != "test" || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v lack X-Hops, X-Client or Content-Type", hdr)
	}

	async, err := c.InvokeAsync(ctx, "fn", wire.InvocationRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if async.ReqID != "r-1" {
		t.Errorf("InvokeAsync ReqID = %q, want r-1", async.ReqID)
	}
	if _, body, hdr := n.last(); !strings.Contains(string(body), `"Async":true`) || hdr.Get("X-Hops") != "" {
		t.Errorf("async body %s / X-Hops %q", body, hdr.Get("X-Hops"))
	}
}

func TestFunctionCalls(t *testing.T) {
	n := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "POST /create":
			writeJSON(w, 200, wire.CreatedResponse{Created: "hello"})
		case "POST /update":
			writeJSON(w, 200, wire.UpdatedResponse{Updated: "hello"})
		case "POST /delete":
			writeJSON(w, 200, wire.DeletedResponse{Deleted: "hello"})
		case "GET /function":
			io.WriteString(w, "null")
		case "GET /function/hello":
			writeJSON(w, 200, wire.FunctionRequest{Name: "hello", Runtime: "python", MemoryMB: 128, Handler: "hello.handler"})
		case "POST /prewarm":
			writeJSON(w, 200, wire.PrewarmResponse{Prewarmed: 2})
		case "GET /status":
			writeJSON(w, 200, wire.StatusResponse{URL: "http://127.0.0.1:1323", AvailableMemMB: 512})
		default:
			http.Error(w, "no route", 404)
		}
	})
	c := newClient(t, n)
	ctx := context.Background()
	fn := wire.FunctionRequest{Name: "hello", Runtime: "python", Handler: "hello.handler", TarFunctionCode: "AAAA"}

	if r, err := c.Create(ctx, fn); err != nil || r.Created != "hello" {
		t.Errorf("Create = %+v, %v", r, err)
	}
	if _, body, _ := n.last(); !strings.Contains(string(body), `"TarFunctionCode":"AAAA"`) {
		t.Errorf("create body %s lacks the code", body)
	}
	if r, err := c.Update(ctx, fn); err != nil || r.Updated != "hello" {
		t.Errorf("Update = %+v, %v", r, err)
	}
	if r, err := c.Delete(ctx, "hello"); err != nil || r.Deleted != "hello" {
		t.Errorf("Delete = %+v, %v", r, err)
	}
	if _, body, _ := n.last(); string(body) != `{"Name":"hello"}` {
		t.Errorf("delete body %s", body)
	}
	if names, err := c.List(ctx); err != nil || names == nil || len(names) != 0 {
		t.Errorf("List = %#v, %v; want an empty, non-nil slice", names, err)
	}
	if d, err := c.Describe(ctx, "hello"); err != nil || d.Handler != "hello.handler" {
		t.Errorf("Describe = %+v, %v", d, err)
	}
	if _, err := c.Describe(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Describe(nope) error = %v, want ErrNotFound", err)
	}
	if r, err := c.Prewarm(ctx, wire.PrewarmRequest{Function: "hello", Instances: 3}); err != nil || r.Prewarmed != 2 {
		t.Errorf("Prewarm = %+v, %v", r, err)
	}
	if _, body, _ := n.last(); string(body) != `{"Function":"hello","Instances":3,"ForceImagePull":false}` {
		t.Errorf("prewarm body %s", body)
	}
	if s, err := c.Status(ctx); err != nil || s.AvailableMemMB != 512 {
		t.Errorf("Status = %+v, %v", s, err)
	}
}

func TestInvokeReusesConnection(t *testing.T) {
	n := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/missing") {
			http.Error(w, strings.Repeat("function missing does not exist. ", 100), 404)
			return
		}
		writeJSON(w, 200, wire.InvocationResponse{Success: true})
	})
	c := newClient(t, n)
	for i := range 20 {
		name := "fn"
		if i%2 == 1 {
			name = "missing"
		}
		_, err := c.Invoke(context.Background(), name, wire.InvocationRequest{})
		if name == "fn" && err != nil {
			t.Fatal(err)
		}
		if name == "missing" && !errors.Is(err, ErrNotFound) {
			t.Fatalf("Invoke(missing) error = %v", err)
		}
	}
	if got := n.conns.Load(); got != 1 {
		t.Errorf("20 sequential invocations opened %d connections, want 1", got)
	}
}

func TestUnreachableNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := New("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Status(context.Background())
	var apiErr *APIError
	if err == nil || errors.As(err, &apiErr) || !strings.Contains(err.Error(), addr) {
		t.Errorf("Status on a closed port: %v; want a non-API error naming %s", err, addr)
	}
}

func BenchmarkInvoke(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		writeJSON(w, 200, wire.InvocationResponse{Success: true, Result: `{"IsPrime":true}`, Duration: 0.001})
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	req := wire.InvocationRequest{Params: map[string]any{"n": 17}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Invoke(ctx, "isprime", req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCallsHaveTimeouts checks that a call without a deadline of its own
// does not wait forever on a node that accepts the connection and never
// answers.
func TestCallsHaveTimeouts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	c, err := New("http://"+l.Addr().String(), WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"status": func() error { _, err := c.Status(context.Background()); return err },
		"invoke": func() error { _, err := c.Invoke(context.Background(), "fn", wire.InvocationRequest{}); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s on a silent node: %v; want a deadline error", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s on a silent node still waiting after 30 s", name)
		}
	}
}

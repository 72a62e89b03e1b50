package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/httplimit"
)

// clientBound bounds the tests' waits; the server's limits are far shorter.
const clientBound = 15 * time.Second

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer("", h, httplimit.Timeouts{
		ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond,
		Write: 500 * time.Millisecond, Idle: time.Second, MaxHeaderBytes: 8 << 10,
	})
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestHalfSentHeadersAreClosed(t *testing.T) {
	addr := serve(t, http.NotFoundHandler())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /status HTTP/1.1\r\nHost: lb\r\n")
	conn.SetReadDeadline(time.Now().Add(clientBound))
	if _, err := io.ReadAll(conn); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection with half-sent headers still open after %v", clientBound)
	}
}

func TestLongInvocationOutlivesServerTimeouts(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(1500 * time.Millisecond):
			io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	}))
	client := &http.Client{Timeout: clientBound}
	resp, err := client.Post("http://"+addr+"/invoke/slow", "application/json", nil)
	if err != nil {
		t.Fatalf("1.5 s invocation through a server with a 0.5 s write timeout: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "done" {
		t.Errorf("got %d %q", resp.StatusCode, b)
	}
}

func TestShortRequestsAreBounded(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	client := &http.Client{Timeout: clientBound}
	resp, err := client.Get("http://" + addr + "/status")
	if err == nil {
		resp.Body.Close()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a hung /status held the client for %v: %v", clientBound, err)
	}
}

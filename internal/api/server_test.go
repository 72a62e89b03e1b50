package api_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/httplimit"
	"github.com/serverledge/serverledge/internal/testutil"
)

// clientBound bounds every wait of these tests on the server; the server's
// own limits are far shorter, so reaching it means a limit did not work.
const clientBound = 15 * time.Second

// dial opens a raw connection to n and writes a partial request.
func dial(t *testing.T, n *testNode, partial string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, partial); err != nil {
		t.Fatal(err)
	}
	return conn
}

// closedByServer reports whether the server closed conn (EOF or reset)
// before clientBound, after reading whatever reply it sent.
func closedByServer(t *testing.T, conn net.Conn) (string, bool) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(clientBound))
	b, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return string(b), false
	}
	return string(b), true
}

// stalledUpload starts a request with a large declared body and sends only
// its first bytes.
func stalledUpload(t *testing.T, n *testNode, path string) net.Conn {
	return dial(t, n, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"Name\":", path, 1<<20))
}

func TestHalfSentHeadersAreClosed(t *testing.T) {
	n := newTestNode(t, nodeOpts{serve: true, configure: func(c *api.Config) {
		c.Timeouts = httplimit.Timeouts{ReadHeader: 200 * time.Millisecond, Read: time.Second, Write: 2 * time.Second}
	}})
	conns := make([]net.Conn, 100)
	for i := range conns {
		conns[i] = dial(t, n, "POST /invoke/hello HTTP/1.1\r\nHost: node\r\nContent-Len")
	}
	for i, conn := range conns {
		if _, closed := closedByServer(t, conn); !closed {
			t.Fatalf("connection %d with half-sent headers still open after %v", i, clientBound)
		}
	}
	if code, _ := n.do(t, "GET", "/status", nil); code != 200 {
		t.Errorf("status after the half-sent requests: %d", code)
	}
}

func TestSlowBodyIsCut(t *testing.T) {
	n := newTestNode(t, nodeOpts{serve: true, configure: func(c *api.Config) {
		c.Timeouts = httplimit.Timeouts{ReadHeader: 200 * time.Millisecond, Read: 500 * time.Millisecond, Write: time.Second}
	}})
	conn := dial(t, n, "POST /create HTTP/1.1\r\nHost: node\r\nContent-Length: 100\r\n\r\n{\"Name\":")
	if reply, closed := closedByServer(t, conn); !closed {
		t.Fatalf("request whose body stalled still open after %v (reply %q)", clientBound, reply)
	}
	if code, body := n.do(t, "GET", "/function", nil); code != 200 || body != "[]\n" {
		t.Errorf("the cut request changed the function list: %d %s", code, body)
	}
}

func TestOversizedDeclaredBodyRefusedUnread(t *testing.T) {
	n := newTestNode(t, nodeOpts{serve: true, maxBody: 1 << 20})
	conn := dial(t, n, fmt.Sprintf("POST /create HTTP/1.1\r\nHost: node\r\nContent-Length: %d\r\n\r\n", 64<<20))
	conn.SetReadDeadline(time.Now().Add(clientBound))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no reply to a body declared over the limit (none of it sent): %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "exceeds the limit") {
		t.Errorf("got %d %s; want 400 naming the limit", resp.StatusCode, body)
	}
}

// TestStalledUploadsAreBounded fills every upload slot with stalled uploads
// and checks that further uploads are refused at once (so the memory they
// can hold is bounded by the slots) while /status and invocations work.
func TestStalledUploadsAreBounded(t *testing.T) {
	const slots = 2
	n := newTestNode(t, nodeOpts{serve: true, configure: func(c *api.Config) {
		c.MaxUploads = slots
		c.UploadThreshold = 1 << 10
		c.UploadWait = 50 * time.Millisecond
	}})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.echo")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	for range slots {
		stalledUpload(t, n, "/create")
	}
	testutil.WaitUntil(t, clientBound, "stalled uploads hold every slot", func() bool {
		return n.srv.UploadsInFlight() == slots
	})
	for i := range 20 {
		conn := stalledUpload(t, n, "/update")
		reply, closed := closedByServer(t, conn)
		if !closed || !strings.HasPrefix(reply, "HTTP/1.1 503") || !strings.Contains(reply, "too many uploads") {
			t.Fatalf("upload %d beyond the %d slots: closed %v, reply %q; want 503 and the connection closed", i, slots, closed, reply)
		}
	}
	if code, body := n.do(t, "GET", "/status", nil); code != 200 {
		t.Errorf("status while uploads stall: %d %s", code, body)
	}
	if code, body := n.do(t, "POST", "/invoke/hello", map[string]any{"Params": map[string]any{"x": 1}}); code != 200 {
		t.Errorf("invoke while uploads stall: %d %s", code, body)
	}
	if n.srv.UploadsInFlight() != slots {
		t.Errorf("%d uploads in flight, want the %d stalled ones", n.srv.UploadsInFlight(), slots)
	}
}

// TestUploadSlotFreedOnceBodyRead checks that a sync invocation with large
// parameters gives its upload slot back once its body is read, not when
// the function returns.
func TestUploadSlotFreedOnceBodyRead(t *testing.T) {
	n := newTestNode(t, nodeOpts{serve: true, configure: func(c *api.Config) {
		c.MaxUploads = 1
		c.UploadThreshold = 1 << 10
	}})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.sleep")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	done := make(chan int, 1)
	go func() {
		code, _ := n.do(t, "POST", "/invoke/hello", map[string]any{"Params": map[string]any{"ms": 2000, "pad": strings.Repeat("x", 4<<10)}})
		done <- code
	}()
	testutil.WaitUntil(t, clientBound, "the invocation runs", func() bool {
		return n.rt.Stats().Invokes > 0
	})
	if got := n.srv.UploadsInFlight(); got != 0 {
		t.Errorf("a running invocation holds %d upload slots after its body was read", got)
	}
	if code := <-done; code != 200 {
		t.Errorf("invocation: %d", code)
	}
}

// TestLongSyncInvokeOutlivesServerTimeouts checks that a synchronous
// invocation longer than the server's read and write timeouts still gets
// its response.
func TestLongSyncInvokeOutlivesServerTimeouts(t *testing.T) {
	n := newTestNode(t, nodeOpts{serve: true, configure: func(c *api.Config) {
		c.Timeouts = httplimit.Timeouts{ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond, Write: 500 * time.Millisecond}
		c.LongRequestTimeout = time.Minute
	}})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.sleep")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body := n.do(t, "POST", "/invoke/hello", map[string]any{"Params": map[string]any{"ms": 1500}})
	if code != 200 || !strings.Contains(body, `"Success":true`) {
		t.Fatalf("1.5 s invocation with a 0.3 s read and 0.5 s write timeout: %d %s", code, body)
	}
}

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/wire"
)

// Bounds of the load-and-fault test: it runs for at most faultLoadFor,
// with at most faultClients concurrent clients sending faultMaxRequests
// invocations in total.
const (
	faultLoadFor     = 60 * time.Second
	faultClients     = 4
	faultMaxRequests = 200000
	faultStalled     = 200
)

// loadTally counts the outcomes of the background load by status code.
type loadTally struct {
	mu     sync.Mutex
	codes  map[int]int
	errors []string
}

func (l *loadTally) add(code int, body []byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if len(l.errors) < 10 {
			l.errors = append(l.errors, err.Error())
		}
		l.codes[0]++
		return
	}
	l.codes[code]++
	if code >= 500 && len(l.errors) < 10 {
		l.errors = append(l.errors, fmt.Sprintf("%d %s", code, bytes.TrimSpace(body)))
	}
}

// hostileArchives returns create bodies whose archives the issue names as
// defects: a path of 256 KiB (quadratic checks), a gzip bomb of long names
// (memory), a directory replaced by a file, a component over 255 bytes.
func hostileArchives(t *testing.T) map[string][]byte {
	t.Helper()
	gz := func(entries ...*tar.Header) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, h := range entries {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Size > 0 {
				if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	file := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: tar.FormatPAX}
	}
	hello := &tar.Header{Name: "hello.py", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}
	var bomb []*tar.Header
	for i := range 64 {
		bomb = append(bomb, file(fmt.Sprintf("%d/%sf", i, strings.Repeat("a/", 60000))))
	}
	bodies := map[string][]byte{
		"256 KiB path":             gz(hello, file(strings.Repeat("d/", 128<<10)+"f")),
		"gzip bomb of names":       gz(append([]*tar.Header{hello}, bomb...)...),
		"directory then file":      gz(hello, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, file("d/x"), file("d")),
		"component over 255 bytes": gz(hello, file(strings.Repeat("n", 300))),
	}
	out := map[string][]byte{}
	for name, archive := range bodies {
		out[name] = mustJSON(wire.FunctionRequest{
			Name: "hostile", Runtime: "python", Handler: "hello.handler",
			TarFunctionCode: base64.StdEncoding.EncodeToString(archive),
		})
	}
	return out
}

// nestedParams returns an invoke body whose Params nest depth levels deep.
func nestedParams(depth int) []byte {
	return []byte(`{"Params":{"a":` + strings.Repeat(`{"a":`, depth) + `1` + strings.Repeat("}", depth) + `}}`)
}

// stallConnections opens n connections that send half a request and stop.
func stallConnections(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			break
		}
		fmt.Fprintf(c, "POST /create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 31457280\r\n\r\n{\"Name\":\"")
		conns = append(conns, c)
	}
	if len(conns) < n/2 {
		t.Fatalf("opened only %d of %d stalled connections", len(conns), n)
	}
	return conns
}

// closedByServer reports whether the server closed c (read gives EOF or a
// reply) within wait.
func closedByServer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !errors.As(err, &ne) || !ne.Timeout()
	}
}

// TestLoadAndFaults runs a bounded mixed load against a real node on a real
// external etcd while the faults of the hardening issue happen: hostile
// archives, deeply nested params, stalled half-sent requests, an idle
// container killed behind the node's back and an etcd outage during async
// requests. Rejected requests must be clear 4xx that change nothing, the
// load must never see a 5xx, and every accepted async result must be
// delivered once etcd is back.
func TestLoadAndFaults(t *testing.T) {
	t.Parallel()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	etcd := registrytest.StartEtcdProcess(t)
	n := startNode(t, nodeOpts{
		Etcd:         etcd.Endpoints(),
		PoolMemoryMB: 512,
		Args:         []string{"--api.timeout.header", "2s", "--api.timeout.read", "5s", "--scheduler.queue.maxwait", "1m"},
	})
	createPython(t, n, "steady", "hello.handler", 128, helloFiles)
	createPython(t, n, "later", "sleep.handler", 128, map[string]string{"sleep.py": sleepPy})
	// Warm both functions so that the etcd outage finds containers ready.
	invokeCLI(t, n, "steady", "-p", "name:warm")
	invokeCLI(t, n, "later", "-p", "s:0")
	functionsBefore := functionNames(t, n)

	tally := &loadTally{codes: map[int]int{}}
	stop := make(chan struct{})
	var sent atomic.Int64
	var load sync.WaitGroup
	deadline := time.Now().Add(faultLoadFor)
	body := mustJSON(map[string]any{"Params": map[string]any{"name": "load"}, "CanDoOffloading": false})
	for range faultClients {
		load.Go(func() {
			for time.Now().Before(deadline) && sent.Add(1) <= faultMaxRequests {
				select {
				case <-stop:
					return
				default:
				}
				code, b, err := tryDo(http.MethodPost, n.URL+"/invoke/steady", body)
				tally.add(code, b, err)
			}
		})
	}
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		load.Wait()
	})
	defer stopLoad()

	t.Run("hostile archives are refused and change nothing", func(t *testing.T) {
		for name, req := range hostileArchives(t) {
			code, b := do(t, http.MethodPost, n.URL+"/create", req)
			if code != http.StatusBadRequest || len(bytes.TrimSpace(b)) == 0 {
				t.Errorf("%s: %d %q; want 400 with a message", name, code, b)
			}
		}
		if got := functionNames(t, n); !slices.Equal(got, functionsBefore) {
			t.Errorf("functions after hostile creates %v; want %v", got, functionsBefore)
		}
	})

	t.Run("deeply nested params are a 400", func(t *testing.T) {
		code, b := do(t, http.MethodPost, n.URL+"/invoke/steady", nestedParams(2000))
		if code != http.StatusBadRequest || !strings.Contains(strings.ToLower(string(b)), "nest") {
			t.Errorf("2000-deep params: %d %q; want 400 naming the nesting", code, b)
		}
	})

	t.Run("stalled requests do not stall the node", func(t *testing.T) {
		addr := strings.TrimPrefix(n.URL, "http://")
		conns := stallConnections(t, addr, faultStalled)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		if st, err := tryStatus(n); err != nil || st.URL == "" {
			t.Fatalf("/status with %d stalled uploads: %v", len(conns), err)
		}
		if code, b, err := invokeHTTP(n, "steady", map[string]any{"name": "stalled"}); err != nil || code != http.StatusOK {
			t.Fatalf("invoke with %d stalled uploads: %d %s %v", len(conns), code, b, err)
		}
		// The read timeout (api.timeout.read) cuts every stalled body.
		for i, c := range conns[:10] {
			if !closedByServer(c, time.Minute) {
				t.Fatalf("stalled connection %d still open after a minute", i)
			}
		}
	})

	t.Run("an idle container killed behind the node's back", func(t *testing.T) {
		ids := nodeContainers(t, n, "later")
		if len(ids) == 0 {
			t.Fatal("no container of later")
		}
		if _, err := docker("kill", ids[0]); err != nil {
			t.Fatal(err)
		}
		var resp wire.InvocationResponse
		code, b, err := tryDo(http.MethodPost, n.URL+"/invoke/later", mustJSON(map[string]any{"Params": map[string]any{"s": 0}}))
		if err != nil || code != http.StatusOK || json.Unmarshal(b, &resp) != nil || !resp.Success {
			t.Fatalf("invoke after the kill: %d %s %v; want 200", code, b, err)
		}
	})

	t.Run("async results survive an etcd outage", func(t *testing.T) {
		var ids []string
		for range 3 {
			var async wire.AsyncResponse
			code, b := postJSON(t, n.URL+"/invoke/later", map[string]any{"Params": map[string]any{"s": 1}, "Async": true})
			if code != http.StatusOK || json.Unmarshal(b, &async) != nil || async.ReqID == "" {
				t.Fatalf("async invoke: %d %s", code, b)
			}
			ids = append(ids, async.ReqID)
		}
		etcd.Stop()
		// The warm load goes on while etcd is down: the node holds the
		// definitions and the containers.
		for _, id := range ids {
			eventually(t, time.Minute, "result of "+id+" served from the spool while etcd is down", func() bool {
				code, r, err := pollHTTP(n, id)
				return err == nil && code == http.StatusOK && r.Success
			})
		}
		etcd.Start()
		other := startNode(t, nodeOpts{Etcd: etcd.Endpoints()})
		for _, id := range ids {
			eventually(t, time.Minute, "result of "+id+" delivered to etcd", func() bool {
				code, r, err := pollHTTP(other, id)
				return err == nil && code == http.StatusOK && r.Success && r.Result == `"slept"`
			})
		}
	})

	stopLoad()
	tally.mu.Lock()
	defer tally.mu.Unlock()
	t.Logf("background load: %v", tally.codes)
	if tally.codes[http.StatusOK] == 0 {
		t.Errorf("no background invocation succeeded: %v %v", tally.codes, tally.errors)
	}
	for code, count := range tally.codes {
		if code == 0 || code >= 500 {
			t.Errorf("background load saw %d replies with status %d (0 = transport error): %v", count, code, tally.errors)
		}
	}
	if got := functionNames(t, n); !slices.Equal(got, functionsBefore) {
		t.Errorf("functions at the end %v; want %v", got, functionsBefore)
	}
}

// mustJSON encodes v, which cannot fail for the request types used here.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

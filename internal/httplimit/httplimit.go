// Package httplimit bounds what HTTP requests may hold of a server: time,
// through the server's timeouts and per-route deadlines for long requests,
// and memory, through a limit on the request bodies read at once.
package httplimit

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Timeouts are the limits of an http.Server; see http.Server for each.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included.
	Read time.Duration
	// Write bounds the time from the end of a request's headers to the end
	// of its response; Extend lifts it for long requests.
	Write time.Duration
	// Idle bounds the wait for the next request on a keep-alive connection.
	Idle time.Duration
	// MaxHeaderBytes bounds the size of a request's headers.
	MaxHeaderBytes int
}

// Apply sets t on srv.
func (t Timeouts) Apply(srv *http.Server) {
	srv.ReadHeaderTimeout = t.ReadHeader
	srv.ReadTimeout = t.Read
	srv.WriteTimeout = t.Write
	srv.IdleTimeout = t.Idle
	srv.MaxHeaderBytes = t.MaxHeaderBytes
}

// Extend returns middleware that lets a request take up to d for its
// response (a synchronous invocation runs as long as its function), past
// the server's read and write timeouts. Its body is still read under the
// server's read timeout: the read deadline moves only once the body has
// been read to its end, so that the server's background read, which
// watches for the client going away, does not time out and cancel the
// request's context while the handler runs.
func Extend(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			deadline := time.Now().Add(d)
			// A writer without deadlines (a test recorder) has no server
			// timeouts to lift either.
			_ = rc.SetWriteDeadline(deadline)
			extendRead := func() { _ = rc.SetReadDeadline(deadline) }
			if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
				extendRead()
			} else {
				r.Body = &eofBody{ReadCloser: r.Body, onEOF: sync.OnceFunc(extendRead)}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// eofBody calls onEOF when the body has been read to its end.
type eofBody struct {
	io.ReadCloser
	onEOF func()
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.onEOF()
	}
	return n, err
}

// Uploads bounds how many large request bodies are read at once, so that
// stalled or slow uploads hold a bounded amount of memory and connections.
// A body is large when its declared length exceeds the threshold, or when
// no length is declared (chunked). It is safe for concurrent use.
type Uploads struct {
	slots     chan struct{}
	threshold int64
	wait      time.Duration
}

// NewUploads returns a limit of limit large bodies at once, bodies over
// threshold bytes counting as large; a request that finds every slot taken
// waits up to wait for one before it is refused.
func NewUploads(limit int, threshold int64, wait time.Duration) *Uploads {
	return &Uploads{slots: make(chan struct{}, max(limit, 1)), threshold: threshold, wait: wait}
}

// InFlight returns how many large bodies are being read.
func (u *Uploads) InFlight() int { return len(u.slots) }

// Large reports whether r's body counts against the limit.
func (u *Uploads) Large(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	return r.ContentLength > u.threshold || r.ContentLength < 0
}

// Middleware holds a slot for every large body until it has been read to
// its end or the handler returns, whichever comes first: a long synchronous
// invocation with large parameters does not keep its slot while it runs. A
// request that gets no slot within the wait is answered 503 with a
// Retry-After header and its connection closed, without its body being read.
func (u *Uploads) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !u.Large(r) {
			next.ServeHTTP(w, r)
			return
		}
		if !u.acquire(r) {
			if r.Context().Err() != nil {
				return
			}
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(u.wait/time.Second))))
			http.Error(w, fmt.Sprintf("too many uploads in progress (%d at once); retry later", cap(u.slots)),
				http.StatusServiceUnavailable)
			return
		}
		release := sync.OnceFunc(func() { <-u.slots })
		defer release()
		r.Body = &eofBody{ReadCloser: r.Body, onEOF: release}
		next.ServeHTTP(w, r)
	})
}

func (u *Uploads) acquire(r *http.Request) bool {
	select {
	case u.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(u.wait)
	defer t.Stop()
	select {
	case u.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-r.Context().Done():
		return false
	}
}

// NewTransport returns an HTTP transport with a bound on every step before
// the response: dial, TLS handshake, 100-continue, and idle connections
// kept. The wait for the response itself is bounded per request by the
// caller's context or client timeout.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

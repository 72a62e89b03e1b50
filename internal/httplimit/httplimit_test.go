package httplimit_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/httplimit"
)

func TestLargeBodies(t *testing.T) {
	u := httplimit.NewUploads(1, 10, time.Millisecond)
	small := httptest.NewRequest("POST", "/create", strings.NewReader("12345"))
	large := httptest.NewRequest("POST", "/create", strings.NewReader(strings.Repeat("x", 11)))
	chunked := httptest.NewRequest("POST", "/create", io.NopCloser(strings.NewReader("x")))
	chunked.ContentLength = -1
	empty := httptest.NewRequest("GET", "/status", nil)
	for name, tc := range map[string]struct {
		r    *http.Request
		want bool
	}{"small": {small, false}, "large": {large, true}, "chunked": {chunked, true}, "empty": {empty, false}} {
		if got := u.Large(tc.r); got != tc.want {
			t.Errorf("%s: Large = %v, want %v", name, got, tc.want)
		}
	}
}

// TestSlotReleasedAtEndOfBody checks that a large body gives its slot back
// once read to its end, while the handler still runs, and that a second
// large body meanwhile waits for it instead of being refused.
func TestSlotReleasedAtEndOfBody(t *testing.T) {
	u := httplimit.NewUploads(1, 0, 5*time.Second)
	inHandler := make(chan int, 2)
	h := u.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		inHandler <- u.InFlight()
	}))
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/create", strings.NewReader("body")))
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if got := <-inHandler; got != 0 {
			t.Errorf("%d slots held after the body was read, want 0", got)
		}
	}
}

func TestFullRefuses(t *testing.T) {
	u := httplimit.NewUploads(1, 0, 10*time.Millisecond)
	release := make(chan struct{})
	started := make(chan struct{})
	h := u.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			close(started)
			<-release
		}
	}))
	go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/hold", strings.NewReader("body")))
	<-started
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/second", strings.NewReader("body")))
	close(release)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || rec.Header().Get("Connection") != "close" {
		t.Errorf("second upload with the slot held: %d %v; want 503 with Retry-After and Connection: close", rec.Code, rec.Header())
	}
}

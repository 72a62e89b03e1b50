package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/memreg"
)

// TestPprofOptIn checks that /debug/pprof/ is served only with Pprof set.
func TestPprofOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		reg := memreg.New()
		cache, err := registry.NewCache(reg, 4)
		if err != nil {
			t.Fatal(err)
		}
		srv := api.New(api.Config{Pprof: on, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, reg, cache, nil, nil)
		ts := httptest.NewServer(srv.Handler())
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
			resp, err := http.Get(ts.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			if resp.StatusCode != want {
				t.Errorf("pprof %v: GET %s: status %d, want %d", on, path, resp.StatusCode, want)
			}
		}
		ts.Close()
	}
}

package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/serverledge/serverledge/internal/function"
)

// Limits on fetching a TarFunctionCode given as a URL, documented in
// docs/api.md.
const (
	// DefaultCodeFetchTimeout bounds one fetch, redirects included.
	DefaultCodeFetchTimeout = 30 * time.Second
	// maxCodeURLLen is the longest code URL accepted.
	maxCodeURLLen = 2048
	// maxCodeRedirects is how many redirects a fetch follows.
	maxCodeRedirects = 5
	// maxSchemeLen is the longest URL scheme recognised as one.
	maxSchemeLen = 16
	// maxCodeFetches bounds the fetches running at once, and so the
	// memory fetched archives hold; more wait for a slot.
	maxCodeFetches = 2
)

// codeFetcher fetches code archives, each under a context with a timeout;
// it follows at most maxCodeRedirects redirects, and only to http(s) URLs.
var codeFetcher = &http.Client{
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxCodeRedirects {
			return fmt.Errorf("more than %d redirects", maxCodeRedirects)
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
		}
		return nil
	},
}

// codeURL reports whether code is a URL rather than base64, and parses it.
// Base64 never contains ':', so any "scheme://" prefix marks a URL.
func codeURL(code string) (*url.URL, bool, error) {
	// A scheme is short: look for "://" near the start only, so a large
	// base64 archive is not scanned.
	if !strings.Contains(code[:min(len(code), maxSchemeLen+3)], "://") {
		return nil, false, nil
	}
	if len(code) > maxCodeURLLen {
		return nil, true, httpError(http.StatusBadRequest, "TarFunctionCode URL is longer than %d bytes", maxCodeURLLen)
	}
	u, err := url.Parse(code)
	if err != nil {
		return nil, true, httpError(http.StatusBadRequest, "TarFunctionCode is not a valid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, true, httpError(http.StatusBadRequest, "TarFunctionCode URL scheme %q is not supported; use http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, true, httpError(http.StatusBadRequest, "TarFunctionCode URL has no host")
	}
	return u, true, nil
}

// fetchCode replaces a TarFunctionCode given as an http(s) URL with the
// base64 of the archive it points to, fetched under ctx with a size limit
// (function.MaxCodeBytes) and a timeout. Every failure is a 400 saying why.
func (s *Server) fetchCode(ctx context.Context, f *function.Function) error {
	u, isURL, err := codeURL(f.TarFunctionCode)
	if err != nil || !isURL {
		return err
	}
	// Refuse what Normalize would refuse anyway before fetching anything.
	if err := function.ValidateName(f.Name); err != nil {
		return httpError(http.StatusBadRequest, "%v", err)
	}
	if _, err := function.LookupRuntime(f.Runtime); err != nil {
		return httpError(http.StatusNotFound, "%v", err)
	}
	select {
	case s.fetchSlots <- struct{}{}:
		defer func() { <-s.fetchSlots }()
	case <-ctx.Done():
		return httpError(http.StatusServiceUnavailable, "waiting to fetch TarFunctionCode: %v", ctx.Err())
	}
	code, err := fetchArchive(ctx, u, s.cfg.CodeFetchTimeout)
	if err != nil {
		return httpError(http.StatusBadRequest, "fetching TarFunctionCode from %s: %v", u.Redacted(), err)
	}
	f.TarFunctionCode = base64.StdEncoding.EncodeToString(code)
	return nil
}

func fetchArchive(ctx context.Context, u *url.URL, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := codeFetcher.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no complete answer within %v", timeout)
		}
		return nil, errors.Unwrap(err) // drop the "Get URL:" prefix
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	if resp.ContentLength > function.MaxCodeBytes {
		return nil, fmt.Errorf("archive is %d bytes, the limit is %d", resp.ContentLength, function.MaxCodeBytes)
	}
	code, err := io.ReadAll(io.LimitReader(resp.Body, function.MaxCodeBytes+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return nil, fmt.Errorf("no complete answer within %v", timeout)
		}
		return nil, fmt.Errorf("reading the archive: %w", err)
	}
	if len(code) > function.MaxCodeBytes {
		return nil, fmt.Errorf("archive is larger than the limit of %d bytes", function.MaxCodeBytes)
	}
	if len(code) == 0 {
		return nil, errors.New("the archive is empty")
	}
	return code, nil
}

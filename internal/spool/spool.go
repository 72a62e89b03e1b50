// Package spool keeps the results of asynchronous invocations on the node's
// disk while the registry cannot take them, and hands them to the registry
// again, with backoff, until it does. The spool is bounded in bytes; a node
// restarted with results in its spool delivers them.
//
// Every result is one file, written to a temporary name, synced and renamed,
// so that a crash leaves either the whole result or none of it. File names
// are derived from request ids checked against a strict syntax; lookups go
// through an in-memory index, never from a caller's string to a path.
package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/serverledge/serverledge/internal/wire"
)

// Sentinel errors callers branch on.
var (
	// ErrFull means the result would take the spool over its size limit.
	ErrFull = errors.New("spool full")
	// ErrInvalid means the entry cannot be spooled (bad request id, no response).
	ErrInvalid = errors.New("invalid spool entry")
)

// Defaults used when a Config field is zero.
const (
	// DefaultMinBackoff is the pause after the first failed delivery.
	DefaultMinBackoff = 200 * time.Millisecond
	// DefaultMaxBackoff caps the pause between delivery attempts.
	DefaultMaxBackoff = 5 * time.Second
)

// suffix ends the name of every spooled result file.
const suffix = ".json"

// idRE is the syntax of a request id that may name a file.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$`)

// Entry is one spooled result.
type Entry struct {
	// ReqID is the id of the asynchronous request.
	ReqID string `json:"ReqID"`
	// Response is the result to deliver.
	Response *wire.InvocationResponse `json:"Response"`
	// Expires is when the result stops being pollable; an entry not
	// delivered by then is dropped.
	Expires time.Time `json:"Expires"`
}

// DeliverFunc stores e in the registry; a nil error removes it from the spool.
type DeliverFunc func(ctx context.Context, e Entry) error

// Config configures a Spool.
type Config struct {
	// Dir holds the spooled results; it is created (mode 0700) if needed.
	Dir string
	// MaxBytes bounds the total size of the spooled files.
	MaxBytes int64
	// Deliver stores one entry in the registry.
	Deliver DeliverFunc
	// MinBackoff and MaxBackoff bound the pause between delivery attempts
	// while deliveries fail; defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives delivery failures; default slog.Default().
	Logger *slog.Logger
}

// Spool is a bounded on-disk queue of results. It is safe for concurrent use.
type Spool struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	mu    sync.Mutex
	index map[string]meta
	bytes int64
}

// meta is what the index keeps of one entry.
type meta struct {
	size    int64
	expires time.Time
}

// Open opens (creating it if needed) the spool in cfg.Dir and indexes the
// results a previous run left there, dropping expired and unreadable ones.
func Open(cfg Config) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("spool: no directory configured")
	}
	if cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("spool: size limit must be positive, got %d", cfg.MaxBytes)
	}
	if cfg.Deliver == nil {
		return nil, errors.New("spool: no delivery function")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", cfg.Dir, err)
	}
	s := &Spool{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "spool"),
		wake:  make(chan struct{}, 1),
		index: make(map[string]meta),
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load indexes the files of the spool directory.
func (s *Spool) load() error {
	files, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", s.cfg.Dir, err)
	}
	now := time.Now()
	for _, f := range files {
		name := f.Name()
		path := filepath.Join(s.cfg.Dir, name)
		if !f.Type().IsRegular() {
			continue
		}
		if !strings.HasSuffix(name, suffix) {
			// A temporary file of a write a crash interrupted.
			os.Remove(path)
			continue
		}
		e, size, err := readEntry(path)
		if err != nil || e.ReqID+suffix != name {
			s.log.Warn("dropping unreadable spooled result", "file", path, "err", err)
			os.Remove(path)
			continue
		}
		if !now.Before(e.Expires) {
			s.log.Warn("dropping expired spooled result", "req", e.ReqID)
			os.Remove(path)
			continue
		}
		s.index[e.ReqID] = meta{size: size, expires: e.Expires}
		s.bytes += size
	}
	if len(s.index) > 0 {
		s.log.Info("spooled results to deliver", "count", len(s.index), "bytes", s.bytes)
		s.notify()
	}
	return nil
}

func readEntry(path string) (Entry, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Entry{}, 0, err
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, 0, err
	}
	if e.Response == nil || !idRE.MatchString(e.ReqID) {
		return Entry{}, 0, fmt.Errorf("%w: request %q", ErrInvalid, e.ReqID)
	}
	return e, int64(len(b)), nil
}

// Put writes e to the spool and wakes the delivery loop. It returns an error
// wrapping ErrFull when e would take the spool over its size limit, and
// ErrInvalid when e has no response or a request id unfit for a file name.
func (s *Spool) Put(e Entry) error {
	if e.Response == nil || !idRE.MatchString(e.ReqID) {
		return fmt.Errorf("spool: %w: request %q", ErrInvalid, e.ReqID)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("spool: encode %q: %w", e.ReqID, err)
	}
	size := int64(len(b))
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.index[e.ReqID].size
	if s.bytes-old+size > s.cfg.MaxBytes {
		return fmt.Errorf("spool: result %q (%d bytes) with %d bytes spooled exceeds the limit of %d: %w",
			e.ReqID, size, s.bytes-old, s.cfg.MaxBytes, ErrFull)
	}
	if err := writeFile(s.cfg.Dir, e.ReqID+suffix, b); err != nil {
		return fmt.Errorf("spool: write %q: %w", e.ReqID, err)
	}
	s.index[e.ReqID] = meta{size: size, expires: e.Expires}
	s.bytes += size - old
	s.notify()
	return nil
}

// writeFile writes b to dir/name through a synced temporary file.
func writeFile(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Get returns the spooled response of reqID, if the spool holds it.
func (s *Spool) Get(reqID string) (*wire.InvocationResponse, bool) {
	s.mu.Lock()
	m, ok := s.index[reqID]
	s.mu.Unlock()
	if !ok || !time.Now().Before(m.expires) {
		return nil, false
	}
	e, _, err := readEntry(filepath.Join(s.cfg.Dir, reqID+suffix))
	if err != nil {
		return nil, false
	}
	return e.Response, true
}

// Len returns how many results the spool holds.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Bytes returns the total size of the spooled results.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Run delivers spooled results until ctx ends: at once after every Put,
// and while deliveries fail, again after a pause that doubles from
// MinBackoff up to MaxBackoff. Entries stay on disk when ctx ends.
func (s *Spool) Run(ctx context.Context) {
	backoff := s.cfg.MinBackoff
	for {
		if s.deliverAll(ctx) {
			backoff = s.cfg.MinBackoff
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// deliverAll tries every entry, oldest expiry first, and stops at the first
// failure; it reports whether no delivery failed.
func (s *Spool) deliverAll(ctx context.Context) bool {
	s.mu.Lock()
	ids := make([]string, 0, len(s.index))
	for id := range s.index {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return s.index[a].expires.Compare(s.index[b].expires) })
	s.mu.Unlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return false
		}
		path := filepath.Join(s.cfg.Dir, id+suffix)
		e, _, err := readEntry(path)
		if err != nil {
			s.log.Error("spooled result unreadable; dropped", "req", id, "err", err)
			s.remove(id)
			continue
		}
		if !time.Now().Before(e.Expires) {
			s.log.Error("spooled result expired before the registry took it; dropped", "req", id)
			s.remove(id)
			continue
		}
		if err := s.cfg.Deliver(ctx, e); err != nil {
			s.log.Warn("registry still refuses spooled results", "req", id, "pending", s.Len(), "err", err)
			return false
		}
		s.log.Info("spooled result delivered", "req", id)
		s.remove(id)
	}
	return true
}

// remove drops id from the index and the disk.
func (s *Spool) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.index[id]
	if !ok {
		return
	}
	if err := os.Remove(filepath.Join(s.cfg.Dir, id+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing spooled result", "req", id, "err", err)
	}
	delete(s.index, id)
	s.bytes -= m.size
}

// notify wakes Run without blocking.
func (s *Spool) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/serverledge/serverledge/internal/function"
)

// maxCodeEntries bounds the number of code archives a CodeCache keeps,
// whatever their size.
const maxCodeEntries = 4096

// codeKey names one version of a function's code.
type codeKey struct {
	name, version string
}

// CodeCache is a read-through LRU cache of decoded function code, bounded
// in bytes and keyed by function name and version, so that an update never
// serves the code of another version. Concurrent reads of the same missing
// code share one registry read. It is safe for concurrent use.
type CodeCache struct {
	reg      Registry
	maxBytes int64

	mu       sync.Mutex
	lru      *simplelru.LRU[codeKey, []byte]
	bytes    int64
	fetching map[codeKey]*codeFetch
}

// codeFetch is a registry read in progress; done is closed when code and
// err are set.
type codeFetch struct {
	done chan struct{}
	code []byte
	err  error
	// keep is false when the result must not be cached: its version was
	// replaced while it was read.
	keep bool
}

// NewCodeCache returns a cache holding up to maxBytes bytes of code; with
// maxBytes ≤ 0 nothing is kept and every read goes to the registry.
func NewCodeCache(reg Registry, maxBytes int64) (*CodeCache, error) {
	c := &CodeCache{reg: reg, maxBytes: max(maxBytes, 0), fetching: make(map[codeKey]*codeFetch)}
	l, err := simplelru.NewLRU(maxCodeEntries, func(_ codeKey, code []byte) {
		c.bytes -= int64(len(code))
	})
	if err != nil {
		return nil, fmt.Errorf("code cache: %w", err)
	}
	c.lru = l
	return c, nil
}

// Get returns the decoded code of f's name at f's version (nil for a
// function without code), from the cache when present. The returned slice is
// shared: callers must not modify it. It returns ErrNotFound (wrapped) when
// the function was deleted or replaced by another version.
func (c *CodeCache) Get(ctx context.Context, f *function.Function) ([]byte, error) {
	if f == nil {
		return nil, errors.New("code cache: nil function")
	}
	key := codeKey{f.Name, f.Version}
	for {
		c.mu.Lock()
		if code, ok := c.lru.Get(key); ok {
			c.mu.Unlock()
			return code, nil
		}
		if fe, ok := c.fetching[key]; ok {
			c.mu.Unlock()
			select {
			case <-fe.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if isContextErr(fe.err) && ctx.Err() == nil {
				continue // the reader's request ended, not ours: read again
			}
			return fe.code, fe.err
		}
		fe := &codeFetch{done: make(chan struct{}), keep: true}
		c.fetching[key] = fe
		c.mu.Unlock()

		fe.code, fe.err = c.reg.GetCode(ctx, f.Name, f.Version)
		c.mu.Lock()
		delete(c.fetching, key)
		if fe.err == nil && fe.keep {
			c.addLocked(key, fe.code)
		}
		c.mu.Unlock()
		close(fe.done)
		return fe.code, fe.err
	}
}

// addLocked caches code under key, evicting the least recently used code
// until the total fits; code larger than the whole budget is not cached.
func (c *CodeCache) addLocked(key codeKey, code []byte) {
	size := int64(len(code))
	if c.maxBytes == 0 || size > c.maxBytes || c.lru.Contains(key) {
		return
	}
	c.lru.Add(key, code)
	c.bytes += size
	for c.bytes > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// Forget drops the cached code of every version of the named function but
// keep ("" drops them all), as after an update or a delete.
func (c *CodeCache) Forget(name, keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, key := range c.lru.Keys() {
		if key.name == name && key.version != keep {
			c.lru.Remove(key)
		}
	}
	for key, fe := range c.fetching {
		if key.name == name && key.version != keep {
			fe.keep = false
		}
	}
}

// Bytes returns the number of bytes of code held.
func (c *CodeCache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Len returns the number of code archives held.
func (c *CodeCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

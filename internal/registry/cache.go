package registry

import (
	"context"
	"log/slog"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/serverledge/serverledge/internal/function"
)

// Cache is a read-through LRU cache of function definitions, without their
// code, kept coherent with the registry by a watch. Code is read by version
// when a container needs it (see CodeCache).
type Cache struct {
	reg   Registry
	cache *lru.Cache[string, *function.Function]
}

// NewCache returns a cache holding up to size definitions.
func NewCache(reg Registry, size int) (*Cache, error) {
	c, err := lru.New[string, *function.Function](size)
	if err != nil {
		return nil, err
	}
	return &Cache{reg: reg, cache: c}, nil
}

// Get returns the function, from the cache when present.
func (c *Cache) Get(ctx context.Context, name string) (*function.Function, error) {
	if f, ok := c.cache.Get(name); ok {
		return f, nil
	}
	f, err := c.reg.GetFunction(ctx, name)
	if err != nil {
		return nil, err
	}
	f = withoutCode(f)
	c.cache.Add(name, f)
	return f, nil
}

// Peek returns the cached definition of name, if any, without reading the
// registry or changing the cache's order.
func (c *Cache) Peek(name string) (*function.Function, bool) {
	return c.cache.Peek(name)
}

// withoutCode returns f, or a copy of it without code if it has code: the
// cache never holds code, whatever the registry returns.
func withoutCode(f *function.Function) *function.Function {
	if f == nil || f.TarFunctionCode == "" {
		return f
	}
	def := f.WithoutCode()
	return &def
}

// Invalidate drops a cached definition.
func (c *Cache) Invalidate(name string) {
	c.cache.Remove(name)
}

// Watch applies registry changes to the cache and passes each event to
// onEvent (which may be nil) until ctx ends. A broken watch is re-established
// after a short pause, dropping the whole cache since events may have been missed.
func (c *Cache) Watch(ctx context.Context, log *slog.Logger, onEvent func(FunctionEvent)) {
	for ctx.Err() == nil {
		events, err := c.reg.WatchFunctions(ctx)
		if err != nil {
			log.Warn("function watch failed; retrying", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		c.cache.Purge()
		for ev := range events {
			switch ev.Type {
			case FunctionPut:
				if ev.Function != nil {
					c.cache.Add(ev.Name, withoutCode(ev.Function))
				} else {
					c.cache.Remove(ev.Name)
				}
			case FunctionDeleted:
				c.cache.Remove(ev.Name)
			}
			if onEvent != nil {
				onEvent(ev)
			}
		}
		if ctx.Err() == nil {
			log.Warn("function watch closed; re-establishing")
			sleep(ctx, 200*time.Millisecond)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

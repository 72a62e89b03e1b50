package node

import (
	"context"
	"time"

	"github.com/serverledge/serverledge/internal/container"
)

// maxWatchBackoff bounds the pause before the event watch reconnects.
const maxWatchBackoff = 30 * time.Second

// loop runs the janitor every JanitorInterval — expiry, stem-cell refill and
// a sweep of stray containers — and refills stem cells whenever woken, until
// ctx is done.
func (p *Pool) loop(ctx context.Context) {
	ticker := time.NewTicker(p.cfg.JanitorInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			p.expire()
			p.refill()
			p.sweep(ctx)
		case <-p.kick:
			p.refill()
		}
	}
}

// sweep removes containers of this node the pool does not own and drops
// from the pool those the runtime no longer runs (see reconcile), bounding
// the Docker calls by one janitor interval.
func (p *Pool) sweep(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, p.cfg.JanitorInterval)
	defer cancel()
	n, _, err := p.reconcile(sctx)
	if err != nil {
		p.log.Warn("sweeping stray containers", "err", err)
		return
	}
	if n > 0 {
		p.log.Info("removed containers of this node the pool did not own", "count", n)
	}
}

// expire removes the idle containers unused for longer than Expiration.
func (p *Pool) expire() {
	if p.cfg.Expiration <= 0 {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	now := time.Now()
	n := 0
	for _, c := range p.lru.Values() {
		if now.Sub(c.lastUsed) < p.cfg.Expiration {
			continue
		}
		p.retireLocked(c)
		n++
	}
	p.counters.Expirations += uint64(n)
	p.mu.Unlock()
	if n > 0 {
		p.log.Debug("expired idle containers", "count", n)
		p.freed()
	}
}

// refill starts stem cells until every runtime has its target, using free
// memory only: it never evicts anything for a stem cell. A runtime whose
// stem cells fail to start is retried after an exponential backoff.
func (p *Pool) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := time.Now()
	for _, rt := range sortedKeys(p.stemTargets) {
		if now.Before(p.stemRetry[rt]) {
			continue
		}
		for len(p.stems[rt])+p.stemStarting[rt] < p.stemTargets[rt] && p.freeMemoryLocked() >= p.cfg.StemCellMemoryMB {
			c := &Container{pool: p, name: newName(), runtime: rt, image: p.stemImages[rt],
				memoryMB: p.cfg.StemCellMemoryMB, state: stateStemStarting}
			p.usedMemory += c.memoryMB
			p.containers[c.name] = c
			p.stemStarting[rt]++
			p.goLocked(func() { p.startStem(c) })
		}
	}
}

// startStem creates and starts stem cell c.
func (p *Pool) startStem(c *Container) {
	err := p.create(p.bgCtx, c, c.memoryMB, 0, "")
	p.mu.Lock()
	p.stemStarting[c.runtime]--
	if err != nil {
		delay := min(max(2*p.stemDelay[c.runtime], time.Second), maxStemBackoff)
		p.stemDelay[c.runtime] = delay
		p.stemRetry[c.runtime] = time.Now().Add(delay)
		p.mu.Unlock()
		if !p.isClosed() {
			p.log.Warn("starting stem cell failed", "runtime", c.runtime, "retry_in", delay, "err", err)
		}
		p.abortStart(c)
		return
	}
	delete(p.stemDelay, c.runtime)
	delete(p.stemRetry, c.runtime)
	c.state = stateStem
	if p.closed {
		p.retireLocked(c)
		p.mu.Unlock()
		return
	}
	p.stems[c.runtime] = append(p.stems[c.runtime], c)
	p.mu.Unlock()
}

// isClosed reports whether Shutdown was called.
func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// watch follows the runtime's events of this node's containers until ctx is
// done, so that a container that dies or is removed behind the pool's back
// leaves the pool at once rather than at the next sweep. A broken event
// stream is reopened after a backoff, replaying the events since the last
// one seen.
func (p *Pool) watch(ctx context.Context, since time.Time) {
	delay := time.Second
	for {
		err := p.rt.Watch(ctx, container.WatchOptions{Labels: p.nodeLabels(), Since: since}, func(ev container.Event) {
			since = ev.Time
			delay = time.Second
			p.onEvent(ev)
		})
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("watching container events failed; the janitor's sweep still reconciles", "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, maxWatchBackoff)
	}
}

// onEvent takes a container the runtime reports dead or removed out of
// service.
func (p *Pool) onEvent(ev container.Event) {
	p.mu.Lock()
	c := p.containers[ev.Name]
	if p.closed || c == nil || c.id != ev.ID || !p.vanishedLocked(c) {
		p.mu.Unlock()
		return
	}
	fn := c.function
	p.mu.Unlock()
	p.log.Warn("container stopped behind the pool's back", "container", ev.Name, "function", fn, "event", string(ev.Kind))
	p.freed()
}

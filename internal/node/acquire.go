package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/function"
)

// Acquire returns a busy container ready to invoke f. It prefers a
// container of f's current version with a free slot (warm = true): first a
// busy one serving fewer than f.Concurrency() requests, the fullest first,
// so that requests pack into few containers and the others stay idle (to
// expire, or to be evicted for other functions), then an idle one. Otherwise it cold-starts
// one: it takes a stem cell of f's runtime (resize and load only) or creates,
// starts and loads a new container. The memory of a cold start is reserved
// before the slow work, evicting idle containers least recently used first
// if needed; evicted containers are removed in the background.
//
// Acquire returns ErrNoCapacity (wrapped) when f's memory cannot be made to
// fit or its CPUDemand does not fit the CPU budget of busy containers, and
// ErrClosed after Shutdown. A failed cold start releases its reservation and
// returns the wrapped cause (container.ErrBadCode and ErrImageMissing stay
// detectable with errors.Is). Concurrent cold starts run in parallel.
func (p *Pool) Acquire(ctx context.Context, f *function.Function) (c *Container, warm bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	rtName, image, err := p.resolve(f)
	if err != nil {
		return nil, false, err
	}
	memory, cpus := memoryOf(f), cpusOf(f)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, ErrClosed
	}
	retired := p.noteVersionLocked(f.Name, f.Version)
	if c, err := p.takeWarmLocked(f, cpus); c != nil || err != nil {
		p.mu.Unlock()
		if retired {
			p.freed()
		}
		return c, c != nil, err
	}
	if err := p.tooLarge(f.Name, memory, cpus); err != nil {
		p.mu.Unlock()
		if retired {
			p.freed()
		}
		return nil, false, err
	}
	c = p.takeStemLocked(rtName, image, memory)
	fromStem := c != nil
	if !fromStem {
		if !p.reserveLocked(memory) {
			free := p.freeMemoryLocked()
			p.mu.Unlock()
			if retired {
				p.freed()
			}
			return nil, false, fmt.Errorf("%w: %s needs %d MB, %d MB free and not enough idle containers to evict", ErrNoCapacity, f.Name, memory, free)
		}
		c = &Container{pool: p, name: newName(), runtime: rtName, image: image, memoryMB: memory}
		p.containers[c.name] = c
	}
	c.state = stateStarting
	c.function, c.version, c.cpus = f.Name, f.Version, cpus
	c.slots, c.inflight = f.Concurrency(), 1
	p.busyCPUs += cpus
	p.starting++
	p.pending++
	p.mu.Unlock()
	if fromStem {
		p.kickRefill()
	}
	defer p.untrack()

	fromStem, err = p.specialize(ctx, c, f, fromStem)
	if err != nil {
		p.abortStart(c)
		return nil, false, fmt.Errorf("cold start of %s: %w", f.Name, err)
	}

	p.mu.Lock()
	p.starting--
	if p.closed {
		c.state = stateBusy
		p.retireLocked(c)
		p.mu.Unlock()
		return nil, false, ErrClosed
	}
	c.state = stateBusy
	p.shareLocked(c)
	p.counters.ColdStarts++
	if fromStem {
		p.counters.StemCellStarts++
	}
	p.mu.Unlock()
	return c, false, nil
}

// CheckFits returns ErrTooLarge (wrapped together with ErrNoCapacity) when
// f needs more memory or CPU than the node's whole pool, so that waiting
// for capacity could never help.
func (p *Pool) CheckFits(f *function.Function) error {
	return p.tooLarge(f.Name, memoryOf(f), cpusOf(f))
}

// tooLarge reports a demand beyond the pool's totals, which never change
// after New.
func (p *Pool) tooLarge(name string, memory int64, cpus float64) error {
	if memory > p.cfg.MemoryMB {
		return fmt.Errorf("%w: %w: %s needs %d MB, the node has %d MB", ErrNoCapacity, ErrTooLarge, name, memory, p.cfg.MemoryMB)
	}
	if cpus > p.totalCPUs {
		return fmt.Errorf("%w: %w: %s needs %.2f CPUs, the node has %.2f", ErrNoCapacity, ErrTooLarge, name, cpus, p.totalCPUs)
	}
	return nil
}

// Busy returns how many containers of the named function are serving at
// least one request now.
func (p *Pool) Busy(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.containers {
		if c.state == stateBusy && c.function == name {
			n++
		}
	}
	return n
}

// TryWarm is Acquire limited to warm containers: it never starts a
// container and never blocks. ok is false when no container of f's current
// version has a free slot, or only an idle one has and f's CPUDemand does
// not fit.
func (p *Pool) TryWarm(f *function.Function) (c *Container, ok bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false
	}
	retired := p.noteVersionLocked(f.Name, f.Version)
	c, _ = p.takeWarmLocked(f, cpusOf(f))
	p.mu.Unlock()
	if retired {
		p.freed()
	}
	return c, c != nil
}

// takeWarmLocked hands out a free slot of a container of f's version: in
// the busy container serving the most requests below its slots if any (it
// holds its CPU demand already), else in the most recently used idle
// container. It returns an ErrNoCapacity error when an idle container is
// needed and f's CPU demand does not fit, and nothing when there is no
// container with a free slot.
func (p *Pool) takeWarmLocked(f *function.Function, cpus float64) (*Container, error) {
	var best *Container
	for _, c := range p.shared[f.Name] {
		if c.version == f.Version && c.inflight < c.slots && !c.broken.Load() && (best == nil || c.inflight > best.inflight) {
			best = c
		}
	}
	if best != nil {
		best.inflight++
		if best.inflight >= best.slots {
			p.dropSharedLocked(best)
		}
		p.counters.WarmStarts++
		return best, nil
	}
	if !p.cpuFitsLocked(cpus) {
		if err := p.tooLarge(f.Name, 0, cpus); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s needs %.2f CPUs, %.2f free", ErrNoCapacity, f.Name, cpus, p.totalCPUs-p.busyCPUs)
	}
	list := p.idle[f.Name]
	for i := len(list) - 1; i >= 0; i-- {
		c := list[i]
		if c.version != f.Version {
			continue
		}
		p.dropIdleLocked(c)
		c.state = stateBusy
		c.cpus = cpus
		c.inflight = 1
		p.shareLocked(c)
		p.busyCPUs += cpus
		p.counters.WarmStarts++
		return c, nil
	}
	return nil, nil
}

// shareLocked lists busy container c among those that may take more
// requests when it has a free slot.
func (p *Pool) shareLocked(c *Container) {
	if c.inflight < c.slots {
		p.shared[c.function] = append(p.shared[c.function], c)
	}
}

// takeStemLocked takes a ready stem cell of the runtime and image and
// recounts it at memory MB, evicting if it grows. It returns nil when there
// is no stem cell or the growth does not fit.
func (p *Pool) takeStemLocked(rtName, image string, memory int64) *Container {
	list := p.stems[rtName]
	if len(list) == 0 || p.stemImages[rtName] != image {
		return nil
	}
	c := list[len(list)-1]
	p.stems[rtName] = list[:len(list)-1]
	delta := memory - c.memoryMB
	if delta > 0 && !p.reserveLocked(delta) {
		p.stems[rtName] = append(p.stems[rtName], c)
		return nil
	}
	if delta < 0 {
		p.usedMemory += delta
	}
	c.memoryMB = memory
	return c
}

// specialize makes c ready to invoke f: a stem cell is resized and loaded;
// otherwise a container is created, started and loaded. If resizing a stem
// cell or loading the code into it fails for another reason than the code
// itself (ErrBadCode), the stem cell is dropped and a new container is
// created under the same reservation. It reports whether c is still the
// stem cell it was given.
func (p *Pool) specialize(ctx context.Context, c *Container, f *function.Function, fromStem bool) (bool, error) {
	if fromStem {
		err := p.specializeStem(ctx, c, f)
		if err == nil || ctx.Err() != nil || errors.Is(err, container.ErrBadCode) {
			return true, err
		}
		p.log.Warn("specializing stem cell failed, creating a new container", "container", c.name, "err", err)
		p.mu.Lock()
		delete(p.containers, c.name)
		p.removeAsyncLocked(c.id)
		c.name, c.id = newName(), ""
		p.containers[c.name] = c
		p.mu.Unlock()
	}
	if err := p.create(ctx, c, memoryOf(f), cpusOf(f), f.Name); err != nil {
		return false, err
	}
	return false, p.load(ctx, c, f)
}

// specializeStem resizes stem cell c to f's limits unless they match, and
// loads f's code into it.
func (p *Pool) specializeStem(ctx context.Context, c *Container, f *function.Function) error {
	if c.limitMB != memoryOf(f) || c.limitCPUs != cpusOf(f) {
		if err := p.rt.Resize(ctx, c.id, memoryOf(f), cpusOf(f)); err != nil {
			return fmt.Errorf("resizing stem cell: %w", err)
		}
		c.limitMB, c.limitCPUs = memoryOf(f), cpusOf(f)
	}
	return p.load(ctx, c, f)
}

// create creates and starts the container described by c and sets c.id.
func (p *Pool) create(ctx context.Context, c *Container, memory int64, cpus float64, fn string) error {
	id, err := p.rt.Create(ctx, container.Spec{
		Name:     c.name,
		Image:    c.image,
		MemoryMB: memory,
		CPUs:     cpus,
		Labels:   p.labels(c.runtime, fn),
	})
	if err != nil {
		if errors.Is(err, container.ErrImageNotFound) {
			return fmt.Errorf("%w: %s: %w", ErrImageMissing, c.image, err)
		}
		return fmt.Errorf("creating container: %w", err)
	}
	p.mu.Lock()
	c.id = id
	c.limitMB, c.limitCPUs = memory, cpus
	p.mu.Unlock()
	if err := p.rt.Start(ctx, id); err != nil {
		return fmt.Errorf("starting container: %w", err)
	}
	return nil
}

// load loads f's code into c.
func (p *Pool) load(ctx context.Context, c *Container, f *function.Function) error {
	code, err := p.code(ctx, f)
	if err != nil {
		return err
	}
	if err := p.rt.Load(ctx, c.id, container.LoadRequest{Handler: f.Handler, Code: code, Concurrency: f.Concurrency(), Env: f.Env}); err != nil {
		return fmt.Errorf("loading code: %w", err)
	}
	return nil
}

// code returns f's decoded code archive: from Config.Code when set (a
// definition from the registry has no code), else decoded from f.
func (p *Pool) code(ctx context.Context, f *function.Function) ([]byte, error) {
	if p.cfg.Code != nil {
		code, err := p.cfg.Code(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("fetching code of %s version %s: %w", f.Name, f.Version, err)
		}
		return code, nil
	}
	code, err := f.Code()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", container.ErrBadCode, err)
	}
	return code, nil
}

// abortStart undoes a failed cold start, prewarm or stem-cell start of c: the reservation is
// released and the container, if it was created, is removed in the
// background. If Create failed the container may still exist (a cancelled
// request can race with the daemon), so it is looked up by name.
func (p *Pool) abortStart(c *Container) {
	p.mu.Lock()
	if c.state == stateStarting {
		p.starting--
		p.busyCPUs = max(p.busyCPUs-c.cpus, 0)
	}
	p.usedMemory -= c.memoryMB
	c.state = stateRemoved
	delete(p.containers, c.name)
	if c.id != "" {
		p.removeAsyncLocked(c.id)
	} else {
		name := c.name
		p.goLocked(func() { p.removeByName(name) })
	}
	p.mu.Unlock()
	p.freed()
}

// removeByName removes this node's container called name, if it exists.
func (p *Pool) removeByName(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	infos, err := p.rt.List(ctx, p.nodeLabels())
	if err != nil {
		p.log.Warn("listing containers failed", "err", err)
		return
	}
	for _, info := range infos {
		if strings.TrimPrefix(info.Name, "/") != name {
			continue
		}
		if err := p.rt.Remove(ctx, info.ID); err != nil {
			p.log.Warn("removing container failed", "container", info.ID, "err", err)
		}
	}
}

// Release gives back a container acquired for one request; call it once
// per acquisition. A container that is not reusable (timeout, crash, gone,
// or reusable=false) takes no further request; it is removed in the
// background once its last request is released, as is one that runs an
// outdated or deleted version of its function. Otherwise a container whose
// last request is released becomes idle. Releasing a container that serves
// no request is a no-op.
func (p *Pool) Release(c *Container, reusable bool) {
	if c == nil {
		return
	}
	p.mu.Lock()
	if c.state != stateBusy || c.inflight <= 0 {
		p.mu.Unlock()
		return
	}
	if !reusable {
		c.broken.Store(true)
	}
	c.inflight--
	retire := c.broken.Load() || !p.isCurrentLocked(c)
	if c.inflight > 0 {
		// Others still run in c: a freed slot takes a new request unless c
		// is to be retired.
		if retire {
			p.dropSharedLocked(c)
			p.mu.Unlock()
			return
		}
		if c.inflight == c.slots-1 {
			p.shareLocked(c)
		}
		p.mu.Unlock()
		p.freed()
		return
	}
	if retire {
		p.retireLocked(c)
		p.mu.Unlock()
		p.freed()
		return
	}
	p.dropSharedLocked(c)
	p.busyCPUs = max(p.busyCPUs-c.cpus, 0)
	c.cpus = 0
	p.makeIdleLocked(c)
	p.mu.Unlock()
	p.freed()
}

// makeIdleLocked puts c among the idle containers as the most recently used.
func (p *Pool) makeIdleLocked(c *Container) {
	c.state = stateIdle
	c.lastUsed = time.Now()
	p.idle[c.function] = append(p.idle[c.function], c)
	p.lru.Add(c.name, c)
}

// Prewarm makes sure f's image exists locally (ErrImageMissing otherwise)
// and then creates n new idle containers of f, whatever number is already
// idle (as the original Serverledge does). It uses free memory only: it
// neither evicts other containers nor uses stem cells, so it creates fewer
// than n when memory is short. It returns how many containers were created,
// and the first failure if some could not be. n ≤ 0 only checks the image.
func (p *Pool) Prewarm(ctx context.Context, f *function.Function, n int) (int, error) {
	rtName, image, err := p.resolve(f)
	if err != nil {
		return 0, err
	}
	ok, err := p.rt.ImageExists(ctx, image)
	if err != nil {
		return 0, fmt.Errorf("checking image %s: %w", image, err)
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrImageMissing, image)
	}
	if n <= 0 {
		return 0, nil
	}
	memory := memoryOf(f)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	retired := p.noteVersionLocked(f.Name, f.Version)
	var batch []*Container
	for len(batch) < n && p.freeMemoryLocked() >= memory {
		p.usedMemory += memory
		c := &Container{pool: p, name: newName(), runtime: rtName, image: image, memoryMB: memory,
			function: f.Name, version: f.Version, state: stateStarting, slots: f.Concurrency()}
		p.containers[c.name] = c
		batch = append(batch, c)
	}
	p.starting += len(batch)
	p.pending++
	p.mu.Unlock()
	defer p.untrack()
	if retired {
		p.freed()
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		created  int
		firstErr error
		sem      = make(chan struct{}, maxParallelStartup)
	)
	for _, c := range batch {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			err := p.create(ctx, c, memory, cpusOf(f), f.Name)
			if err == nil {
				err = p.load(ctx, c, f)
			}
			if err != nil {
				p.abortStart(c)
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("prewarming %s: %w", f.Name, err)
				}
				mu.Unlock()
				return
			}
			if p.finishPrewarm(c) {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return created, firstErr
}

// finishPrewarm makes a prewarmed container idle, or removes it when the
// pool closed or the function changed meanwhile.
func (p *Pool) finishPrewarm(c *Container) bool {
	p.mu.Lock()
	p.starting--
	if p.closed || !p.isCurrentLocked(c) {
		c.state = stateBusy // a prewarmed container holds no CPU, so retiring it as busy frees only its memory
		p.retireLocked(c)
		p.mu.Unlock()
		return false
	}
	p.makeIdleLocked(c)
	p.mu.Unlock()
	p.freed()
	return true
}

// resolve returns the canonical runtime and the image of f.
func (p *Pool) resolve(f *function.Function) (string, string, error) {
	if f == nil {
		return "", "", errors.New("node: nil function")
	}
	r, err := function.LookupRuntime(f.Runtime)
	if err != nil {
		return "", "", err
	}
	image := f.CustomImage
	if r.Name != function.RuntimeCustom {
		image = p.cfg.ImageFor(r.Name)
	}
	if image == "" {
		return "", "", fmt.Errorf("%w: function %s has no image", ErrImageMissing, f.Name)
	}
	return r.Name, image, nil
}

// memoryOf returns the memory f is counted for.
func memoryOf(f *function.Function) int64 {
	if f.MemoryMB <= 0 {
		return function.DefaultMemoryMB
	}
	return f.MemoryMB
}

// cpusOf returns the CPU demand f is counted for.
func cpusOf(f *function.Function) float64 {
	return max(f.CPUDemand, 0)
}

package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/function"
)

// Sentinel errors callers branch on.
var (
	// ErrNoCapacity means the memory or CPU budget cannot host the request
	// now, even after evicting every idle container.
	ErrNoCapacity = errors.New("no capacity on this node")
	// ErrTooLarge means the function needs more memory or CPU than the node
	// has in total, so waiting will not help. It is always reported together
	// with ErrNoCapacity (errors.Is matches both).
	ErrTooLarge = errors.New("function exceeds the node's total resources")
	// ErrImageMissing means the function's image is not present locally.
	ErrImageMissing = errors.New("image missing")
	// ErrClosed means the pool was shut down.
	ErrClosed = errors.New("pool is shut down")
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultJanitorInterval is used when Config.JanitorInterval ≤ 0.
	DefaultJanitorInterval = 10 * time.Second
	// removeTimeout bounds one background container removal.
	removeTimeout = time.Minute
	// maxStemBackoff bounds the pause after failed stem-cell creations.
	maxStemBackoff = time.Minute
	// maxParallelStartup bounds concurrent Docker calls of Start's orphan
	// cleanup, Prewarm and Shutdown's final sweep.
	maxParallelStartup = 8
)

// Config configures a Pool.
type Config struct {
	// NodeID is the value of container.LabelNode on every container of this pool.
	NodeID string
	// MemoryMB is the memory budget (container.pool.memory); it must be positive.
	MemoryMB int64
	// CPUs is the CPU budget counting the CPUDemand of busy containers
	// (once per container, however many requests it serves at once);
	// ≤ 0 means the number of CPUs of the host.
	CPUs float64
	// Expiration is how long a container may stay idle before the janitor
	// removes it; ≤ 0 means idle containers never expire.
	Expiration time.Duration
	// JanitorInterval is how often the janitor runs (default DefaultJanitorInterval).
	JanitorInterval time.Duration
	// StemCells maps a runtime name (or alias) to the number of
	// function-agnostic, started containers kept ready for cold starts.
	StemCells map[string]int
	// StemCellMemoryMB is the memory a stem cell is created with and counted
	// for (default function.DefaultMemoryMB).
	StemCellMemoryMB int64
	// ImageFor maps a canonical runtime name to its image
	// (default: function.LookupRuntime(runtime).Image). The custom runtime
	// always uses the function's CustomImage.
	ImageFor func(runtime string) string
	// Code returns the decoded code archive of f's version for a cold start
	// (e.g. registry.CodeCache.Get); the pool does not modify the slice.
	// Nil decodes f.TarFunctionCode.
	Code func(ctx context.Context, f *function.Function) ([]byte, error)
	// OnFree is called whenever capacity is freed or a container becomes
	// idle. It runs on the goroutine that freed the capacity, outside the
	// pool's lock, so it may call back into the Pool, but it must not block.
	OnFree func()
	// Logger receives the pool's logs (default slog.Default()).
	Logger *slog.Logger
}

// state is the life-cycle state of a Container.
type state int

const (
	stateStarting     state = iota // being created, started or specialized for a function
	stateIdle                      // loaded with a function, waiting for a request
	stateBusy                      // serving one request or more (up to its slots)
	stateStemStarting              // stem cell being created and started
	stateStem                      // started stem cell, no function loaded
	stateRemoved                   // removed from the pool (Docker removal may still run)
)

// Stats is a snapshot of the pool.
type Stats struct {
	// Idle counts idle containers (no request in flight) per function name.
	Idle map[string]int
	// Busy counts busy containers (at least one request in flight) per
	// function name.
	Busy map[string]int
	// InFlight counts the requests being served per function name; it
	// exceeds Busy for functions with a MaxConcurrency above 1.
	InFlight map[string]int
	// StemCells counts ready stem cells per runtime.
	StemCells map[string]int
	// StemCellsStarting counts stem cells being created.
	StemCellsStarting int
	// Starting counts function containers in a cold start or a prewarm.
	Starting int
	// FreeMemoryMB is the memory budget not counted for any container.
	FreeMemoryMB int64
	// FreeCPUs is the CPU budget not taken by busy containers.
	FreeCPUs float64
	// BusyMemoryMB is the memory held by busy containers.
	BusyMemoryMB int64
	// TotalMemoryMB is the memory budget.
	TotalMemoryMB int64
	// TotalCPUs is the CPU budget.
	TotalCPUs float64
	// WarmStarts counts acquisitions served by an idle container.
	WarmStarts uint64
	// ColdStarts counts successful cold starts (from a stem cell or not).
	ColdStarts uint64
	// StemCellStarts counts cold starts served by a stem cell.
	StemCellStarts uint64
	// Evictions counts idle containers and stem cells evicted to make room.
	Evictions uint64
	// Expirations counts idle containers removed by the janitor.
	Expirations uint64
	// Vanished counts containers that died or were removed behind the
	// pool's back (a Docker event or the janitor's list told).
	Vanished uint64
}

// Pool is the warm pool of one node. It is safe for concurrent use.
type Pool struct {
	rt          container.Runtime
	cfg         Config
	log         *slog.Logger
	totalCPUs   float64
	stemTargets map[string]int
	stemImages  map[string]string
	kick        chan struct{}

	mu           sync.Mutex
	closed       bool
	started      bool
	bgCtx        context.Context
	bgCancel     context.CancelFunc
	usedMemory   int64
	busyCPUs     float64
	containers   map[string]*Container // by name: every container the pool owns
	removing     map[string]bool       // IDs of retired containers being removed
	idle         map[string][]*Container
	shared       map[string][]*Container            // busy containers with a free slot, by function
	lru          *simplelru.LRU[string, *Container] // idle function containers by name
	stems        map[string][]*Container
	stemStarting map[string]int
	stemRetry    map[string]time.Time
	stemDelay    map[string]time.Duration
	current      map[string]string // function name → current version
	starting     int
	pending      int           // tracked goroutines
	drained      chan struct{} // closed when pending reaches 0 after Shutdown
	counters     Stats
}

// New returns a pool of containers created through rt. Call Start to clean
// up orphans and start the background work.
func New(rt container.Runtime, cfg Config) (*Pool, error) {
	if rt == nil {
		return nil, errors.New("node: nil container runtime")
	}
	if cfg.NodeID == "" {
		return nil, errors.New("node: NodeID is required")
	}
	if cfg.MemoryMB <= 0 {
		return nil, fmt.Errorf("node: MemoryMB must be positive, got %d", cfg.MemoryMB)
	}
	if cfg.JanitorInterval <= 0 {
		cfg.JanitorInterval = DefaultJanitorInterval
	}
	if cfg.StemCellMemoryMB <= 0 {
		cfg.StemCellMemoryMB = function.DefaultMemoryMB
	}
	if cfg.ImageFor == nil {
		cfg.ImageFor = func(name string) string {
			r, err := function.LookupRuntime(name)
			if err != nil {
				return ""
			}
			return r.Image
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	totalCPUs := cfg.CPUs
	if totalCPUs <= 0 {
		totalCPUs = float64(runtime.NumCPU())
	}
	p := &Pool{
		rt:           rt,
		cfg:          cfg,
		log:          cfg.Logger.With("component", "pool", "node", cfg.NodeID),
		totalCPUs:    totalCPUs,
		stemTargets:  map[string]int{},
		stemImages:   map[string]string{},
		kick:         make(chan struct{}, 1),
		containers:   map[string]*Container{},
		removing:     map[string]bool{},
		idle:         map[string][]*Container{},
		shared:       map[string][]*Container{},
		stems:        map[string][]*Container{},
		stemStarting: map[string]int{},
		stemRetry:    map[string]time.Time{},
		stemDelay:    map[string]time.Duration{},
		current:      map[string]string{},
	}
	lru, err := simplelru.NewLRU[string, *Container](math.MaxInt32, nil)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	p.lru = lru
	for name, n := range cfg.StemCells {
		if n <= 0 {
			continue
		}
		r, err := function.LookupRuntime(name)
		if err != nil {
			return nil, fmt.Errorf("node: stem cells: %w", err)
		}
		image := cfg.ImageFor(r.Name)
		if r.Name == function.RuntimeCustom || image == "" {
			return nil, fmt.Errorf("node: stem cells: runtime %q has no image", name)
		}
		p.stemTargets[r.Name] += n
		p.stemImages[r.Name] = image
	}
	p.bgCtx, p.bgCancel = context.WithCancel(context.Background())
	return p, nil
}

// Start removes the containers a previous run of this node left behind
// (those labelled with this NodeID that the pool does not own) and starts
// the janitor and the stem-cell refiller in the background. It fails only
// when the orphans cannot be listed; failed removals are logged.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.started {
		p.mu.Unlock()
		return errors.New("node: pool already started")
	}
	p.started = true
	p.mu.Unlock()

	since := time.Now()
	n, _, err := p.reconcile(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		p.log.Info("removed orphan containers of a previous run", "count", n)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.goLocked(func() { p.loop(p.bgCtx) })
	p.goLocked(func() { p.watch(p.bgCtx, since) })
	p.kickRefill()
	return nil
}

// reconcile makes the pool and the runtime agree, both ways. It removes the
// containers labelled with this node that the pool does not own (orphans
// of a previous run, or containers whose removal failed; a container being
// created is owned by its name from the start), and it drops from the pool
// the ready containers the runtime no longer runs. It returns how many
// containers of each kind it found.
func (p *Pool) reconcile(ctx context.Context) (orphans, vanished int, err error) {
	// Only containers that were ready before the list was taken can be
	// judged by it: one that became ready later is missing for that reason.
	p.mu.Lock()
	var ready []*Container
	for _, c := range p.containers {
		if c.id != "" && (c.state == stateIdle || c.state == stateBusy || c.state == stateStem) {
			ready = append(ready, c)
		}
	}
	p.mu.Unlock()
	infos, err := p.rt.List(ctx, p.nodeLabels())
	if err != nil {
		return 0, 0, fmt.Errorf("node: listing this node's containers: %w", err)
	}
	running := make(map[string]bool, len(infos))
	for _, info := range infos {
		if info.Running {
			running[info.ID] = true
		}
	}
	p.mu.Lock()
	for _, c := range ready {
		if !running[c.id] && p.vanishedLocked(c) {
			vanished++
		}
	}
	p.mu.Unlock()
	if vanished > 0 {
		p.log.Warn("containers stopped running behind the pool's back", "count", vanished)
		p.freed()
	}
	p.mu.Lock()
	owned := make(map[string]bool, len(p.containers)+len(p.removing))
	for id := range p.removing {
		owned[id] = true
	}
	for name, c := range p.containers {
		owned[name] = true
		if c.id != "" {
			owned[c.id] = true
		}
	}
	p.mu.Unlock()
	var stray []string
	for _, info := range infos {
		if owned[info.ID] || owned[strings.TrimPrefix(info.Name, "/")] {
			continue
		}
		stray = append(stray, info.ID)
	}
	return p.removeAll(ctx, stray), vanished, nil
}

// vanishedLocked takes c out of service because the runtime reported it
// dead or gone: an idle container or a stem cell is retired now; a busy one
// serves no further request and is removed when its requests are released.
// It reports whether c was in service.
func (p *Pool) vanishedLocked(c *Container) bool {
	if p.containers[c.name] != c {
		return false
	}
	switch c.state {
	case stateIdle, stateStem:
		p.retireLocked(c)
	case stateBusy:
		if c.broken.Swap(true) {
			return false
		}
		p.dropSharedLocked(c)
	default:
		return false
	}
	p.counters.Vanished++
	return true
}

// Shutdown stops the background work and removes every container of the
// pool concurrently, busy ones included. It waits for in-flight cold starts
// and removals until ctx is done, then removes whatever is still labelled
// with this NodeID. Calling it again is a no-op.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.bgCancel()
	for _, c := range p.containers {
		switch c.state {
		case stateIdle, stateBusy, stateStem:
			p.retireLocked(c)
		}
	}
	p.busyCPUs = 0
	var drained chan struct{}
	if p.pending > 0 {
		drained = make(chan struct{})
		p.drained = drained
	}
	p.mu.Unlock()

	var waitErr error
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			waitErr = fmt.Errorf("node: waiting for background work: %w", ctx.Err())
		}
	}
	infos, err := p.rt.List(ctx, p.nodeLabels())
	if err != nil {
		return errors.Join(waitErr, fmt.Errorf("node: listing containers to remove: %w", err))
	}
	ids := make([]string, 0, len(infos))
	for _, info := range infos {
		ids = append(ids, info.ID)
	}
	if removed := p.removeAll(ctx, ids); removed < len(ids) {
		return errors.Join(waitErr, fmt.Errorf("node: %d of %d containers could not be removed", len(ids)-removed, len(ids)))
	}
	return waitErr
}

// Stats returns a snapshot of the pool.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.counters
	s.Idle = map[string]int{}
	s.Busy = map[string]int{}
	s.InFlight = map[string]int{}
	s.StemCells = map[string]int{}
	for _, c := range p.containers {
		switch c.state {
		case stateIdle:
			s.Idle[c.function]++
		case stateBusy:
			s.Busy[c.function]++
			s.InFlight[c.function] += c.inflight
			s.BusyMemoryMB += c.memoryMB
		case stateStem:
			s.StemCells[c.runtime]++
		case stateStemStarting:
			s.StemCellsStarting++
		}
	}
	s.Starting = p.starting
	s.TotalMemoryMB = p.cfg.MemoryMB
	s.FreeMemoryMB = p.cfg.MemoryMB - p.usedMemory
	s.TotalCPUs = p.totalCPUs
	s.FreeCPUs = max(p.totalCPUs-p.busyCPUs, 0)
	return s
}

// FunctionChanged tells the pool that function name was updated to
// newVersion, or deleted when newVersion is "". Idle containers of any other
// version are removed now; busy ones are removed when released.
func (p *Pool) FunctionChanged(name, newVersion string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if newVersion == "" {
		delete(p.current, name)
	} else {
		p.current[name] = newVersion
	}
	n := p.retireStaleLocked(name)
	p.mu.Unlock()
	if n > 0 {
		p.log.Info("retired idle containers of an outdated function version", "function", name, "count", n)
		p.freed()
	}
}

// noteVersionLocked records the version of f as current, retiring idle
// containers of other versions when it changes. It reports whether any
// container was retired.
func (p *Pool) noteVersionLocked(name, version string) bool {
	if cur, ok := p.current[name]; ok && cur == version {
		return false
	}
	p.current[name] = version
	return p.retireStaleLocked(name) > 0
}

// retireStaleLocked removes the idle containers of name whose version is not current.
func (p *Pool) retireStaleLocked(name string) int {
	cur, ok := p.current[name]
	var stale []*Container
	for _, c := range p.idle[name] {
		if !ok || c.version != cur {
			stale = append(stale, c)
		}
	}
	for _, c := range stale {
		p.retireLocked(c)
	}
	return len(stale)
}

// isCurrentLocked reports whether c runs the current version of its function.
func (p *Pool) isCurrentLocked(c *Container) bool {
	cur, ok := p.current[c.function]
	return ok && cur == c.version
}

// freeMemoryLocked returns the memory budget not counted for any container.
func (p *Pool) freeMemoryLocked() int64 {
	return p.cfg.MemoryMB - p.usedMemory
}

// cpuFitsLocked reports whether a busy container with demand cpus fits.
func (p *Pool) cpuFitsLocked(cpus float64) bool {
	return p.busyCPUs+cpus <= p.totalCPUs+1e-9
}

// reserveLocked counts need MB of memory, evicting idle containers and
// stem cells if the free memory is short. Ready stem cells are evicted
// first (the refiller recreates them when memory frees up), then idle
// function containers least recently used first. Nothing is evicted when
// even evicting everything would not make need fit.
func (p *Pool) reserveLocked(need int64) bool {
	free := p.freeMemoryLocked()
	if need <= free {
		p.usedMemory += need
		return true
	}
	var victims []*Container
	for _, rt := range sortedKeys(p.stems) {
		for _, c := range p.stems[rt] {
			if free >= need {
				break
			}
			victims = append(victims, c)
			free += c.memoryMB
		}
	}
	if free < need {
		for _, c := range p.lru.Values() {
			if free >= need {
				break
			}
			victims = append(victims, c)
			free += c.memoryMB
		}
	}
	if free < need {
		return false
	}
	for _, c := range victims {
		p.log.Debug("evicting container", "container", c.name, "function", c.function, "runtime", c.runtime)
		p.retireLocked(c)
		p.counters.Evictions++
	}
	p.usedMemory += need
	return true
}

// retireLocked takes c out of the pool, uncounts its memory and removes it
// from Docker in the background. A container still starting is left to the
// goroutine starting it.
func (p *Pool) retireLocked(c *Container) {
	switch c.state {
	case stateRemoved, stateStarting, stateStemStarting:
		return
	case stateIdle:
		p.dropIdleLocked(c)
	case stateStem:
		p.stems[c.runtime] = without(p.stems[c.runtime], c)
	case stateBusy:
		p.busyCPUs = max(p.busyCPUs-c.cpus, 0)
		p.dropSharedLocked(c)
	}
	c.state = stateRemoved
	p.usedMemory -= c.memoryMB
	delete(p.containers, c.name)
	if c.id != "" {
		p.removeAsyncLocked(c.id)
	}
}

// dropIdleLocked takes an idle container out of the idle lists.
func (p *Pool) dropIdleLocked(c *Container) {
	p.lru.Remove(c.name)
	list := without(p.idle[c.function], c)
	if len(list) == 0 {
		delete(p.idle, c.function)
		return
	}
	p.idle[c.function] = list
}

// dropSharedLocked takes a busy container out of the list of containers
// that may take more requests.
func (p *Pool) dropSharedLocked(c *Container) {
	list := without(p.shared[c.function], c)
	if len(list) == 0 {
		delete(p.shared, c.function)
		return
	}
	p.shared[c.function] = list
}

// removeAsyncLocked removes container id from Docker on a tracked goroutine.
func (p *Pool) removeAsyncLocked(id string) {
	p.removing[id] = true
	p.goLocked(func() {
		ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
		defer cancel()
		if err := p.rt.Remove(ctx, id); err != nil {
			p.log.Warn("removing container failed", "container", id, "err", err)
		}
		p.mu.Lock()
		delete(p.removing, id)
		p.mu.Unlock()
	})
}

// goLocked runs fn on a goroutine Shutdown waits for.
func (p *Pool) goLocked(fn func()) {
	p.pending++
	go func() {
		defer p.untrack()
		fn()
	}()
}

// untrack marks one tracked goroutine as finished.
func (p *Pool) untrack() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending--
	if p.pending == 0 && p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
}

// freed reports freed capacity to OnFree and wakes the stem-cell refiller.
// It must be called without holding the lock.
func (p *Pool) freed() {
	if p.cfg.OnFree != nil {
		p.cfg.OnFree()
	}
	p.kickRefill()
}

// kickRefill wakes the stem-cell refiller without blocking.
func (p *Pool) kickRefill() {
	if len(p.stemTargets) == 0 {
		return
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// removeAll removes the given containers concurrently and returns how many
// were removed.
func (p *Pool) removeAll(ctx context.Context, ids []string) int {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		removed int
		sem     = make(chan struct{}, maxParallelStartup)
	)
	for _, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := p.rt.Remove(ctx, id); err != nil {
				p.log.Warn("removing container failed", "container", id, "err", err)
				return
			}
			mu.Lock()
			removed++
			mu.Unlock()
		})
	}
	wg.Wait()
	return removed
}

// nodeLabels selects every container of this node.
func (p *Pool) nodeLabels() map[string]string {
	return map[string]string{container.LabelManaged: "true", container.LabelNode: p.cfg.NodeID}
}

// labels returns the labels of a new container; function is "" for a stem cell.
func (p *Pool) labels(runtime, function string) map[string]string {
	return map[string]string{
		container.LabelManaged:  "true",
		container.LabelNode:     p.cfg.NodeID,
		container.LabelRuntime:  runtime,
		container.LabelFunction: function,
	}
}

// newName returns a unique, short container name.
func newName() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "sl-" + hex.EncodeToString(b[:])
}

// without returns list without c, preserving order.
func without(list []*Container, c *Container) []*Container {
	for i, x := range list {
		if x == c {
			return append(list[:i:i], list[i+1:]...)
		}
	}
	return list
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

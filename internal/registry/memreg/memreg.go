// Package memreg is an in-memory registry.Registry for unit tests of the
// packages that use a registry. It behaves like the etcd registry as far as
// callers can tell: the same errors, TTLs honoured, watches in order, node
// records kept while their registering context lives and expiring a TTL
// after it ends. Records are stored JSON-encoded, as in etcd, so callers
// never share memory with the registry and see the same round-trip effects.
// It is local to one process.
package memreg

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/wire"
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("registry closed")

// Registry is an in-memory registry.Registry. It is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	closed bool
	// functions holds each definition JSON-encoded, without its code.
	functions map[string][]byte
	// codes holds each function's decoded code.
	codes    map[string]code
	nodes    map[string]*node
	results  map[string]result
	watchers map[*watcher]struct{}
	// puts counts result writes, to sweep expired results now and then.
	puts int
	// instances numbers node registrations.
	instances uint64
}

// sweepEvery is how many result writes pass between sweeps of expired results.
const sweepEvery = 256

var _ registry.Registry = (*Registry)(nil)

type node struct {
	area string
	// url names the holder when another registration wants the id.
	url string
	// instance is unique per registration.
	instance uint64
	info     []byte
	ttl      time.Duration
	// expires is zero while the registration is kept alive.
	expires time.Time
	// stop ends the keep-alive link to the registering context.
	stop func() bool
}

// code is a function's decoded code and the version it belongs to.
type code struct {
	version string
	data    []byte
}

type result struct {
	state    registry.ResultState
	response []byte
	expires  time.Time
	// node and instance name the registration running a pending request.
	node     string
	instance uint64
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		functions: make(map[string][]byte),
		codes:     make(map[string]code),
		nodes:     make(map[string]*node),
		results:   make(map[string]result),
		watchers:  make(map[*watcher]struct{}),
	}
}

// Close ends every watch and keep-alive; later calls return ErrClosed.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	now := time.Now()
	for _, n := range r.nodes {
		r.release(n, now)
	}
	for w := range r.watchers {
		w.close()
	}
	clear(r.watchers)
	return nil
}

// lock locks r unless it is closed or ctx has ended.
func (r *Registry) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// CreateFunction stores a new function; registry.ErrExists if the name is taken.
func (r *Registry) CreateFunction(ctx context.Context, f *function.Function) error {
	if err := registry.CheckFunction(f); err != nil {
		return err
	}
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	if _, ok := r.functions[f.Name]; ok {
		return fmt.Errorf("function %q: %w", f.Name, registry.ErrExists)
	}
	return r.putFunction(f)
}

// UpdateFunction replaces an existing function; registry.ErrNotFound if absent.
func (r *Registry) UpdateFunction(ctx context.Context, f *function.Function) error {
	if err := registry.CheckFunction(f); err != nil {
		return err
	}
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	if _, ok := r.functions[f.Name]; !ok {
		return fmt.Errorf("function %q: %w", f.Name, registry.ErrNotFound)
	}
	return r.putFunction(f)
}

// putFunction stores f's definition and code apart, as the etcd registry
// does, and notifies watchers with the definition; r.mu must be held.
func (r *Registry) putFunction(f *function.Function) error {
	data, err := f.Code()
	if err != nil {
		return err
	}
	b, err := json.Marshal(f.WithoutCode())
	if err != nil {
		return fmt.Errorf("memory registry: function %q: encode: %w", f.Name, err)
	}
	r.functions[f.Name] = b
	r.codes[f.Name] = code{version: f.Version, data: data}
	for w := range r.watchers {
		var c function.Function
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("memory registry: function %q: decode: %w", f.Name, err)
		}
		w.push(registry.FunctionEvent{Type: registry.FunctionPut, Name: f.Name, Function: &c})
	}
	return nil
}

// DeleteFunction removes a function; registry.ErrNotFound if absent.
func (r *Registry) DeleteFunction(ctx context.Context, name string) error {
	if err := registry.CheckName(name); err != nil {
		return err
	}
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	if _, ok := r.functions[name]; !ok {
		return fmt.Errorf("function %q: %w", name, registry.ErrNotFound)
	}
	delete(r.functions, name)
	delete(r.codes, name)
	for w := range r.watchers {
		w.push(registry.FunctionEvent{Type: registry.FunctionDeleted, Name: name})
	}
	return nil
}

// GetFunction returns a copy of a function's definition without its code;
// registry.ErrNotFound if absent.
func (r *Registry) GetFunction(ctx context.Context, name string) (*function.Function, error) {
	if err := registry.CheckName(name); err != nil {
		return nil, err
	}
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	b, ok := r.functions[name]
	if !ok {
		return nil, fmt.Errorf("function %q: %w", name, registry.ErrNotFound)
	}
	var f function.Function
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("memory registry: function %q: decode: %w", name, err)
	}
	return &f, nil
}

// GetCode returns a copy of the code of the named function at version;
// registry.ErrNotFound if the function is absent or its version is another.
func (r *Registry) GetCode(ctx context.Context, name, version string) ([]byte, error) {
	if err := registry.CheckName(name); err != nil {
		return nil, err
	}
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	c, ok := r.codes[name]
	if !ok {
		return nil, fmt.Errorf("function %q: %w", name, registry.ErrNotFound)
	}
	if c.version != version {
		return nil, fmt.Errorf("code of function %q version %s (now %s): %w", name, version, c.version, registry.ErrNotFound)
	}
	return bytes.Clone(c.data), nil
}

// ListFunctions returns the names of all functions, sorted; never nil.
func (r *Registry) ListFunctions(ctx context.Context) ([]string, error) {
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.functions))
	for name := range r.functions {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// WatchFunctions delivers every change made after it returns, in order,
// until ctx ends or the registry is closed; the channel is closed then.
func (r *Registry) WatchFunctions(ctx context.Context) (<-chan registry.FunctionEvent, error) {
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	w := newWatcher()
	r.watchers[w] = struct{}{}
	out := make(chan registry.FunctionEvent)
	go func() {
		defer close(out)
		w.run(ctx, out)
		r.mu.Lock()
		delete(r.watchers, w)
		r.mu.Unlock()
	}()
	return out, nil
}

// RegisterNode advertises n while ctx lives and for ttl after it ends.
// While a registration of the id lives, registering it again changes
// nothing and returns an error wrapping registry.ErrExists that names the
// holder's URL. A zero n.Updated is set to the time of writing.
func (r *Registry) RegisterNode(ctx context.Context, n registry.NodeInfo, ttl time.Duration) error {
	if n.ID == "" {
		return errors.New("memory registry: register node: empty ID")
	}
	if ttl <= 0 {
		return fmt.Errorf("memory registry: register node %q: TTL must be positive, got %v", n.ID, ttl)
	}
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	if old, ok := r.liveNode(n.ID, time.Now()); ok {
		return fmt.Errorf("memory registry: register node %q: id held by the node at %s: %w", n.ID, old.url, registry.ErrExists)
	}
	b, err := encodeNode(n)
	if err != nil {
		return err
	}
	r.instances++
	rec := &node{area: n.Area, url: n.URL, instance: r.instances, info: b, ttl: ttl}
	rec.stop = context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.nodes[n.ID] == rec {
			r.release(rec, time.Now())
		}
	})
	r.nodes[n.ID] = rec
	return nil
}

// release stops keeping n alive: it expires ttl after now. r.mu must be held.
func (r *Registry) release(n *node, now time.Time) {
	n.stop()
	if n.expires.IsZero() {
		n.expires = now.Add(n.ttl)
	}
}

// liveNode returns the record of id unless it expired; r.mu must be held.
func (r *Registry) liveNode(id string, now time.Time) (*node, bool) {
	n, ok := r.nodes[id]
	if !ok {
		return nil, false
	}
	if !n.expires.IsZero() && !now.Before(n.expires) {
		delete(r.nodes, id)
		return nil, false
	}
	return n, true
}

// UpdateNode replaces the record of a node whose registration is kept
// alive; registry.ErrNotFound otherwise.
func (r *Registry) UpdateNode(ctx context.Context, n registry.NodeInfo) error {
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	rec, ok := r.liveNode(n.ID, time.Now())
	if !ok || !rec.expires.IsZero() {
		return fmt.Errorf("node %q: %w", n.ID, registry.ErrNotFound)
	}
	b, err := encodeNode(n)
	if err != nil {
		return err
	}
	rec.area, rec.info = n.Area, b
	return nil
}

// DeregisterNode removes a node's record; registry.ErrNotFound if there is none.
func (r *Registry) DeregisterNode(ctx context.Context, id string) error {
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	rec, ok := r.liveNode(id, time.Now())
	if !ok {
		return fmt.Errorf("node %q: %w", id, registry.ErrNotFound)
	}
	rec.stop()
	delete(r.nodes, id)
	return nil
}

// ListNodes returns the nodes of an area ("" for all areas), sorted by area and id.
func (r *Registry) ListNodes(ctx context.Context, area string) ([]registry.NodeInfo, error) {
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	now := time.Now()
	nodes := make([]registry.NodeInfo, 0, len(r.nodes))
	for id := range r.nodes {
		rec, ok := r.liveNode(id, now)
		if !ok || (area != "" && rec.area != area) {
			continue
		}
		var n registry.NodeInfo
		if err := json.Unmarshal(rec.info, &n); err != nil {
			return nil, fmt.Errorf("memory registry: node %q: decode: %w", id, err)
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b registry.NodeInfo) int {
		return cmp.Or(strings.Compare(a.Area, b.Area), strings.Compare(a.ID, b.ID))
	})
	return nodes, nil
}

// encodeNode encodes n, setting a zero Updated to now.
func encodeNode(n registry.NodeInfo) ([]byte, error) {
	if n.Updated.IsZero() {
		n.Updated = time.Now().UTC()
	}
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("memory registry: node %q: encode: %w", n.ID, err)
	}
	return b, nil
}

// PutPending records that node nodeID accepted an async request, for ttl,
// bound to the node's live registration: registry.ErrNotFound if there is
// none. Request ids are unique: registry.ErrExists if reqID already has a
// record.
func (r *Registry) PutPending(ctx context.Context, reqID, nodeID string, ttl time.Duration) error {
	if err := checkResult(reqID, ttl); err != nil {
		return err
	}
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	now := time.Now()
	n, ok := r.liveNode(nodeID, now)
	if !ok || !n.expires.IsZero() {
		return fmt.Errorf("memory registry: put pending %q: node %q is not registered: %w", reqID, nodeID, registry.ErrNotFound)
	}
	if _, ok := r.liveResult(reqID, now); ok {
		return fmt.Errorf("result %q: %w", reqID, registry.ErrExists)
	}
	r.results[reqID] = result{state: registry.ResultPending, expires: now.Add(ttl), node: nodeID, instance: n.instance}
	r.sweep(now)
	return nil
}

// PutResult stores an async result for ttl, replacing its pending record.
func (r *Registry) PutResult(ctx context.Context, reqID string, res *wire.InvocationResponse, ttl time.Duration) error {
	if err := checkResult(reqID, ttl); err != nil {
		return err
	}
	if res == nil {
		return fmt.Errorf("memory registry: put result %q: no response", reqID)
	}
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.mu.Unlock()
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("memory registry: result %q: encode: %w", reqID, err)
	}
	now := time.Now()
	r.results[reqID] = result{state: registry.ResultDone, response: b, expires: now.Add(ttl)}
	r.sweep(now)
	return nil
}

// GetResult returns the state of an async request; registry.ErrNotFound if
// unknown or expired. A pending request whose node's registration ended is
// registry.ResultLost.
func (r *Registry) GetResult(ctx context.Context, reqID string) (registry.Result, error) {
	if err := r.lock(ctx); err != nil {
		return registry.Result{}, err
	}
	defer r.mu.Unlock()
	now := time.Now()
	res, ok := r.liveResult(reqID, now)
	if !ok {
		return registry.Result{}, fmt.Errorf("result %q: %w", reqID, registry.ErrNotFound)
	}
	if res.state == registry.ResultPending {
		out := registry.Result{State: registry.ResultPending, Node: res.node}
		if n, ok := r.liveNode(res.node, now); !ok || n.instance != res.instance {
			out.State = registry.ResultLost
		}
		return out, nil
	}
	var resp wire.InvocationResponse
	if err := json.Unmarshal(res.response, &resp); err != nil {
		return registry.Result{}, fmt.Errorf("memory registry: result %q: decode: %w", reqID, err)
	}
	return registry.Result{State: registry.ResultDone, Response: &resp}, nil
}

// liveResult returns the record of reqID unless it expired; r.mu must be held.
func (r *Registry) liveResult(reqID string, now time.Time) (result, bool) {
	res, ok := r.results[reqID]
	if !ok {
		return result{}, false
	}
	if !now.Before(res.expires) {
		delete(r.results, reqID)
		return result{}, false
	}
	return res, true
}

// sweep drops expired results every sweepEvery writes; r.mu must be held.
func (r *Registry) sweep(now time.Time) {
	r.puts++
	if r.puts%sweepEvery != 0 {
		return
	}
	for id := range r.results {
		r.liveResult(id, now)
	}
}

func checkResult(reqID string, ttl time.Duration) error {
	if reqID == "" {
		return errors.New("memory registry: empty request id")
	}
	if ttl <= 0 {
		return fmt.Errorf("memory registry: result %q: TTL must be positive, got %v", reqID, ttl)
	}
	return nil
}

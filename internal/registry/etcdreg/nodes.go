package etcdreg

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/registry"
)

// renewDelay is the pause between attempts to register a node again after
// its lease was lost.
const renewDelay = time.Second

// claimRecord is stored at a node id's claim key, under the node's lease:
// the key exists while exactly one registration holds the id.
type claimRecord struct {
	// Instance is random per registration, so that a registration made
	// after a restart is told apart from the one it replaces.
	Instance string `json:"Instance"`
	// URL is the holder's API URL, named when another node wants the id.
	URL string `json:"URL"`
}

// nodeReg is a node registered through this Registry.
type nodeReg struct {
	id string
	// instance and claim (the encoded claimRecord) identify this registration.
	instance string
	claim    string
	// mu guards info, key and lease, and serializes writes of the record.
	mu    sync.Mutex
	info  registry.NodeInfo
	key   string
	ttl   int64
	lease clientv3.LeaseID

	stop context.CancelFunc
	done chan struct{}
}

func (r *Registry) nodesPrefix() string { return r.prefix + "/nodes/" }

func (r *Registry) claimKey(id string) string { return r.prefix + "/nodeids/" + url.PathEscape(id) }

func (r *Registry) nodeKey(area, id string) string {
	return r.nodesPrefix() + url.PathEscape(area) + "/" + url.PathEscape(id)
}

// RegisterNode claims the id n.ID and advertises n under a lease of ttl
// (rounded up to whole seconds; etcd may enforce a minimum, 2 s by default),
// kept alive until ctx ends, DeregisterNode or Close. The claim is a key
// created in a transaction that fails when the key exists, so of two
// processes registering one id only one wins; the other gets an error
// wrapping registry.ErrExists that names the holder's URL. When ctx ends the
// record and the claim are left to expire with the lease, as they would if
// the node crashed. If the lease is lost while ctx is live (etcd unreachable
// for longer than ttl), the node is registered again under a new lease as
// soon as etcd answers, unless another process claimed the id meanwhile. A
// zero n.Updated is set to the time of writing.
func (r *Registry) RegisterNode(ctx context.Context, n registry.NodeInfo, ttl time.Duration) error {
	if n.ID == "" {
		return errors.New("etcd registry: register node: empty ID")
	}
	if ttl <= 0 {
		return fmt.Errorf("etcd registry: register node %q: TTL must be positive, got %v", n.ID, ttl)
	}
	r.mu.Lock()
	_, own := r.nodes[n.ID]
	r.mu.Unlock()
	if own {
		return fmt.Errorf("etcd registry: register node %q: registered already through this registry: %w", n.ID, registry.ErrExists)
	}
	instance := rand.Text()
	claim, err := json.Marshal(claimRecord{Instance: instance, URL: n.URL})
	if err != nil {
		return fmt.Errorf("etcd registry: register node %q: encode claim: %w", n.ID, err)
	}
	reg := &nodeReg{id: n.ID, instance: instance, claim: string(claim), info: n,
		ttl: int64(math.Ceil(ttl.Seconds())), done: make(chan struct{})}
	reg.mu.Lock()
	err = r.putNode(ctx, reg, n, true)
	reg.mu.Unlock()
	if err != nil {
		return fmt.Errorf("etcd registry: register node %q: %w", n.ID, err)
	}

	kctx, stop := context.WithCancel(ctx)
	unlink := context.AfterFunc(r.ctx, stop)
	reg.stop = stop
	r.mu.Lock()
	r.nodes[n.ID] = reg
	r.mu.Unlock()
	err = r.goroutine(func() {
		defer close(reg.done)
		defer r.forget(reg)
		defer unlink()
		r.keepNode(kctx, reg)
	})
	if err != nil {
		stop()
		r.forget(reg)
		close(reg.done)
		return err
	}
	return nil
}

// UpdateNode rewrites the record of a node registered through this Registry,
// under its lease; registry.ErrNotFound if it is not registered here.
func (r *Registry) UpdateNode(ctx context.Context, n registry.NodeInfo) error {
	r.mu.Lock()
	reg, ok := r.nodes[n.ID]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("node %q: %w", n.ID, registry.ErrNotFound)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	err := r.putNode(ctx, reg, n, false)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		err = r.putNode(ctx, reg, n, true)
	}
	if err != nil {
		return fmt.Errorf("etcd registry: update node %q: %w", n.ID, err)
	}
	return nil
}

// DeregisterNode removes a node's record. A node registered through this
// Registry also loses its lease and keep-alive; any other node's record is
// looked up by id in every area. registry.ErrNotFound if there is none.
func (r *Registry) DeregisterNode(ctx context.Context, id string) error {
	err := r.stopNode(ctx, id)
	if !errors.Is(err, registry.ErrNotFound) {
		if err != nil {
			return fmt.Errorf("etcd registry: deregister node %q: %w", id, err)
		}
		return nil
	}
	rctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := r.cli.Get(rctx, r.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("etcd registry: deregister node %q: %w", id, err)
	}
	suffix := "/" + url.PathEscape(id)
	deleted := false
	for _, kv := range resp.Kvs {
		if !strings.HasSuffix(string(kv.Key), suffix) {
			continue
		}
		del, err := r.cli.Delete(rctx, string(kv.Key))
		if err != nil {
			return fmt.Errorf("etcd registry: deregister node %q: %w", id, err)
		}
		deleted = deleted || del.Deleted > 0
	}
	if deleted {
		if _, err := r.cli.Delete(rctx, r.claimKey(id)); err != nil {
			return fmt.Errorf("etcd registry: deregister node %q: release its id: %w", id, err)
		}
	}
	if !deleted {
		return fmt.Errorf("node %q: %w", id, registry.ErrNotFound)
	}
	return nil
}

// ListNodes returns the nodes of an area ("" for all areas), sorted by area and id.
func (r *Registry) ListNodes(ctx context.Context, area string) ([]registry.NodeInfo, error) {
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	prefix := r.nodesPrefix()
	if area != "" {
		prefix += url.PathEscape(area) + "/"
	}
	resp, err := r.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd registry: list nodes: %w", err)
	}
	nodes := make([]registry.NodeInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n registry.NodeInfo
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			r.log.Warn("skipping undecodable node record", "key", string(kv.Key), "error", err)
			continue
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b registry.NodeInfo) int {
		return cmp.Or(strings.Compare(a.Area, b.Area), strings.Compare(a.ID, b.ID))
	})
	return nodes, nil
}

// putNode writes n under reg's lease, or under a new lease when grant is
// true; a new lease also claims (or moves the claim of) the node's id, and
// fails with registry.ErrExists when another registration holds it. reg.mu
// must be held.
func (r *Registry) putNode(ctx context.Context, reg *nodeReg, n registry.NodeInfo, grant bool) error {
	if n.Updated.IsZero() {
		n.Updated = time.Now().UTC()
	}
	value, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	lease := reg.lease
	if grant {
		g, err := r.cli.Grant(ctx, reg.ttl)
		if err != nil {
			return fmt.Errorf("grant lease: %w", err)
		}
		lease = g.ID
	}
	key := r.nodeKey(n.Area, n.ID)
	ops := []clientv3.Op{clientv3.OpPut(key, string(value), clientv3.WithLease(lease))}
	if reg.key != "" && reg.key != key {
		ops = append(ops, clientv3.OpDelete(reg.key))
	}
	if grant {
		err = r.claim(ctx, reg, lease, ops)
	} else {
		_, err = r.cli.Txn(ctx).Then(ops...).Commit()
	}
	if err != nil {
		if grant {
			r.revoke(lease)
		}
		return err
	}
	if grant && reg.lease != 0 && reg.lease != lease {
		r.revoke(reg.lease)
	}
	reg.info, reg.key, reg.lease = n, key, lease
	return nil
}

// claim runs ops together with writing reg's claim under lease, provided
// the id is free or already claimed by reg (under an older lease).
func (r *Registry) claim(ctx context.Context, reg *nodeReg, lease clientv3.LeaseID, ops []clientv3.Op) error {
	key := r.claimKey(reg.id)
	ops = append(ops, clientv3.OpPut(key, reg.claim, clientv3.WithLease(lease)))
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(key), "=", 0)).
		Then(ops...).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 1 && string(kvs[0].Value) == reg.claim {
		moved, err := r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(key), "=", reg.claim)).
			Then(ops...).
			Commit()
		if err != nil {
			return err
		}
		if moved.Succeeded {
			return nil
		}
	}
	holder := "another node"
	if len(kvs) == 1 {
		var c claimRecord
		if json.Unmarshal(kvs[0].Value, &c) == nil && c.URL != "" {
			holder = "the node at " + c.URL
		}
	}
	return fmt.Errorf("node id %q is held by %s: %w", reg.id, holder, registry.ErrExists)
}

// liveInstance returns the instance of the registration holding id, or ""
// when no registration does.
func (r *Registry) liveInstance(ctx context.Context, id string) (string, error) {
	resp, err := r.cli.Get(ctx, r.claimKey(id))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	var c claimRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return "", fmt.Errorf("decode claim of node %q: %w", id, err)
	}
	return c.Instance, nil
}

// registeredInstance returns the instance of id's registration made
// through this Registry; registry.ErrNotFound if there is none.
func (r *Registry) registeredInstance(id string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.nodes[id]
	if !ok {
		return "", fmt.Errorf("node %q is not registered through this registry: %w", id, registry.ErrNotFound)
	}
	return reg.instance, nil
}

// keepNode keeps reg's lease alive until ctx ends, registering the node
// again when the lease is lost.
func (r *Registry) keepNode(ctx context.Context, reg *nodeReg) {
	for {
		reg.mu.Lock()
		kept := reg.lease
		reg.mu.Unlock()
		ch, err := r.cli.KeepAlive(ctx, kept)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		for {
			reg.mu.Lock()
			if reg.lease != kept {
				// UpdateNode already moved the record to a new lease.
				reg.mu.Unlock()
				break
			}
			err := r.putNode(ctx, reg, reg.info, true)
			reg.mu.Unlock()
			if err == nil {
				r.log.Warn("node lease was lost; registered again", "node", reg.id)
				break
			}
			r.log.Warn("node lease was lost; cannot register again yet", "node", reg.id, "error", err)
			if !sleep(ctx, renewDelay) {
				return
			}
		}
	}
}

// forget drops reg from the registered nodes once its keep-alive has ended:
// from then on its record only waits to expire.
func (r *Registry) forget(reg *nodeReg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes[reg.id] == reg {
		delete(r.nodes, reg.id)
	}
}

// stopNode ends the keep-alive of a node registered through this Registry,
// deletes its record and revokes its lease.
func (r *Registry) stopNode(ctx context.Context, id string) error {
	r.mu.Lock()
	reg, ok := r.nodes[id]
	delete(r.nodes, id)
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("node %q: %w", id, registry.ErrNotFound)
	}
	reg.stop()
	<-reg.done
	rctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	claim := r.claimKey(reg.id)
	_, err = r.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.Value(claim), "=", reg.claim)).
		Then(clientv3.OpDelete(reg.key), clientv3.OpDelete(claim)).
		Else(clientv3.OpDelete(reg.key)).
		Commit()
	if err != nil {
		return err
	}
	r.revoke(reg.lease)
	return nil
}

// revoke revokes a lease that is no longer needed; failures only delay its
// expiry and are logged.
func (r *Registry) revoke(lease clientv3.LeaseID) {
	ctx, cancel, err := r.reqCtx(context.Background())
	if err != nil {
		return
	}
	defer cancel()
	if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		r.log.Warn("cannot revoke lease", "lease", int64(lease), "error", err)
	}
}

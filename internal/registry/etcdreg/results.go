package etcdreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/wire"
)

// Results share leases: a lease granted for a TTL of T seconds is given
// T + W seconds and reused for W seconds, W = T/10 capped at maxLeaseWindow.
// Every result therefore lives at least its TTL and at most W longer, and a
// busy node grants one lease per W instead of one per request. TTLs under
// 10 s get a lease of their own.
const maxLeaseWindow = 10 * time.Second

const (
	statePending = "pending"
	stateDone    = "done"
)

// resultRecord is what is stored at a result key.
type resultRecord struct {
	State    string                   `json:"State"`
	Response *wire.InvocationResponse `json:"Response,omitempty"`
	// Node and Instance name the registration that runs a pending request.
	Node     string `json:"Node,omitempty"`
	Instance string `json:"Instance,omitempty"`
}

// resultLease is a lease shared by results with the same TTL.
type resultLease struct {
	id clientv3.LeaseID
	// until is the last time the lease may be given to a new result.
	until time.Time
}

func (r *Registry) resultKey(reqID string) string { return r.prefix + "/results/" + reqID }

// PutPending records that node nodeID accepted an async request, for ttl.
// The record names the node's registration through this Registry, and
// GetResult reports registry.ResultLost once that registration no longer
// holds the node's id. Request ids are unique: registry.ErrExists if reqID
// already has a record.
func (r *Registry) PutPending(ctx context.Context, reqID, nodeID string, ttl time.Duration) error {
	instance, err := r.registeredInstance(nodeID)
	if err != nil {
		return fmt.Errorf("etcd registry: put pending %q: %w", reqID, err)
	}
	value, err := encodeResult(reqID, resultRecord{State: statePending, Node: nodeID, Instance: instance}, ttl)
	if err != nil {
		return err
	}
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	key := r.resultKey(reqID)
	var resp *clientv3.TxnResponse
	err = r.withResultLease(ctx, ttl, func(lease clientv3.LeaseID) error {
		var err error
		resp, err = r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, value, clientv3.WithLease(lease))).
			Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("etcd registry: put pending %q: %w", reqID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("result %q: %w", reqID, registry.ErrExists)
	}
	return nil
}

// PutResult stores an async result for ttl, replacing its pending record.
func (r *Registry) PutResult(ctx context.Context, reqID string, res *wire.InvocationResponse, ttl time.Duration) error {
	if res == nil {
		return fmt.Errorf("etcd registry: put result %q: no response", reqID)
	}
	value, err := encodeResult(reqID, resultRecord{State: stateDone, Response: res}, ttl)
	if err != nil {
		return err
	}
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	err = r.withResultLease(ctx, ttl, func(lease clientv3.LeaseID) error {
		_, err := r.cli.Put(ctx, r.resultKey(reqID), value, clientv3.WithLease(lease))
		return err
	})
	if err != nil {
		return fmt.Errorf("etcd registry: put result %q: %w", reqID, err)
	}
	return nil
}

// GetResult returns the state of an async request; registry.ErrNotFound if
// unknown or expired. A pending request whose node's registration is gone
// (or was replaced by a later one) is registry.ResultLost.
func (r *Registry) GetResult(ctx context.Context, reqID string) (registry.Result, error) {
	if reqID == "" {
		return registry.Result{}, fmt.Errorf("result %q: %w", reqID, registry.ErrNotFound)
	}
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return registry.Result{}, err
	}
	defer cancel()
	resp, err := r.cli.Get(ctx, r.resultKey(reqID))
	if err != nil {
		return registry.Result{}, fmt.Errorf("etcd registry: get result %q: %w", reqID, err)
	}
	if len(resp.Kvs) == 0 {
		return registry.Result{}, fmt.Errorf("result %q: %w", reqID, registry.ErrNotFound)
	}
	var rec resultRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return registry.Result{}, fmt.Errorf("etcd registry: get result %q: decode: %w", reqID, err)
	}
	switch rec.State {
	case statePending:
		res := registry.Result{State: registry.ResultPending, Node: rec.Node}
		if rec.Instance == "" {
			return res, nil
		}
		live, err := r.liveInstance(ctx, rec.Node)
		if err != nil {
			return registry.Result{}, fmt.Errorf("etcd registry: get result %q: %w", reqID, err)
		}
		if live != rec.Instance {
			res.State = registry.ResultLost
		}
		return res, nil
	case stateDone:
		if rec.Response == nil {
			return registry.Result{}, fmt.Errorf("etcd registry: get result %q: done without a response", reqID)
		}
		return registry.Result{State: registry.ResultDone, Response: rec.Response}, nil
	default:
		return registry.Result{}, fmt.Errorf("etcd registry: get result %q: unknown state %q", reqID, rec.State)
	}
}

func encodeResult(reqID string, rec resultRecord, ttl time.Duration) (string, error) {
	if reqID == "" {
		return "", errors.New("etcd registry: empty request id")
	}
	if ttl <= 0 {
		return "", fmt.Errorf("etcd registry: result %q: TTL must be positive, got %v", reqID, ttl)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("etcd registry: result %q: encode: %w", reqID, err)
	}
	return string(b), nil
}

// withResultLease runs put with a lease that keeps a result at least ttl.
// If the lease vanished (revoked, or etcd restored from a backup), it runs
// put once more with a fresh lease.
func (r *Registry) withResultLease(ctx context.Context, ttl time.Duration, put func(clientv3.LeaseID) error) error {
	lease, err := r.resultLease(ctx, ttl, false)
	if err != nil {
		return err
	}
	err = put(lease)
	if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	if lease, err = r.resultLease(ctx, ttl, true); err != nil {
		return err
	}
	return put(lease)
}

// resultLease returns a lease that lives at least ttl from now, shared when
// ttl is long enough; fresh forces a new grant.
func (r *Registry) resultLease(ctx context.Context, ttl time.Duration, fresh bool) (clientv3.LeaseID, error) {
	secs := int64(math.Ceil(ttl.Seconds()))
	window := min(time.Duration(secs)*time.Second/10, maxLeaseWindow).Truncate(time.Second)
	if window == 0 {
		g, err := r.cli.Grant(ctx, secs)
		if err != nil {
			return 0, fmt.Errorf("grant lease: %w", err)
		}
		return g.ID, nil
	}
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	if l, ok := r.leases[secs]; ok && !fresh && time.Now().Before(l.until) {
		return l.id, nil
	}
	// The lease expires no earlier than start + secs + window, so reusing
	// it until start + window leaves every result at least secs.
	start := time.Now()
	g, err := r.cli.Grant(ctx, secs+int64(window/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	r.leases[secs] = resultLease{id: g.ID, until: start.Add(window)}
	return g.ID, nil
}

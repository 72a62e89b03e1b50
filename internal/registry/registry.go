// Package registry is the global registry of a Serverledge deployment:
// function definitions, node membership and async results, kept in etcd.
//
// Registry is the interface the rest of the node uses; package
// registry/etcdreg implements it on go.etcd.io/etcd/client/v3, and
// registry/registrytest holds the conformance suite every implementation
// passes (run against embedded and external etcd).
package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/wire"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound means the key does not exist (or expired).
	ErrNotFound = errors.New("not found")
	// ErrExists means a create found the key already present.
	ErrExists = errors.New("already exists")
)

// EventType says what happened to a function.
type EventType int

const (
	// FunctionPut means the function was created or updated.
	FunctionPut EventType = iota
	// FunctionDeleted means the function was deleted.
	FunctionDeleted
)

// FunctionEvent is delivered by WatchFunctions.
type FunctionEvent struct {
	Type EventType
	// Name is the function's name.
	Name string
	// Function is the new definition for FunctionPut, without its code
	// (nil for FunctionDeleted).
	Function *function.Function
}

// NodeInfo is what a node advertises about itself.
type NodeInfo struct {
	// ID is unique per node process.
	ID string `json:"ID"`
	// URL is the node's API base URL, e.g. http://127.0.0.1:1323.
	URL string `json:"URL"`
	// Area is the edge zone or cloud region.
	Area string `json:"Area"`
	// Cloud is true for cloud nodes.
	Cloud bool `json:"Cloud"`
	// Status is the node's latest load report (may be nil).
	Status *wire.StatusResponse `json:"Status,omitempty"`
	// Updated is when the record was written.
	Updated time.Time `json:"Updated"`
}

// ResultState says whether an async request finished.
type ResultState int

const (
	// ResultPending means the request was accepted and is still running.
	ResultPending ResultState = iota
	// ResultDone means the response is available.
	ResultDone
	// ResultLost means the node that accepted the request stopped (or lost
	// its registration) before it stored a result; Result.Node names it.
	ResultLost
)

// Result is the state of an async request.
type Result struct {
	// State says whether the request is running, done or lost.
	State ResultState
	// Response is the stored response, for ResultDone only.
	Response *wire.InvocationResponse
	// Node is the id of the node that accepted the request ("" when unknown).
	Node string
}

// Registry is the global registry.
type Registry interface {
	// CreateFunction stores a new function; ErrExists if the name is taken.
	CreateFunction(ctx context.Context, f *function.Function) error
	// UpdateFunction replaces an existing function; ErrNotFound if absent.
	UpdateFunction(ctx context.Context, f *function.Function) error
	// DeleteFunction removes a function; ErrNotFound if absent.
	DeleteFunction(ctx context.Context, name string) error
	// GetFunction returns a function's definition without its code
	// (TarFunctionCode is empty); ErrNotFound if absent.
	GetFunction(ctx context.Context, name string) (*function.Function, error)
	// GetCode returns the decoded code archive of the named function at
	// version (nil for a function without code). It returns ErrNotFound
	// when the function is absent or its current version is another one:
	// the code of a replaced version is not kept.
	GetCode(ctx context.Context, name, version string) ([]byte, error)
	// ListFunctions returns the names of all functions, sorted.
	ListFunctions(ctx context.Context) ([]string, error)
	// WatchFunctions delivers every later change until ctx ends; the channel
	// is closed then. Events carry definitions without code, and watching
	// never reads code.
	WatchFunctions(ctx context.Context) (<-chan FunctionEvent, error)

	// RegisterNode claims the node id n.ID and advertises n under a lease of
	// the given TTL, kept alive until ctx ends or DeregisterNode is called.
	// An id is held by one registration at a time: while another live
	// registration holds it (another node process, or an earlier
	// registration whose lease has not expired yet) RegisterNode changes
	// nothing and returns an error wrapping ErrExists that names the holder.
	RegisterNode(ctx context.Context, n NodeInfo, ttl time.Duration) error
	// UpdateNode refreshes the advertised record (e.g. a new load report) under the same lease.
	UpdateNode(ctx context.Context, n NodeInfo) error
	// DeregisterNode removes the node's record and revokes its lease.
	DeregisterNode(ctx context.Context, id string) error
	// ListNodes returns the nodes of an area ("" for all areas).
	ListNodes(ctx context.Context, area string) ([]NodeInfo, error)

	// PutPending records, with a TTL, that node nodeID accepted an async
	// request. The record is bound to the node's registration made through
	// this Registry: once that registration ends (deregistered, or its lease
	// expired because the node died) GetResult reports ResultLost. ErrExists
	// if reqID already has a record; ErrNotFound if nodeID is not registered
	// through this Registry.
	PutPending(ctx context.Context, reqID, nodeID string, ttl time.Duration) error
	// PutResult stores an async result with a TTL, replacing its pending record.
	PutResult(ctx context.Context, reqID string, r *wire.InvocationResponse, ttl time.Duration) error
	// GetResult returns the state of an async request; ErrNotFound if unknown or expired.
	GetResult(ctx context.Context, reqID string) (Result, error)

	// Close releases the client.
	Close() error
}

// CheckFunction is the minimal check every implementation applies before
// storing f: a definition with a name that is a valid key.
func CheckFunction(f *function.Function) error {
	if f == nil {
		return fmt.Errorf("%w: no function", function.ErrInvalid)
	}
	return CheckName(f.Name)
}

// CheckName refuses a function name that cannot be a registry key.
func CheckName(name string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%w: function name %q is empty or contains '/'", function.ErrInvalid, name)
	}
	return nil
}

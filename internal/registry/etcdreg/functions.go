package etcdreg

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
)

// etcd refuses requests larger than 1.5 MiB by default (--max-request-bytes),
// while a function's code may reach function.MaxCodeBytes. Code that does not
// fit inline is stored in chunks under <prefix>/code/<name>/<codeID>/, written
// before the function record that names them; the record is written in one
// transaction as usual. A writer that dies between the two leaves orphan
// chunks behind, which no record refers to.
const (
	// inlineCodeLimit is the largest TarFunctionCode kept in the record itself.
	inlineCodeLimit = 512 << 10
	// chunkSize is the size of one code chunk.
	chunkSize = 1 << 20
)

// record is what is stored at a function key: the definition, and where its
// code is when it is not inline.
type record struct {
	function.Function
	// CodeID names the chunk set holding the code; empty when inline.
	CodeID string `json:"CodeID,omitempty"`
	// CodeChunks is the number of chunks.
	CodeChunks int `json:"CodeChunks,omitempty"`
}

func (r *Registry) functionsPrefix() string { return r.prefix + "/functions/" }

func (r *Registry) functionKey(name string) string { return r.functionsPrefix() + name }

func (r *Registry) codePrefix(name, codeID string) string {
	return r.prefix + "/code/" + name + "/" + codeID + "/"
}

// CreateFunction stores a new function; registry.ErrExists if the name is taken.
func (r *Registry) CreateFunction(ctx context.Context, f *function.Function) error {
	resp, err := r.putFunction(ctx, "create", f, false)
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("function %q: %w", f.Name, registry.ErrExists)
	}
	return nil
}

// UpdateFunction replaces an existing function; registry.ErrNotFound if absent.
func (r *Registry) UpdateFunction(ctx context.Context, f *function.Function) error {
	resp, err := r.putFunction(ctx, "update", f, true)
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("function %q: %w", f.Name, registry.ErrNotFound)
	}
	if put := resp.Responses[0].GetResponsePut(); put != nil && put.PrevKv != nil {
		r.dropOldCode(f.Name, put.PrevKv.Value)
	}
	return nil
}

// putFunction stores f's code, then its record in a transaction that puts
// it only if the function exists already (exists) or not yet (!exists); the
// response says whether it did, and holds the replaced record if any. The
// code is deleted again unless the record was put. verb names the operation
// in errors.
func (r *Registry) putFunction(ctx context.Context, verb string, f *function.Function, exists bool) (*clientv3.TxnResponse, error) {
	if err := registry.CheckFunction(f); err != nil {
		return nil, err
	}
	rec, value, err := r.writeCode(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("etcd registry: %s function %q: %w", verb, f.Name, err)
	}
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		r.dropCode(f.Name, rec)
		return nil, err
	}
	defer cancel()
	key := r.functionKey(f.Name)
	cmp := "="
	if exists {
		cmp = ">"
	}
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), cmp, 0)).
		Then(clientv3.OpPut(key, value, clientv3.WithPrevKV())).
		Commit()
	if err != nil || !resp.Succeeded {
		r.dropCode(f.Name, rec)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd registry: %s function %q: %w", verb, f.Name, err)
	}
	return resp, nil
}

// DeleteFunction removes a function; registry.ErrNotFound if absent.
func (r *Registry) DeleteFunction(ctx context.Context, name string) error {
	if err := registry.CheckName(name); err != nil {
		return err
	}
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := r.cli.Delete(ctx, r.functionKey(name), clientv3.WithPrevKV())
	if err != nil {
		return fmt.Errorf("etcd registry: delete function %q: %w", name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("function %q: %w", name, registry.ErrNotFound)
	}
	for _, kv := range resp.PrevKvs {
		r.dropOldCode(name, kv.Value)
	}
	return nil
}

// GetFunction returns a function with its code; registry.ErrNotFound if absent.
func (r *Registry) GetFunction(ctx context.Context, name string) (*function.Function, error) {
	if err := registry.CheckName(name); err != nil {
		return nil, err
	}
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := r.cli.Get(ctx, r.functionKey(name))
	if err != nil {
		return nil, fmt.Errorf("etcd registry: get function %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("function %q: %w", name, registry.ErrNotFound)
	}
	f, err := r.decodeFunction(ctx, resp.Kvs[0].Value, resp.Header.Revision)
	if err != nil {
		return nil, fmt.Errorf("etcd registry: get function %q: %w", name, err)
	}
	return f, nil
}

// ListFunctions returns the names of all functions, sorted; never nil.
func (r *Registry) ListFunctions(ctx context.Context) ([]string, error) {
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	prefix := r.functionsPrefix()
	resp, err := r.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("etcd registry: list functions: %w", err)
	}
	names := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		names = append(names, strings.TrimPrefix(string(kv.Key), prefix))
	}
	return names, nil
}

// writeCode stores f's code in chunks when it is too large to be inline,
// and returns the record to store and its encoding.
func (r *Registry) writeCode(ctx context.Context, f *function.Function) (record, string, error) {
	rec := record{Function: *f}
	if len(f.TarFunctionCode) > inlineCodeLimit {
		rec.TarFunctionCode = ""
		rec.CodeID = strings.ToLower(rand.Text())
		code := f.TarFunctionCode
		prefix := r.codePrefix(f.Name, rec.CodeID)
		for i := 0; len(code) > 0; i++ {
			n := min(chunkSize, len(code))
			if err := r.putChunk(ctx, fmt.Sprintf("%s%06d", prefix, i), code[:n]); err != nil {
				r.dropCode(f.Name, rec)
				return record{}, "", fmt.Errorf("store code chunk %d: %w", i, err)
			}
			code = code[n:]
			rec.CodeChunks++
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		r.dropCode(f.Name, rec)
		return record{}, "", fmt.Errorf("encode: %w", err)
	}
	return rec, string(b), nil
}

// putChunk writes one code chunk, as a request of its own.
func (r *Registry) putChunk(ctx context.Context, key, chunk string) error {
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = r.cli.Put(ctx, key, chunk)
	return err
}

// dropCode deletes the chunks of rec, if any. It runs after the caller's
// request, so it gets its own bounded context.
func (r *Registry) dropCode(name string, rec record) {
	if rec.CodeID == "" {
		return
	}
	ctx, cancel, err := r.reqCtx(context.Background())
	if err != nil {
		return
	}
	defer cancel()
	if _, err := r.cli.Delete(ctx, r.codePrefix(name, rec.CodeID), clientv3.WithPrefix()); err != nil {
		r.log.Warn("cannot delete code chunks", "function", name, "code_id", rec.CodeID, "error", err)
	}
}

// dropOldCode deletes the chunks of a record that was replaced or deleted.
func (r *Registry) dropOldCode(name string, value []byte) {
	var old record
	if err := json.Unmarshal(value, &old); err != nil {
		return
	}
	r.dropCode(name, old)
}

// decodeFunction decodes a record read at revision rev, fetching its code
// chunks at that same revision.
func (r *Registry) decodeFunction(ctx context.Context, value []byte, rev int64) (*function.Function, error) {
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	f := rec.Function
	if rec.CodeID == "" {
		return &f, nil
	}
	resp, err := r.cli.Get(ctx, r.codePrefix(f.Name, rec.CodeID), clientv3.WithPrefix(), clientv3.WithRev(rev),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read code chunks: %w", err)
	}
	if len(resp.Kvs) != rec.CodeChunks {
		return nil, fmt.Errorf("code has %d of %d chunks", len(resp.Kvs), rec.CodeChunks)
	}
	var code strings.Builder
	for _, kv := range resp.Kvs {
		code.Write(kv.Value)
	}
	f.TarFunctionCode = code.String()
	return &f, nil
}

package etcdreg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
)

// A function is stored as two parts, so that reading or watching
// definitions never moves code: the record at <prefix>/functions/<name>
// holds the definition, and the code (the base64 of the archive, as
// received) is stored in chunks under <prefix>/code/<name>/<codeID>/ (etcd
// refuses requests larger than 1.5 MiB by default, while code may reach
// function.MaxCodeBytes). The chunks are written before the record that
// names them, and the record is written in one transaction as usual; a code
// ID is never reused, so the chunks of a record never change. A writer that
// dies between the two leaves orphan chunks behind, which no record refers
// to. Nodes of earlier versions read this layout too.
//
// Records written by earlier versions may hold small code inline
// (TarFunctionCode); they are still read.
const chunkSize = 1 << 20 // a multiple of 4: each chunk decodes on its own

// record is what is stored at a function key: the definition, and where its
// code is.
type record struct {
	function.Function
	codeRef
}

// codeRef says where a record's code is.
type codeRef struct {
	// CodeID names the chunk set holding the code; empty when the function
	// has no code or the code is inline (older records).
	CodeID string `json:"CodeID,omitempty"`
	// CodeChunks is the number of chunks.
	CodeChunks int `json:"CodeChunks,omitempty"`
	// CodeSize is the length of the decoded code in bytes (0 in older records).
	CodeSize int `json:"CodeSize,omitempty"`
}

// definition is a record decoded without its code: the inline code of an
// older record is skipped, not copied.
type definition struct {
	function.Function
	codeRef
	TarFunctionCode skipped `json:"TarFunctionCode"`
}

// skipped is a JSON value that is parsed and dropped.
type skipped struct{}

// UnmarshalJSON drops the value.
func (*skipped) UnmarshalJSON([]byte) error { return nil }

// decodeDefinition decodes a record's definition, without its code.
func decodeDefinition(value []byte) (*function.Function, codeRef, error) {
	var d definition
	if err := json.Unmarshal(value, &d); err != nil {
		return nil, codeRef{}, fmt.Errorf("decode: %w", err)
	}
	f := d.Function
	f.TarFunctionCode = ""
	return &f, d.codeRef, nil
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
		r.dropCode(f.Name, rec.codeRef)
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
		r.dropCode(f.Name, rec.codeRef)
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

// GetFunction returns a function's definition without its code;
// registry.ErrNotFound if absent. It reads the record only, never the code.
func (r *Registry) GetFunction(ctx context.Context, name string) (*function.Function, error) {
	value, err := r.getRecord(ctx, name)
	if err != nil {
		return nil, err
	}
	f, _, err := decodeDefinition(value)
	if err != nil {
		return nil, fmt.Errorf("etcd registry: get function %q: %w", name, err)
	}
	return f, nil
}

// GetCode returns the decoded code of the named function at version;
// registry.ErrNotFound if the function is absent or its version is another.
func (r *Registry) GetCode(ctx context.Context, name, version string) ([]byte, error) {
	value, err := r.getRecord(ctx, name)
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		return nil, fmt.Errorf("etcd registry: get code of %q: decode: %w", name, err)
	}
	if rec.Version != version {
		return nil, fmt.Errorf("code of function %q version %s (now %s): %w", name, version, rec.Version, registry.ErrNotFound)
	}
	code, err := r.readCode(ctx, rec)
	if err != nil {
		return nil, fmt.Errorf("etcd registry: get code of %q: %w", name, err)
	}
	return code, nil
}

// getRecord returns the value stored at name's function key.
func (r *Registry) getRecord(ctx context.Context, name string) ([]byte, error) {
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
	return resp.Kvs[0].Value, nil
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

// writeCode stores f's code in chunks and returns the record to store
// (without the code) and its encoding.
func (r *Registry) writeCode(ctx context.Context, f *function.Function) (record, string, error) {
	rec := record{Function: f.WithoutCode()}
	if code := f.TarFunctionCode; code != "" {
		size, err := decodedLen(code)
		if err != nil {
			return record{}, "", err
		}
		rec.CodeID = strings.ToLower(rand.Text())
		rec.CodeSize = size
		prefix := r.codePrefix(f.Name, rec.CodeID)
		for i := 0; len(code) > 0; i++ {
			n := min(chunkSize, len(code))
			if err := r.putChunk(ctx, chunkKey(prefix, i), code[:n]); err != nil {
				r.dropCode(f.Name, rec.codeRef)
				return record{}, "", fmt.Errorf("store code chunk %d: %w", i, err)
			}
			code = code[n:]
			rec.CodeChunks++
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		r.dropCode(f.Name, rec.codeRef)
		return record{}, "", fmt.Errorf("encode: %w", err)
	}
	return rec, string(b), nil
}

// decodedLen returns the length of the bytes the padded base64 s encodes.
func decodedLen(s string) (int, error) {
	if len(s)%4 != 0 {
		return 0, fmt.Errorf("%w: TarFunctionCode is not valid base64: length %d is not a multiple of 4", function.ErrInvalid, len(s))
	}
	tail := s[len(s)-min(2, len(s)):]
	return len(s)/4*3 - (len(tail) - len(strings.TrimRight(tail, "="))), nil
}

func chunkKey(prefix string, i int) string { return fmt.Sprintf("%s%06d", prefix, i) }

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

// readCode returns the decoded code of rec. Chunks are read one request
// each and decoded straight into the result, so that no more than one
// chunk of base64 is held beside the decoded code; a missing chunk means
// the record was replaced meanwhile (registry.ErrNotFound).
func (r *Registry) readCode(ctx context.Context, rec record) ([]byte, error) {
	if rec.CodeID == "" {
		return decodeBase64(rec.TarFunctionCode)
	}
	size := rec.CodeSize
	if size == 0 {
		size = base64.StdEncoding.DecodedLen(rec.CodeChunks * chunkSize) // older records: a bound, trimmed below
	}
	// The last chunk's padding makes DecodedLen up to 2 bytes larger than what it decodes to.
	code := make([]byte, size+2)
	n := 0
	prefix := r.codePrefix(rec.Name, rec.CodeID)
	for i := range rec.CodeChunks {
		chunk, err := r.getChunk(ctx, chunkKey(prefix, i))
		if err != nil {
			return nil, fmt.Errorf("read code chunk %d of %d: %w", i, rec.CodeChunks, err)
		}
		if base64.StdEncoding.DecodedLen(len(chunk)) > len(code)-n {
			return nil, fmt.Errorf("code chunk %d is larger than the recorded %d bytes", i, rec.CodeSize)
		}
		m, err := base64.StdEncoding.Decode(code[n:], chunk)
		if err != nil {
			return nil, fmt.Errorf("code chunk %d is not valid base64: %w", i, err)
		}
		n += m
	}
	if rec.CodeSize > 0 && n != rec.CodeSize {
		return nil, fmt.Errorf("code has %d bytes, the record says %d", n, rec.CodeSize)
	}
	if rec.CodeSize == 0 {
		return bytes.Clone(code[:n]), nil
	}
	return code[:n:n], nil
}

// getChunk reads one code chunk.
func (r *Registry) getChunk(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := r.cli.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("chunk gone, the function was replaced: %w", registry.ErrNotFound)
	}
	return resp.Kvs[0].Value, nil
}

// dropCode deletes the chunks ref names, if any. It runs after the caller's
// request, so it gets its own bounded context.
func (r *Registry) dropCode(name string, ref codeRef) {
	if ref.CodeID == "" {
		return
	}
	ctx, cancel, err := r.reqCtx(context.Background())
	if err != nil {
		return
	}
	defer cancel()
	if _, err := r.cli.Delete(ctx, r.codePrefix(name, ref.CodeID), clientv3.WithPrefix()); err != nil {
		r.log.Warn("cannot delete code chunks", "function", name, "code_id", ref.CodeID, "error", err)
	}
}

// dropOldCode deletes the chunks of a record that was replaced or deleted.
func (r *Registry) dropOldCode(name string, value []byte) {
	_, ref, err := decodeDefinition(value)
	if err != nil {
		return
	}
	r.dropCode(name, ref)
}

// decodeBase64 decodes the base64 code of an older record.
func decodeBase64(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("stored code is not valid base64: %w", err)
	}
	return b, nil
}

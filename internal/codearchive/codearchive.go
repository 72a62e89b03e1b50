// Package codearchive validates and unpacks function code archives (tar,
// optionally gzip-compressed) so that nothing lands outside the target
// directory.
//
// Refused: absolute paths, paths that climb out with "..", symbolic links
// whose target is absolute or resolves outside the directory, hard links to
// anything but a regular file of the same archive, device, FIFO and other
// special entries, and any entry whose path goes through a symbolic link
// (so a link can never be used to write elsewhere). Also refused, because
// the unpacker could not apply them: an entry that replaces a directory by
// something else or something else by a directory, and an entry below a
// path that is not a directory.
//
// Every archive is bounded before work is spent on it: the decompressed
// stream (headers, names and contents), the number of entries and of paths,
// the length of each path, component and link target, the nesting depth and
// the sum of all names. Check and Extract apply the same rules through one
// validator, so an archive Check accepts unpacks. The work is linear in the
// size of the archive and stops when the context ends.
package codearchive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Limits applied to every archive, documented in docs/api.md.
const (
	// MaxTotalBytes bounds the decompressed tar stream (headers, names,
	// link targets, file contents and padding) and, separately, the sum of
	// the sizes of all regular files.
	MaxTotalBytes = 256 << 20
	// MaxEntries bounds the number of tar entries and, separately, the
	// number of distinct paths they create (implied parent directories
	// included).
	MaxEntries = 20000
	// MaxPathBytes bounds an entry's path and a link's target (PATH_MAX
	// without its terminating NUL).
	MaxPathBytes = 4095
	// MaxComponentBytes bounds one path component (NAME_MAX).
	MaxComponentBytes = 255
	// MaxDepth bounds the number of components of a path.
	MaxDepth = 128
	// MaxNameBytes bounds the sum of the lengths of all entry paths and
	// link targets, which is what the validator keeps in memory.
	MaxNameBytes = 8 << 20
	// CheckTimeout is the time budget of Check and Inspect.
	CheckTimeout = 10 * time.Second
)

// maxLinkHops bounds symbolic link resolution, like the kernel's ELOOP limit.
const maxLinkHops = 40

// Sentinel errors callers branch on.
var (
	// ErrUnsafeEntry means an entry would escape the target directory or is of a refused type.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
	// ErrInvalidArchive means the input is not a readable tar archive,
	// exceeds the limits or cannot be unpacked as given.
	ErrInvalidArchive = errors.New("invalid code archive")
)

// Check validates an archive without writing anything. It stops when ctx
// ends and after CheckTimeout.
func Check(ctx context.Context, archive []byte) error {
	_, err := Inspect(ctx, archive)
	return err
}

// Inspect validates an archive like Check and returns an index of what it
// unpacks to.
func Inspect(ctx context.Context, archive []byte) (*Index, error) {
	bctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	v := newValidator()
	err := v.walk(bctx, bytes.NewReader(archive), nil)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w: checking took longer than %v: %w", ErrInvalidArchive, CheckTimeout, err)
	}
	if err != nil {
		return nil, err
	}
	return &Index{v: v}, nil
}

// Validate is Check without the time budget: it stops only when ctx ends.
// The executor uses it, so that an archive the node accepted is not refused
// later because the container has less CPU than the node.
func Validate(ctx context.Context, archive []byte) error {
	return newValidator().walk(ctx, bytes.NewReader(archive), nil)
}

// Index describes the paths an accepted archive unpacks to.
type Index struct {
	v *validator
}

// IsFile reports whether rel, a slash-separated path relative to the code
// directory, is a regular file once unpacked (following symbolic links).
func (ix *Index) IsFile(rel string) bool {
	n := ix.find(rel)
	return n != nil && n.kind == kindFile
}

// IsDir reports whether rel is a directory once unpacked (following
// symbolic links); "." is the code directory itself.
func (ix *Index) IsDir(rel string) bool {
	n := ix.find(rel)
	return n != nil && n.kind == kindDir
}

func (ix *Index) find(rel string) *node {
	if strings.HasPrefix(rel, "/") || len(rel) > MaxPathBytes || strings.ContainsRune(rel, 0) {
		return nil
	}
	hops := 0
	p, err := ix.v.follow(pos{n: ix.v.root}, rel, &hops)
	if err != nil || p.virt > 0 {
		return nil
	}
	if p.n.kind == kindLink {
		return nil
	}
	return p.n
}

// ctxReader counts the decompressed bytes, refusing more than MaxTotalBytes,
// and stops reading once ctx ends.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	left int64
	err  error // the reason reading stopped, if it is ours
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if err := c.ctx.Err(); err != nil {
		c.err = fmt.Errorf("code archive: %w", err)
		return 0, c.err
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		c.err = fmt.Errorf("%w: decompresses to more than %d bytes", ErrInvalidArchive, MaxTotalBytes)
		return 0, c.err
	}
	return n, err
}

// open returns the decompressed stream, transparently un-gzipping.
func open(ctx context.Context, r io.Reader) (*ctxReader, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrInvalidArchive, err)
		}
		src = zr
	}
	return &ctxReader{ctx: ctx, r: src, left: MaxTotalBytes}, nil
}

// entry is a validated archive entry; name is clean and relative to the root.
type entry struct {
	hdr  *tar.Header
	name string
	// link is the clean target relative to the root (hard links) or the
	// original target (symbolic links).
	link string
}

// walk reads the archive, validates every entry and hands it to fn (if not nil).
func (v *validator) walk(ctx context.Context, r io.Reader, fn func(entry, *tar.Reader) error) error {
	cr, err := open(ctx, r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(cr)
	for count := 0; ; count++ {
		hdr, err := tr.Next()
		if cr.err != nil {
			return cr.err
		}
		if errors.Is(err, io.EOF) {
			return v.checkLinks(ctx)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArchive, err)
		}
		if count >= MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrInvalidArchive, MaxEntries)
		}
		e, skip, err := v.check(hdr)
		if err != nil {
			return err
		}
		if skip || fn == nil {
			continue
		}
		if err := fn(e, tr); err != nil {
			if cr.err != nil {
				return cr.err
			}
			return err
		}
	}
}

type kind uint8

const (
	kindDir kind = iota
	kindFile
	kindLink
)

// node is one path of the archive: the tree the archive unpacks to.
type node struct {
	parent   *node
	kind     kind
	children map[string]*node // directories only
	target   string           // symbolic links only
	path     string           // symbolic links only, for messages

	// Resolution of a symbolic link, computed once.
	state resolution
	hops  int
	dest  pos
}

// resolution is how far a symbolic link's resolution got.
type resolution uint8

const (
	unresolved resolution = iota
	resolving
	resolved
)

// pos is a position reached while resolving a path: a node of the tree,
// followed by virt components that do not exist in the archive.
type pos struct {
	n    *node
	virt int
}

// validator checks entries one by one against the tree earlier entries built.
type validator struct {
	root  *node
	nodes int
	names int
	total int64 // sum of the sizes of regular files
	links []*node
}

func newValidator() *validator {
	return &validator{root: &node{kind: kindDir, children: map[string]*node{}}}
}

func unsafe(name, why string) error {
	return fmt.Errorf("%w %q: %s", ErrUnsafeEntry, name, why)
}

func invalid(name, why string) error {
	return fmt.Errorf("%w: entry %q %s", ErrInvalidArchive, name, why)
}

// cleanRel turns an archive path into a clean path relative to the root, or
// reports why it is refused; limit is true for a refusal by a size limit.
func cleanRel(name string) (clean, why string, limit bool) {
	if len(name) > MaxPathBytes {
		return "", fmt.Sprintf("is %d bytes long, the limit is %d", len(name), MaxPathBytes), true
	}
	if strings.ContainsRune(name, 0) {
		return "", "NUL byte in path", false
	}
	if strings.HasPrefix(name, "/") {
		return "", "absolute path", false
	}
	clean = path.Clean(name) // linear, no allocation for a clean path
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", "path escapes the code directory", false
	}
	depth := 1
	for rest := clean; rest != ""; depth++ {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		if len(c) > MaxComponentBytes {
			return "", fmt.Sprintf("has a component of %d bytes, the limit is %d", len(c), MaxComponentBytes), true
		}
		if depth > MaxDepth {
			return "", fmt.Sprintf("is more than %d levels deep", MaxDepth), true
		}
	}
	return clean, "", false
}

// check validates hdr and records it in the tree; skip reports entries
// that need no action (the root itself, global headers).
func (v *validator) check(hdr *tar.Header) (entry, bool, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return entry{}, true, nil // metadata only, as written by git archive
	}
	v.names += len(hdr.Name) + len(hdr.Linkname)
	if v.names > MaxNameBytes {
		return entry{}, false, fmt.Errorf("%w: names and link targets longer than %d bytes in total", ErrInvalidArchive, MaxNameBytes)
	}
	name, why, limit := cleanRel(hdr.Name)
	if limit {
		return entry{}, false, fmt.Errorf("%w: path %.64q... %s", ErrInvalidArchive, hdr.Name, why)
	}
	if why != "" {
		return entry{}, false, unsafe(hdr.Name, why)
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return entry{}, true, nil
		}
		return entry{}, false, unsafe(hdr.Name, "entry names the code directory itself")
	}
	e := entry{hdr: hdr, name: name}
	k := kindFile
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		if isSparse(hdr) {
			return entry{}, false, unsafe(hdr.Name, "sparse file")
		}
		if hdr.Size < 0 || hdr.Size > MaxTotalBytes-v.total {
			return entry{}, false, fmt.Errorf("%w: files larger than %d bytes in total", ErrInvalidArchive, MaxTotalBytes)
		}
		v.total += hdr.Size
	case tar.TypeDir:
		k = kindDir
	case tar.TypeSymlink:
		if err := checkSymlink(hdr, name); err != nil {
			return entry{}, false, err
		}
		e.link = hdr.Linkname
		k = kindLink
	case tar.TypeLink:
		target, why, _ := cleanRel(hdr.Linkname)
		if why != "" {
			return entry{}, false, unsafe(hdr.Name, "hard link target "+hdr.Linkname+": "+why)
		}
		if target == name {
			return entry{}, false, unsafe(hdr.Name, "hard link to itself")
		}
		if t := v.lookup(target); t == nil || t.kind != kindFile {
			return entry{}, false, unsafe(hdr.Name, "hard link to "+hdr.Linkname+", which is not a regular file of the archive")
		}
		e.link = target
	case tar.TypeChar, tar.TypeBlock:
		return entry{}, false, unsafe(hdr.Name, "device file")
	case tar.TypeFifo:
		return entry{}, false, unsafe(hdr.Name, "FIFO")
	default:
		return entry{}, false, unsafe(hdr.Name, fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}
	if err := v.insert(hdr.Name, name, k, e.link); err != nil {
		return entry{}, false, err
	}
	return e, false, nil
}

// isSparse reports a GNU sparse file in PAX form, whose logical size the
// decompressed stream does not bound.
func isSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func checkSymlink(hdr *tar.Header, name string) error {
	switch {
	case hdr.Linkname == "":
		return unsafe(hdr.Name, "empty link target")
	case len(hdr.Linkname) > MaxPathBytes:
		return fmt.Errorf("%w: symbolic link %q: target of %d bytes, the limit is %d", ErrInvalidArchive, hdr.Name, len(hdr.Linkname), MaxPathBytes)
	case strings.ContainsRune(hdr.Linkname, 0):
		return unsafe(hdr.Name, "NUL byte in link target")
	case strings.HasPrefix(hdr.Linkname, "/"):
		return unsafe(hdr.Name, "symbolic link to the absolute path "+hdr.Linkname)
	}
	// A quick textual check; the full resolution runs once every entry is known.
	up := strings.Count(name, "/")
	for rest := hdr.Linkname; rest != ""; {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		switch c {
		case "", ".":
		case "..":
			if up--; up < 0 {
				return unsafe(hdr.Name, "symbolic link "+hdr.Linkname+" points outside the code directory")
			}
		default:
			up++
		}
	}
	return nil
}

// lookup returns the node at the clean path rel without following links,
// or nil if there is none or the path goes through a non-directory.
func (v *validator) lookup(rel string) *node {
	n := v.root
	for rest := rel; rest != ""; {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		if n.kind != kindDir {
			return nil
		}
		if n = n.children[c]; n == nil {
			return nil
		}
	}
	return n
}

// insert records the entry at the clean path name, creating implied parent
// directories, and refuses what the unpacker could not do.
func (v *validator) insert(raw, name string, k kind, target string) error {
	n := v.root
	walked := 0
	for rest := name; ; {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		walked += len(c) + 1
		last := rest == ""
		child := n.children[c]
		if child == nil {
			if v.nodes++; v.nodes > MaxEntries {
				return fmt.Errorf("%w: more than %d paths", ErrInvalidArchive, MaxEntries)
			}
			child = &node{parent: n, kind: kindDir}
			if last {
				child.kind = k
			}
			if child.kind == kindDir {
				child.children = map[string]*node{}
			}
			n.children[c] = child
		} else if !last {
			switch child.kind {
			case kindLink:
				return unsafe(raw, "path goes through the symbolic link "+name[:walked-1])
			case kindFile:
				return invalid(raw, "lies below "+name[:walked-1]+", which is not a directory")
			}
		} else {
			switch {
			case child.kind == kindDir && k == kindDir:
			case child.kind == kindDir:
				return invalid(raw, "replaces a directory")
			case k == kindDir:
				return invalid(raw, "is a directory replacing a file of the same name")
			default:
				child.kind = k
			}
		}
		if last {
			if k == kindLink {
				child.target, child.path = target, name
				v.links = append(v.links, child)
			}
			return nil
		}
		n = child
	}
}

// checkLinks resolves every symbolic link of the archive the way the kernel
// would once all entries exist, so that a chain of individually harmless
// links (s -> . and t -> s/..) cannot point outside.
func (v *validator) checkLinks(ctx context.Context) error {
	for i, l := range v.links {
		if l.kind != kindLink {
			continue // replaced by a later entry
		}
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("code archive: %w", err)
			}
		}
		if _, err := v.resolve(l); err != nil {
			return err
		}
	}
	return nil
}

var (
	errEscapes = errors.New("resolves outside the code directory")
	errLoop    = errors.New("has too many levels of symbolic links")
)

// resolve returns where the link l points, computing it once.
func (v *validator) resolve(l *node) (pos, error) {
	switch l.state {
	case resolved:
		return l.dest, nil
	case resolving:
		return pos{}, unsafe(l.path, "symbolic link "+l.target+" "+errLoop.Error())
	}
	l.state = resolving
	hops := 1
	p, err := v.follow(pos{n: l.parent}, l.target, &hops)
	if err != nil {
		if errors.Is(err, ErrUnsafeEntry) {
			return pos{}, err
		}
		return pos{}, unsafe(l.path, "symbolic link "+l.target+" "+err.Error())
	}
	l.state, l.hops, l.dest = resolved, hops, p
	return p, nil
}

// follow walks the relative path p from start, following symbolic links,
// and adds the links it follows to *hops.
func (v *validator) follow(start pos, p string, hops *int) (pos, error) {
	cur := start
	for rest := p; rest != ""; {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			switch {
			case cur.virt > 0:
				cur.virt--
			case cur.n.parent == nil:
				return pos{}, errEscapes
			default:
				cur.n = cur.n.parent
			}
			continue
		case cur.virt > 0 || cur.n.kind != kindDir:
			cur.virt++
			continue
		}
		child := cur.n.children[c]
		switch {
		case child == nil:
			cur.virt++
		case child.kind == kindLink:
			r, err := v.resolve(child)
			if err != nil {
				return pos{}, err
			}
			if *hops += child.hops; *hops > maxLinkHops {
				return pos{}, errLoop
			}
			cur = r
		default:
			cur.n = child
		}
	}
	return cur, nil
}

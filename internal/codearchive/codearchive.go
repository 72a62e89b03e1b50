// Package codearchive validates and unpacks function code archives (tar,
// optionally gzip-compressed) so that nothing lands outside the target
// directory.
//
// Refused: absolute paths, paths that climb out with "..", symbolic links
// whose target is absolute or resolves outside the directory, hard links to
// anything but a regular file of the same archive, device, FIFO and other
// special entries, and any entry whose path goes through a symbolic link
// (so a link can never be used to write elsewhere). Archives are bounded in
// total size (MaxTotalBytes) and number of entries (MaxEntries).
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
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits applied to every archive.
const (
	// MaxTotalBytes bounds the sum of the sizes of all regular files.
	MaxTotalBytes = 256 << 20
	// MaxEntries bounds the number of entries.
	MaxEntries = 20000
)

// Sentinel errors callers branch on.
var (
	// ErrUnsafeEntry means an entry would escape the target directory or is of a refused type.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
	// ErrInvalidArchive means the input is not a readable tar archive or exceeds the limits.
	ErrInvalidArchive = errors.New("invalid code archive")
)

// Check validates an archive without writing anything.
func Check(archive []byte) error {
	return walk(context.Background(), bytes.NewReader(archive), func(entry, *tar.Reader) error { return nil })
}

// Extract unpacks the archive read from r into dir, creating dir if needed.
// Entries are validated as in Check before anything is written; on error,
// entries before the refused one may already be on disk.
func Extract(ctx context.Context, r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	x := &extractor{root: dir, dirs: map[string]bool{".": true}}
	err := walk(ctx, r, x.write)
	if errors.Is(err, ErrUnsafeEntry) {
		// A link chain is only known to escape once the whole archive has
		// been read: take every link this archive created back out.
		for _, l := range x.links {
			_ = os.Remove(x.abs(l))
		}
	}
	return err
}

// entry is a validated archive entry; name is clean and relative to the root.
type entry struct {
	hdr  *tar.Header
	name string
	// link is the clean target relative to the root (hard links) or the
	// original target (symbolic links).
	link string
}

// walk reads the archive, validates every entry and hands it to fn.
func walk(ctx context.Context, r io.Reader, fn func(entry, *tar.Reader) error) error {
	tr, err := open(r)
	if err != nil {
		return err
	}
	v := validator{links: map[string]string{}, files: map[string]bool{}}
	for count := 0; ; count++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return v.checkLinks()
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
		if skip {
			continue
		}
		if err := fn(e, tr); err != nil {
			return err
		}
	}
}

// open returns a tar reader, transparently decompressing gzip input.
func open(r io.Reader) (*tar.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrInvalidArchive, err)
		}
		return tar.NewReader(zr), nil
	}
	return tar.NewReader(br), nil
}

// validator checks entries one by one, remembering what earlier entries created.
type validator struct {
	// links maps each symbolic link of the archive to its target.
	links map[string]string
	files map[string]bool
	total int64
}

// maxLinkHops bounds symbolic link resolution, like the kernel's ELOOP limit.
const maxLinkHops = 40

// checkLinks resolves every symbolic link of the archive the way the kernel
// would once all entries exist, so that a chain of individually harmless
// links (s -> . and t -> s/..) cannot point outside.
func (v *validator) checkLinks() error {
	for name, target := range v.links {
		if why := v.resolve(name, target); why != "" {
			return unsafe(name, "symbolic link "+target+" "+why)
		}
	}
	return nil
}

// resolve follows the link at name and reports why it is refused, or "".
func (v *validator) resolve(name, target string) string {
	var stack []string
	if dir := path.Dir(name); dir != "." {
		stack = strings.Split(dir, "/")
	}
	pending := strings.Split(target, "/")
	for hops := 1; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "resolves outside the code directory"
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		next, ok := v.links[strings.Join(stack, "/")]
		if !ok {
			continue
		}
		if hops++; hops > maxLinkHops {
			return "has too many levels of symbolic links"
		}
		if strings.HasPrefix(next, "/") {
			return "resolves to an absolute path"
		}
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(next, "/"), pending...)
	}
	return ""
}

func unsafe(name, why string) error {
	return fmt.Errorf("%w %q: %s", ErrUnsafeEntry, name, why)
}

// cleanRel turns an archive path into a clean path relative to the root, or
// reports why it is refused.
func cleanRel(name string) (string, string) {
	if strings.ContainsRune(name, 0) {
		return "", "NUL byte in path"
	}
	if strings.HasPrefix(name, "/") {
		return "", "absolute path"
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", "path escapes the code directory"
	}
	return clean, ""
}

// check validates hdr; skip reports entries that need no action (the root itself).
func (v *validator) check(hdr *tar.Header) (entry, bool, error) {
	name, why := cleanRel(hdr.Name)
	if why != "" {
		return entry{}, false, unsafe(hdr.Name, why)
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return entry{}, true, nil
		}
		return entry{}, false, unsafe(hdr.Name, "entry names the code directory itself")
	}
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if _, ok := v.links[p]; ok {
			return entry{}, false, unsafe(hdr.Name, "path goes through the symbolic link "+p)
		}
	}
	e := entry{hdr: hdr, name: name}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 || hdr.Size > MaxTotalBytes-v.total {
			return entry{}, false, fmt.Errorf("%w: files larger than %d bytes in total", ErrInvalidArchive, MaxTotalBytes)
		}
		v.total += hdr.Size
		v.files[name] = true
		delete(v.links, name)
	case tar.TypeDir:
		delete(v.links, name)
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return entry{}, false, unsafe(hdr.Name, "empty link target")
		}
		if strings.HasPrefix(hdr.Linkname, "/") {
			return entry{}, false, unsafe(hdr.Name, "symbolic link to the absolute path "+hdr.Linkname)
		}
		if _, why := cleanRel(path.Join(path.Dir(name), hdr.Linkname)); why != "" {
			return entry{}, false, unsafe(hdr.Name, "symbolic link "+hdr.Linkname+" points outside the code directory")
		}
		e.link = hdr.Linkname
		v.links[name] = hdr.Linkname
		delete(v.files, name)
	case tar.TypeLink:
		target, why := cleanRel(hdr.Linkname)
		if why != "" {
			return entry{}, false, unsafe(hdr.Name, "hard link target "+hdr.Linkname+": "+why)
		}
		if !v.files[target] {
			return entry{}, false, unsafe(hdr.Name, "hard link to "+hdr.Linkname+", which is not a regular file of the archive")
		}
		e.link = target
		v.files[name] = true
		delete(v.links, name)
	case tar.TypeChar, tar.TypeBlock:
		return entry{}, false, unsafe(hdr.Name, "device file")
	case tar.TypeFifo:
		return entry{}, false, unsafe(hdr.Name, "FIFO")
	default:
		return entry{}, false, unsafe(hdr.Name, fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}
	return e, false, nil
}

// extractor writes validated entries below root, refusing to follow any
// symbolic link already present on disk.
type extractor struct {
	root string
	// dirs holds relative directories known to be real directories.
	dirs map[string]bool
	// links lists the symbolic links created so far.
	links []string
}

func (x *extractor) abs(rel string) string {
	return filepath.Join(x.root, filepath.FromSlash(rel))
}

// mkdirs makes sure every component of rel is a real directory, creating
// missing ones.
func (x *extractor) mkdirs(rel string) error {
	if x.dirs[rel] {
		return nil
	}
	if parent := path.Dir(rel); parent != rel {
		if err := x.mkdirs(parent); err != nil {
			return err
		}
	}
	p := x.abs(rel)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("extract %s: %w", rel, err)
		}
	case err != nil:
		return fmt.Errorf("extract %s: %w", rel, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return unsafe(rel, "path goes through a symbolic link on disk")
	case !fi.IsDir():
		return fmt.Errorf("%w: %s exists and is not a directory", ErrInvalidArchive, rel)
	}
	x.dirs[rel] = true
	return nil
}

// clear removes a non-directory at rel so it can be replaced without
// following a link.
func (x *extractor) clear(rel string) error {
	p := x.abs(rel)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("extract %s: %w", rel, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory and cannot be replaced", ErrInvalidArchive, rel)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("extract %s: %w", rel, err)
	}
	return nil
}

func (x *extractor) write(e entry, tr *tar.Reader) error {
	if err := x.mkdirs(path.Dir(e.name)); err != nil {
		return err
	}
	mode := fs.FileMode(e.hdr.Mode) & fs.ModePerm
	switch e.hdr.Typeflag {
	case tar.TypeDir:
		if err := x.mkdirs(e.name); err != nil {
			return err
		}
		return os.Chmod(x.abs(e.name), mode|0o700)
	case tar.TypeSymlink:
		if err := x.clear(e.name); err != nil {
			return err
		}
		delete(x.dirs, e.name)
		if err := os.Symlink(e.link, x.abs(e.name)); err != nil {
			return fmt.Errorf("extract %s: %w", e.name, err)
		}
		x.links = append(x.links, e.name)
		return nil
	case tar.TypeLink:
		if err := x.clear(e.name); err != nil {
			return err
		}
		fi, err := os.Lstat(x.abs(e.link))
		if err != nil || !fi.Mode().IsRegular() {
			return unsafe(e.hdr.Name, "hard link target "+e.link+" is not a regular file")
		}
		if err := os.Link(x.abs(e.link), x.abs(e.name)); err != nil {
			return fmt.Errorf("extract %s: %w", e.name, err)
		}
		return nil
	default:
		if err := x.clear(e.name); err != nil {
			return err
		}
		f, err := os.OpenFile(x.abs(e.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o400)
		if err != nil {
			return fmt.Errorf("extract %s: %w", e.name, err)
		}
		_, err = io.Copy(f, io.LimitReader(tr, e.hdr.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extract %s: %w", e.name, err)
		}
		return nil
	}
}

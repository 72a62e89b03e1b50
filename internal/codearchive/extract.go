package codearchive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// Extract unpacks the archive read from r into dir, creating dir if needed.
// Entries are validated as in Check before anything is written; on error,
// entries before the refused one may already be on disk, but symbolic links
// are only created once the whole archive has been validated, so a refused
// or truncated archive never leaves a link behind. All writes go through an
// os.Root, so nothing lands outside dir even if dir already holds links.
func Extract(ctx context.Context, r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer root.Close()
	x := &extractor{root: root, dirs: map[string]bool{".": true}, links: map[string]string{}}
	if err := newValidator().walk(ctx, r, x.write); err != nil {
		return err
	}
	return x.createLinks()
}

// extractor writes validated entries below root, refusing to follow any
// symbolic link already present on disk.
type extractor struct {
	root *os.Root
	// dirs holds relative directories known to be real directories.
	dirs map[string]bool
	// links maps each symbolic link still to be created to its target;
	// order lists them in archive order.
	links map[string]string
	order []string
}

// createLinks creates the symbolic links of a fully validated archive.
func (x *extractor) createLinks() error {
	for _, name := range x.order {
		target, ok := x.links[name]
		if !ok {
			continue
		}
		delete(x.links, name)
		if err := x.root.Symlink(target, name); err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
	}
	return nil
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
	fi, err := x.root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := x.root.Mkdir(rel, 0o755); err != nil {
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
	fi, err := x.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("extract %s: %w", rel, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory and cannot be replaced", ErrInvalidArchive, rel)
	}
	if err := x.root.Remove(rel); err != nil {
		return fmt.Errorf("extract %s: %w", rel, err)
	}
	return nil
}

func (x *extractor) write(e entry, tr *tar.Reader) error {
	if err := x.mkdirs(path.Dir(e.name)); err != nil {
		return err
	}
	if e.hdr.Typeflag != tar.TypeSymlink {
		delete(x.links, e.name) // replaced before it was created
	}
	mode := fs.FileMode(e.hdr.Mode) & fs.ModePerm
	switch e.hdr.Typeflag {
	case tar.TypeDir:
		if err := x.mkdirs(e.name); err != nil {
			return err
		}
		return x.root.Chmod(e.name, mode|0o700)
	case tar.TypeSymlink:
		if err := x.clear(e.name); err != nil {
			return err
		}
		if _, ok := x.links[e.name]; !ok {
			x.order = append(x.order, e.name)
		}
		x.links[e.name] = e.link
		return nil
	case tar.TypeLink:
		if err := x.clear(e.name); err != nil {
			return err
		}
		fi, err := x.root.Lstat(e.link)
		if err != nil || !fi.Mode().IsRegular() {
			return unsafe(e.hdr.Name, "hard link target "+e.link+" is not a regular file")
		}
		if err := x.root.Link(e.link, e.name); err != nil {
			return fmt.Errorf("extract %s: %w", e.name, err)
		}
		return nil
	default:
		if err := x.clear(e.name); err != nil {
			return err
		}
		f, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o400)
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

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/serverledge/serverledge/internal/function"
)

// packSource returns the tar archive to send as a function's code for a
// --src value:
//   - an existing .tar archive is sent as is;
//   - a .tar.gz or .tgz archive is decompressed (the node takes plain tar);
//   - a single file becomes one entry named after the file, at the archive root;
//   - a directory's contents go at the archive root, so that the handler
//     "hello.handler" finds hello.py whether --src is ./dir, dir/ or /abs/dir.
func packSource(src string) ([]byte, error) {
	info, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("--src: %w", err)
	}
	var archive []byte
	switch {
	case info.IsDir():
		archive, err = packDir(src)
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("--src %s is neither a regular file nor a directory", src)
	case strings.HasSuffix(src, ".tar"):
		archive, err = readTar(src, false)
	case strings.HasSuffix(src, ".tar.gz") || strings.HasSuffix(src, ".tgz"):
		archive, err = readTar(src, true)
	default:
		archive, err = packFile(src, info)
	}
	if err != nil {
		return nil, err
	}
	if len(archive) > function.MaxCodeBytes {
		return nil, fmt.Errorf("--src %s packs into %d bytes; the node accepts at most %d", src, len(archive), function.MaxCodeBytes)
	}
	return archive, nil
}

// readTar reads an existing archive, decompressing it when gzipped, and
// checks that it is a readable tar archive.
func readTar(path string, gzipped bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--src: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if gzipped {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("--src %s is not a gzip archive: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(io.LimitReader(r, function.MaxCodeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("--src %s: %w", path, err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("--src %s is not a valid tar archive: %w", path, err)
		}
	}
	return b, nil
}

// packFile packs one file as a single entry at the archive root.
func packFile(path string, info fs.FileInfo) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := addFile(tw, path, filepath.Base(path), info); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("packing --src: %w", err)
	}
	return buf.Bytes(), nil
}

// packDir packs the contents of dir, with entry names relative to dir.
// Symbolic links are kept when they point inside dir and refused otherwise,
// since the node would refuse them too.
func packDir(dir string) ([]byte, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("--src: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return addHeader(tw, info, name+"/", "")
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := checkLink(rel, target); err != nil {
				return err
			}
			return addHeader(tw, info, name, filepath.ToSlash(target))
		case d.Type().IsRegular():
			return addFile(tw, path, name, info)
		}
		return fmt.Errorf("--src: %s is not a regular file, directory or symbolic link", path)
	})
	if err != nil {
		return nil, fmt.Errorf("packing --src %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("packing --src %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// checkLink refuses a symbolic link at rel whose target leaves the packed directory.
func checkLink(rel, target string) error {
	if filepath.IsAbs(target) {
		return fmt.Errorf("symbolic link %s points to the absolute path %s; the node refuses links out of the code directory", rel, target)
	}
	resolved := filepath.Join(filepath.Dir(rel), target)
	if resolved == ".." || strings.HasPrefix(resolved, ".."+string(filepath.Separator)) {
		return fmt.Errorf("symbolic link %s points to %s, outside --src; the node refuses links out of the code directory", rel, target)
	}
	return nil
}

// addFile writes a regular file's header and content.
func addFile(tw *tar.Writer, path, name string, info fs.FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := addHeader(tw, info, name, ""); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if n != info.Size() {
		return fmt.Errorf("%s changed size while it was packed", path)
	}
	return nil
}

// addHeader writes an entry header named name, without host user names or ids.
func addHeader(tw *tar.Writer, info fs.FileInfo, name, link string) error {
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	hdr.Uid, hdr.Gid = 0, 0
	hdr.Uname, hdr.Gname = "", ""
	return tw.WriteHeader(hdr)
}

package containertest

import (
	"archive/tar"
	"bytes"
	"sort"
	"testing"
)

// Entry is one entry of a hand-built tar archive.
type Entry struct {
	// Name is the path inside the archive, written as is (no cleaning).
	Name string
	// Body is the content of a regular file.
	Body string
	// Type is the tar type flag; default tar.TypeReg.
	Type byte
	// Linkname is the target of a symbolic or hard link.
	Linkname string
}

// Tar builds a tar archive from entries, in order.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.Name, Typeflag: typ, Linkname: e.Linkname, Mode: 0o644}
		switch typ {
		case tar.TypeReg:
			hdr.Size = int64(len(e.Body))
		case tar.TypeDir:
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatalf("tar body %s: %v", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar close: %v", err)
	}
	return buf.Bytes()
}

// Files builds a tar archive of regular files, by path, in sorted order.
func Files(t testing.TB, files map[string]string) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	entries := make([]Entry, 0, len(names))
	for _, name := range names {
		entries = append(entries, Entry{Name: name, Body: files[name]})
	}
	return Tar(t, entries...)
}

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// entry is one archive entry as a test sees it.
type entry struct {
	name string
	body string
	link string
}

// listTar returns the entries of a tar archive in order.
func listTar(t *testing.T, archive []byte) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading archive: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", hdr.Name, err)
		}
		if hdr.Uname != "" || hdr.Uid != 0 {
			t.Errorf("entry %s carries host user %q/%d", hdr.Name, hdr.Uname, hdr.Uid)
		}
		out = append(out, entry{name: hdr.Name, body: string(b), link: hdr.Linkname})
	}
}

func names(es []entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.name)
	}
	return out
}

// makeTree creates work/fn with hello.py, lib/util.py and a link inside the tree.
func makeTree(t *testing.T) string {
	t.Helper()
	work := t.TempDir()
	fn := filepath.Join(work, "fn")
	mustWrite(t, filepath.Join(fn, "hello.py"), "def handler(params, context):\n    return 'hi'\n")
	mustWrite(t, filepath.Join(fn, "lib", "util.py"), "X = 1\n")
	if err := os.Symlink("lib/util.py", filepath.Join(fn, "alias.py")); err != nil {
		t.Fatal(err)
	}
	return work
}

func mustWrite(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPackSourceEntryNames(t *testing.T) {
	work := makeTree(t)
	t.Chdir(work)
	dirEntries := []string{"alias.py", "hello.py", "lib/", "lib/util.py"}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"relative file with dot", "./fn/hello.py", []string{"hello.py"}},
		{"relative file", "fn/hello.py", []string{"hello.py"}},
		{"absolute file", filepath.Join(work, "fn", "lib", "util.py"), []string{"util.py"}},
		{"relative dir with dot", "./fn", dirEntries},
		{"relative dir with slash", "fn/", dirEntries},
		{"relative dir", "fn", dirEntries},
		{"absolute dir", filepath.Join(work, "fn"), dirEntries},
		{"absolute dir with slash", filepath.Join(work, "fn") + "/", dirEntries},
		{"subdirectory", "fn/lib", []string{"util.py"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			archive, err := packSource(tc.src)
			if err != nil {
				t.Fatalf("packSource(%q): %v", tc.src, err)
			}
			if got := names(listTar(t, archive)); !slices.Equal(got, tc.want) {
				t.Errorf("packSource(%q) entries = %q, want %q", tc.src, got, tc.want)
			}
		})
	}
}

func TestPackSourceDirContents(t *testing.T) {
	work := makeTree(t)
	archive, err := packSource(filepath.Join(work, "fn"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]entry{}
	for _, e := range listTar(t, archive) {
		got[e.name] = e
	}
	if got["hello.py"].body != "def handler(params, context):\n    return 'hi'\n" {
		t.Errorf("hello.py body = %q", got["hello.py"].body)
	}
	if got["lib/util.py"].body != "X = 1\n" {
		t.Errorf("lib/util.py body = %q", got["lib/util.py"].body)
	}
	if got["alias.py"].link != "lib/util.py" {
		t.Errorf("alias.py link = %q, want lib/util.py", got["alias.py"].link)
	}
}

func TestPackSourceArchives(t *testing.T) {
	work := t.TempDir()
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	for _, e := range []entry{{name: "src/main.py", body: "print(1)\n"}, {name: "README", body: "x"}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(plain.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"code.tar": plain.Bytes(), "code.tar.gz": gz.Bytes(), "code.tgz": gz.Bytes()} {
		if err := os.WriteFile(filepath.Join(work, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, src := range []string{"code.tar", "code.tar.gz", "code.tgz"} {
		t.Run(src, func(t *testing.T) {
			got, err := packSource(filepath.Join(work, src))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain.Bytes()) {
				t.Errorf("packSource(%s) is not the plain tar archive as given", src)
			}
		})
	}
}

func TestPackSourceErrors(t *testing.T) {
	work := t.TempDir()
	mustWrite(t, filepath.Join(work, "fake.tar"), "this is not a tar archive, just text long enough......")
	mustWrite(t, filepath.Join(work, "fake.tar.gz"), "not gzip")
	mustWrite(t, filepath.Join(work, "out", "a.py"), "x")
	if err := os.Symlink("/etc/passwd", filepath.Join(work, "out", "abs.py")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(work, "up", "a.py"), "x")
	if err := os.Symlink("../fake.tar", filepath.Join(work, "up", "up.py")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  string
	}{
		{"missing", filepath.Join(work, "nope")},
		{"not a tar", filepath.Join(work, "fake.tar")},
		{"not gzip", filepath.Join(work, "fake.tar.gz")},
		{"absolute link", filepath.Join(work, "out")},
		{"link out of the tree", filepath.Join(work, "up")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := packSource(tc.src); err == nil {
				t.Errorf("packSource(%q) succeeded, want an error", tc.src)
			}
		})
	}
}

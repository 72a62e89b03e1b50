package codearchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type tarEntry struct {
	name string
	typ  byte
	body string
	link string
}

func file(name, body string) tarEntry   { return tarEntry{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) tarEntry          { return tarEntry{name: name, typ: tar.TypeDir} }
func symlink(name, to string) tarEntry  { return tarEntry{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) tarEntry { return tarEntry{name: name, typ: tar.TypeLink, link: to} }

func buildTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if e.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatalf("tar body %s: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar close: %v", err)
	}
	return buf.Bytes()
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// outsideFiles lists everything under root except the code directory's subtree.
func outsideFiles(t *testing.T, root, code string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if p == code {
			return filepath.SkipDir
		}
		found = append(found, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestExtractAccepts(t *testing.T) {
	plain := buildTar(t,
		dir("./"),
		file("./hello.py", "print('hi')\n"),
		dir("./dir/"),
		file("./dir/a.txt", "A"),
		file("implicit/parent/b.txt", "B"),
		symlink("dir/l", "../hello.py"),
		symlink("up", "dir/.."),
		hardlink("h.py", "hello.py"),
		file("x/../c.txt", "C"),
	)
	tests := []struct {
		name    string
		archive []byte
	}{
		{"plain tar", plain},
		{"gzip tar", gzipped(t, plain)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(tt.archive); err != nil {
				t.Fatalf("Check: %v", err)
			}
			code := filepath.Join(t.TempDir(), "code")
			if err := Extract(context.Background(), bytes.NewReader(tt.archive), code); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := map[string]string{
				"hello.py":              "print('hi')\n",
				"dir/a.txt":             "A",
				"implicit/parent/b.txt": "B",
				"dir/l":                 "print('hi')\n",
				"h.py":                  "print('hi')\n",
				"c.txt":                 "C",
				"up/hello.py":           "print('hi')\n",
			}
			for name, body := range want {
				got, err := os.ReadFile(filepath.Join(code, name))
				if err != nil {
					t.Errorf("read %s: %v", name, err)
					continue
				}
				if string(got) != body {
					t.Errorf("%s = %q, want %q", name, got, body)
				}
			}
		})
	}
}

func TestEmptyArchive(t *testing.T) {
	for _, archive := range [][]byte{nil, buildTar(t)} {
		if err := Check(archive); err != nil {
			t.Errorf("Check(%d bytes): %v", len(archive), err)
		}
		if err := Extract(context.Background(), bytes.NewReader(archive), filepath.Join(t.TempDir(), "code")); err != nil {
			t.Errorf("Extract(%d bytes): %v", len(archive), err)
		}
	}
}

func TestRefusesUnsafeEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		bad     string // the entry the error must name
	}{
		{"parent path", []tarEntry{file("../x", "x")}, "../x"},
		{"absolute path", []tarEntry{file("/etc/x", "x")}, "/etc/x"},
		{"climbing path", []tarEntry{file("a/../../x", "x")}, "a/../../x"},
		{"dot-dot dir", []tarEntry{dir("../d/")}, "../d/"},
		{"symlink to absolute", []tarEntry{symlink("l", "/etc")}, "l"},
		{"symlink climbing out", []tarEntry{symlink("l", "../../x")}, "l"},
		{"nested symlink climbing out", []tarEntry{symlink("a/b/l", "../../../x")}, "a/b/l"},
		{"write through absolute symlink", []tarEntry{symlink("l", "/tmp"), file("l/x", "x")}, "l"},
		{"write through inner symlink", []tarEntry{dir("sub/"), symlink("l", "sub"), file("l/x", "x")}, "l/x"},
		{"symlink chain escaping", []tarEntry{symlink("s", "."), symlink("t", "s/..")}, "t"},
		{"symlink chain declared first", []tarEntry{symlink("t", "s/.."), symlink("s", ".")}, "t"},
		{"symlink loop", []tarEntry{symlink("a", "b"), symlink("b", "a")}, ""},
		{"hard link to absolute", []tarEntry{hardlink("h", "/etc/passwd")}, "h"},
		{"hard link climbing out", []tarEntry{hardlink("h", "../x")}, "h"},
		{"hard link to symlink", []tarEntry{symlink("d/l", "../f"), hardlink("h", "d/l")}, "h"},
		{"char device", []tarEntry{{name: "dev", typ: tar.TypeChar}}, "dev"},
		{"block device", []tarEntry{{name: "blk", typ: tar.TypeBlock}}, "blk"},
		{"fifo", []tarEntry{{name: "fifo", typ: tar.TypeFifo}}, "fifo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := buildTar(t, tt.entries...)
			err := Check(archive)
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Fatalf("Check: got %v, want ErrUnsafeEntry", err)
			}
			if tt.bad != "" && !strings.Contains(err.Error(), `"`+tt.bad+`"`) {
				t.Errorf("Check error %q does not name %q", err, tt.bad)
			}
			root := t.TempDir()
			code := filepath.Join(root, "code")
			err = Extract(context.Background(), bytes.NewReader(archive), code)
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Fatalf("Extract: got %v, want ErrUnsafeEntry", err)
			}
			if out := outsideFiles(t, root, code); len(out) > 0 {
				t.Errorf("Extract wrote outside the code directory: %v", out)
			}
			if _, err := os.Lstat("/etc/x"); err == nil {
				t.Errorf("/etc/x exists")
			}
			// No link created by a refused archive may remain.
			_ = filepath.WalkDir(code, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type()&fs.ModeSymlink != 0 && tt.bad != "" && strings.HasSuffix(p, "/"+tt.bad) {
					t.Errorf("refused link %s left on disk", p)
				}
				return nil
			})
		})
	}
}

func TestRefusesExistingSymlinkOnDisk(t *testing.T) {
	root := t.TempDir()
	code := filepath.Join(root, "code")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{code, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(code, "pre")); err != nil {
		t.Fatal(err)
	}
	archive := buildTar(t, file("pre/x", "x"))
	err := Extract(context.Background(), bytes.NewReader(archive), code)
	if !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("Extract: got %v, want ErrUnsafeEntry", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) > 0 {
		t.Errorf("wrote %d entries through the symlink", len(entries))
	}
}

func TestReplacesExistingSymlinkFile(t *testing.T) {
	root := t.TempDir()
	code := filepath.Join(root, "code")
	target := filepath.Join(root, "target")
	if err := os.Mkdir(code, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(code, "f")); err != nil {
		t.Fatal(err)
	}
	if err := Extract(context.Background(), bytes.NewReader(buildTar(t, file("f", "new"))), code); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("file behind the symlink was overwritten: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(code, "f")); string(got) != "new" {
		t.Errorf("f = %q, want %q", got, "new")
	}
}

func TestRefusesInvalidArchives(t *testing.T) {
	var huge bytes.Buffer
	tw := tar.NewWriter(&huge)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: MaxTotalBytes + 1, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	many := make([]tarEntry, MaxEntries+1)
	for i := range many {
		many[i] = dir("d/")
	}
	tests := []struct {
		name    string
		archive []byte
	}{
		{"not a tar", bytes.Repeat([]byte("garbage!"), 128)},
		{"broken gzip", []byte{0x1f, 0x8b, 0, 1, 2}},
		{"too large", huge.Bytes()},
		{"too many entries", buildTar(t, many...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(tt.archive); !errors.Is(err, ErrInvalidArchive) {
				t.Errorf("Check: got %v, want ErrInvalidArchive", err)
			}
		})
	}
}

func TestExtractHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Extract(ctx, bytes.NewReader(buildTar(t, file("a", "a"))), filepath.Join(t.TempDir(), "code"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

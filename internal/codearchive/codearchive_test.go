package codearchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
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

func buildTar(t testing.TB, entries ...tarEntry) []byte {
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

func gzipped(t testing.TB, b []byte) []byte {
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
			if err := Check(context.Background(), tt.archive); err != nil {
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
		if err := Check(context.Background(), archive); err != nil {
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
			err := Check(context.Background(), archive)
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
			if err := Check(context.Background(), tt.archive); !errors.Is(err, ErrInvalidArchive) {
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

// writeTar streams entries into a gzip-compressed tar without keeping the
// uncompressed stream in memory.
func writeGzipTar(t *testing.T, write func(tw *tar.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	write(tw)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRefusesLongPathBomb is the archive of issue 6: a few hundred bytes of
// gzip holding one entry whose path is 256 KiB of "a/a/a/...". It used to
// take 23 s of CPU and be accepted.
func TestRefusesLongPathBomb(t *testing.T) {
	archive := writeGzipTar(t, func(tw *tar.Writer) {
		name := strings.Repeat("a/", 128<<10) + "f"
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
	})
	if len(archive) > 2048 {
		t.Fatalf("bomb is %d bytes compressed", len(archive))
	}
	err := Check(context.Background(), archive)
	if !errors.Is(err, ErrInvalidArchive) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Check: got %v, want ErrInvalidArchive naming the limit", err)
	}
	root := t.TempDir()
	code := filepath.Join(root, "code")
	if err := Extract(context.Background(), bytes.NewReader(archive), code); !errors.Is(err, ErrInvalidArchive) {
		t.Fatalf("Extract: got %v, want ErrInvalidArchive", err)
	}
	if entries, _ := os.ReadDir(code); len(entries) > 0 {
		t.Errorf("Extract wrote %d entries", len(entries))
	}
}

// TestRefusesNameBomb sends many long names that compress ~1000:1: what
// the validator would keep in memory is bounded by MaxNameBytes.
func TestRefusesNameBomb(t *testing.T) {
	prefix := strings.Repeat(strings.Repeat("n", 199)+"/", 19)
	archive := writeGzipTar(t, func(tw *tar.Writer) {
		for i := 0; i < MaxNameBytes/len(prefix)+10; i++ {
			hdr := &tar.Header{Name: fmt.Sprintf("%s%05d", prefix, i), Typeflag: tar.TypeSymlink, Linkname: "x", Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
		}
	})
	err := Check(context.Background(), archive)
	if !errors.Is(err, ErrInvalidArchive) || !strings.Contains(err.Error(), "names") {
		t.Fatalf("Check: got %v, want ErrInvalidArchive about names", err)
	}
}

// TestRefusesHeaderBomb counts headers, not only file contents, against
// MaxTotalBytes: a stream of large PAX records with no file at all.
func TestRefusesHeaderBomb(t *testing.T) {
	record := strings.Repeat("c", 900<<10)
	archive := writeGzipTar(t, func(tw *tar.Writer) {
		for i := 0; i < MaxTotalBytes/len(record)+2; i++ {
			hdr := &tar.Header{Name: fmt.Sprintf("d%d/", i), Typeflag: tar.TypeDir, Mode: 0o755, PAXRecords: map[string]string{"comment": record}, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
		}
	})
	err := Check(context.Background(), archive)
	if !errors.Is(err, ErrInvalidArchive) || !strings.Contains(err.Error(), "decompresses") {
		t.Fatalf("Check: got %v, want ErrInvalidArchive about the decompressed size", err)
	}
}

// TestSameRulesAsUnpacker checks that what the unpacker cannot apply is
// refused by Check too, so that an accepted archive always unpacks.
func TestSameRulesAsUnpacker(t *testing.T) {
	deep := strings.Repeat("d/", MaxDepth) + "f"
	tests := []struct {
		name    string
		entries []tarEntry
	}{
		{"directory replaced by a file", []tarEntry{dir("d/"), file("d", "x")}},
		{"implied directory replaced by a file", []tarEntry{file("d/a", "a"), file("d", "x")}},
		{"file replaced by a directory", []tarEntry{file("f", "x"), dir("f/")}},
		{"entry below a file", []tarEntry{file("f", "x"), file("f/g", "y")}},
		{"directory replaced by a symlink", []tarEntry{dir("d/"), symlink("d", "e")}},
		{"component over 255 bytes", []tarEntry{file(strings.Repeat("c", 256), "x")}},
		{"path over the limit", []tarEntry{file(strings.Repeat(strings.Repeat("p", 200)+"/", 21)+"f", "x")}},
		{"too deep", []tarEntry{file(deep, "x")}},
		{"symlink target over the limit", []tarEntry{symlink("l", strings.Repeat("t", MaxPathBytes+1))}},
		{"hard link to itself", []tarEntry{file("f", "x"), hardlink("f", "f")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := buildTar(t, tt.entries...)
			if err := Check(context.Background(), archive); err == nil {
				t.Fatal("Check accepted the archive")
			}
			if err := Extract(context.Background(), bytes.NewReader(archive), filepath.Join(t.TempDir(), "code")); err == nil {
				t.Fatal("Extract accepted the archive")
			}
		})
	}
}

// TestLongestPathUnpacks checks that a path at the limits, below a code
// directory whose own path is long, unpacks.
func TestLongestPathUnpacks(t *testing.T) {
	comp := strings.Repeat("c", MaxComponentBytes)
	name := strings.Repeat(comp+"/", MaxPathBytes/(MaxComponentBytes+1)+1) + "f"
	name = name[len(name)-MaxPathBytes:]
	name = strings.TrimLeft(name, "/")
	archive := buildTar(t, file(name, "deep"), symlink("l", name))
	if err := Check(context.Background(), archive); err != nil {
		t.Fatalf("Check: %v", err)
	}
	code := filepath.Join(t.TempDir(), strings.Repeat("r", 200), "code")
	if err := Extract(context.Background(), bytes.NewReader(archive), code); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	root, err := os.OpenRoot(code)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(f); err != nil || got.String() != "deep" {
		t.Fatalf("read back %q, %v", got.String(), err)
	}
}

func TestSkipsGlobalHeader(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "commit id"}}); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "a.py", Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Check(context.Background(), buf.Bytes()); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestCheckHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Check(ctx, buildTar(t, file("a", "a"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// cancellingReader cancels its context once the reader has handed out
// after bytes, and records how much was read in all.
type cancellingReader struct {
	r      io.Reader
	after  int
	read   int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	if c.read >= c.after {
		c.cancel()
	}
	return n, err
}

// TestCancellationStopsWork cancels in the middle of a large archive and
// checks the validator stops reading right away instead of finishing.
func TestCancellationStopsWork(t *testing.T) {
	archive := writeGzipTar(t, func(tw *tar.Writer) {
		for i := 0; i < 200; i++ {
			body := bytes.Repeat([]byte{'z'}, 1<<20)
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cr := &cancellingReader{r: bytes.NewReader(archive), after: len(archive) / 10, cancel: cancel}
	err := newValidator().walk(ctx, cr, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("walk: got %v, want context.Canceled", err)
	}
	if cr.read > len(archive)/2 {
		t.Errorf("read %d of %d bytes after cancelling at %d", cr.read, len(archive), cr.after)
	}
}

func TestIndex(t *testing.T) {
	archive := buildTar(t, file("mod.py", "x"), file("pkg/__init__.py", ""), symlink("alias.py", "mod.py"), symlink("lib", "pkg"), dir("empty/"))
	ix, err := Inspect(context.Background(), archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"mod.py", "pkg/__init__.py", "alias.py", "lib/__init__.py", "./mod.py"} {
		if !ix.IsFile(p) {
			t.Errorf("IsFile(%q) = false", p)
		}
	}
	for _, p := range []string{"pkg", "lib", "empty", "."} {
		if !ix.IsDir(p) {
			t.Errorf("IsDir(%q) = false", p)
		}
	}
	for _, p := range []string{"nosuch.py", "pkg", "empty/x", "../mod.py", "/mod.py", "mod.py/x"} {
		if ix.IsFile(p) {
			t.Errorf("IsFile(%q) = true", p)
		}
	}
}

// rawHeader is one ustar header block, for entries tar.Writer will not write.
func rawHeader(name string, typ byte, size int) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// padded appends data and its padding to a 512-byte boundary.
func padded(out, data []byte) []byte {
	out = append(out, data...)
	return append(out, make([]byte, (512-len(data)%512)%512)...)
}

// TestRefusesSparseFiles: a sparse file's logical size is not bounded by
// the decompressed stream, so a few bytes could unpack to gigabytes.
func TestRefusesSparseFiles(t *testing.T) {
	var records []byte
	for _, kv := range []string{"GNU.sparse.major=1", "GNU.sparse.minor=0", "GNU.sparse.name=s", "GNU.sparse.realsize=200000000"} {
		rec := " " + kv + "\n"
		n := len(rec) + 2
		if len(fmt.Sprint(n)) != 2 {
			t.Fatal("record length")
		}
		records = append(records, fmt.Sprintf("%d%s", n, rec)...)
	}
	var archive []byte
	archive = padded(archive, rawHeader("pax", 'x', len(records)))
	archive = padded(archive, records)
	sparseMap := []byte("1\n199999999\n1\n")
	archive = padded(archive, rawHeader("GNUSparseFile.0/s", '0', 512+512))
	archive = padded(archive, sparseMap)
	archive = padded(archive, []byte("x"))
	archive = append(archive, make([]byte, 1024)...)
	if err := Check(context.Background(), archive); !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("Check: got %v, want ErrUnsafeEntry", err)
	}
}

// TestTruncatedArchiveLeavesNoLink is the crasher FuzzArchive found: a
// chain of links that escapes (s -> ., t -> s/..) followed by a broken
// header. The chain is only checked at the end of the archive, so links
// must not be on disk before that.
func TestTruncatedArchiveLeavesNoLink(t *testing.T) {
	archive := buildTar(t, symlink("s", "."), symlink("t", "s/.."))
	archive = append(archive[:len(archive)-1024], bytes.Repeat([]byte{'x'}, 512)...)
	root := t.TempDir()
	code := filepath.Join(root, "code")
	if err := Extract(context.Background(), bytes.NewReader(archive), code); !errors.Is(err, ErrInvalidArchive) {
		t.Fatalf("Extract: got %v, want ErrInvalidArchive", err)
	}
	if entries, _ := os.ReadDir(code); len(entries) > 0 {
		t.Errorf("truncated archive left %d entries, e.g. %s", len(entries), entries[0].Name())
	}
}

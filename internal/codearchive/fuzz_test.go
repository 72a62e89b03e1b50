package codearchive

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkInvariants unpacks archive and checks what must hold for every
// input: Check and Extract agree (one set of rules, so an accepted archive
// unpacks and a refused one is refused by the unpacker too), nothing is
// written outside the code directory, and no link on disk resolves outside.
func checkInvariants(t *testing.T, archive []byte) {
	t.Helper()
	ctx := context.Background()
	checkErr := Check(ctx, archive)
	root := t.TempDir()
	code := filepath.Join(root, "code")
	extractErr := Extract(ctx, bytes.NewReader(archive), code)
	if (checkErr == nil) != (extractErr == nil) {
		t.Fatalf("Check and Extract disagree: Check %v, Extract %v", checkErr, extractErr)
	}
	if out := outsideFiles(t, root, code); len(out) > 0 {
		t.Fatalf("wrote outside the code directory: %v", out)
	}
	realCode, err := filepath.EvalSymlinks(code)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(code, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil // dangling or a loop: harmless
		}
		if target != realCode && !strings.HasPrefix(target, realCode+string(filepath.Separator)) {
			t.Errorf("link %s resolves outside the code directory to %s", p, target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checkErr == nil {
		if _, err := os.Stat(code); err != nil {
			t.Fatalf("accepted archive left no code directory: %v", err)
		}
	}
}

// FuzzArchive feeds raw bytes (tar or gzip) to Check and Extract.
func FuzzArchive(f *testing.F) {
	seed := func(entries ...tarEntry) []byte { return buildTar(f, entries...) }
	f.Add([]byte{})
	f.Add(seed(file("a.py", "x"), dir("d/"), file("d/b", "y"), symlink("l", "a.py"), hardlink("h", "a.py")))
	f.Add(seed(symlink("s", "."), symlink("t", "s/..")))
	f.Add(seed(dir("d/"), file("d", "x")))
	f.Add(seed(symlink("l", "/etc"), file("l/x", "x")))
	f.Add(gzipped(f, seed(file("a", "a"), symlink("b", "a/../a"))))
	f.Fuzz(func(t *testing.T, archive []byte) {
		checkInvariants(t, archive)
	})
}

// FuzzEntries builds an archive from a small script, one entry a line, so
// that the fuzzer mutates names, types and targets rather than checksums:
// "f NAME", "d NAME", "l NAME TARGET" (symbolic link), "h NAME TARGET".
func FuzzEntries(f *testing.F) {
	f.Add("f a.py\nd sub/\nf sub/x\nl sub/l ../a.py\nh h a.py\n")
	f.Add("l s .\nl t s/..\n")
	f.Add("l t s/..\nl s .\n")
	f.Add("d d/\nf d\n")
	f.Add("f f\nd f/\n")
	f.Add("f f\nf f/g\n")
	f.Add("l a b\nl b a\n")
	f.Add("d x/\nl x/y ../z\nf z\nl w x/y/../..\n")
	f.Add("f a\nh b a\nf a\nh c b\n")
	f.Add("l l .\nf l/x\n")
	f.Add("f ./a/../b\nl c ./b/\nl d c/.\n")
	f.Fuzz(func(t *testing.T, script string) {
		var entries []tarEntry
		for _, line := range strings.Split(script, "\n") {
			fields := strings.SplitN(line, " ", 3)
			if len(fields) < 2 || len(entries) > 64 {
				continue
			}
			link := ""
			if len(fields) == 3 {
				link = fields[2]
			}
			switch fields[0] {
			case "f":
				entries = append(entries, file(fields[1], "x"))
			case "d":
				entries = append(entries, dir(fields[1]))
			case "l":
				entries = append(entries, symlink(fields[1], link))
			case "h":
				entries = append(entries, hardlink(fields[1], link))
			}
		}
		archive, ok := tryTar(entries)
		if !ok {
			return
		}
		checkInvariants(t, archive)
	})
}

// tryTar is buildTar for inputs the tar writer itself may refuse.
func tryTar(entries []tarEntry) ([]byte, bool) {
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
			return nil, false
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			return nil, false
		}
	}
	if err := tw.Close(); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

package executor

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/serverledge/serverledge/internal/codearchive"
)

// yesWorker answers every request line with success, so that the load
// path is exercised without an interpreter.
var yesWorker = []string{"/bin/sh", "-c", `while IFS= read -r line <&3; do printf '{"Success":true}\n' >&4; done`}

func fuzzTar(tb testing.TB, hdrs ...*tar.Header) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzLoad sends fuzzed archives to POST /load of a real executor over its
// unix socket. Every archive codearchive accepts is loaded; every other one
// is a 400 that writes nothing; nothing ever lands outside the code
// directory.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(fuzzTar(f, &tar.Header{Name: "fn.py", Typeflag: tar.TypeReg, Size: 3}, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, &tar.Header{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "../fn.py"}))
	f.Add(fuzzTar(f, &tar.Header{Name: "../escaped", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(fuzzTar(f, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, &tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(fuzzTar(f, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, &tar.Header{Name: "d", Typeflag: tar.TypeReg, Size: 1}))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(fuzzTar(f, &tar.Header{Name: "a.js", Typeflag: tar.TypeReg, Size: 2}))
	_ = zw.Close()
	f.Add(gz.Bytes())
	f.Fuzz(func(t *testing.T, archive []byte) {
		h := startHarness(t, yesWorker, nil)
		loadErr := h.client.Load(context.Background(), "fn.handler", archive)
		checkErr := codearchive.Check(context.Background(), archive)
		switch {
		case checkErr == nil && loadErr != nil:
			t.Fatalf("archive accepted by codearchive.Check failed to load: %v", loadErr)
		case checkErr != nil && !errors.Is(loadErr, ErrRefused):
			t.Fatalf("archive refused by codearchive.Check (%v): load got %v, want ErrRefused", checkErr, loadErr)
		}
		if checkErr != nil {
			if entries, _ := os.ReadDir(h.codeDir); len(entries) > 0 {
				t.Fatalf("refused archive left %d entries in the code directory", len(entries))
			}
		}
		entries, err := os.ReadDir(h.root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != filepath.Base(h.sockDir) && e.Name() != filepath.Base(h.codeDir) {
				t.Fatalf("load wrote %s outside the code directory", e.Name())
			}
		}
		sock, err := os.ReadDir(h.sockDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range sock {
			if e.Name() != SocketName {
				t.Fatalf("load wrote %s into the socket directory", e.Name())
			}
		}
	})
}

package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"strings"
	"testing"
)

// rawTar builds a gzip-compressed tar of hdrs (regular files get body "x").
func rawTar(t *testing.T, hdrs ...*tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func reg(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }
func dirHdr(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeDir}
}

func nested(depth int) string {
	return `{"Params": {"x": ` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}`
}

// TestRefusedDefinitionsChangeNothing covers the client mistakes of issue 6
// (defects 2 and 9): each is a 400 at /create and /update, and neither the
// registry nor the pool changes.
func TestRefusedDefinitionsChangeNothing(t *testing.T) {
	n := newTestNode(t, nodeOpts{maxBody: 256 << 10})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.echo")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	good := helloDef(t, "hello.echo")
	before, err := n.reg.GetFunction(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	creates := n.rt.Stats().Creates
	pathBomb := &tar.Header{Name: strings.Repeat("a/", 128<<10) + "f", Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	var nameBomb []*tar.Header
	for i := 0; i < 8; i++ {
		nameBomb = append(nameBomb, &tar.Header{Name: strings.Repeat("n", 500<<10) + string(rune('a'+i)), Typeflag: tar.TypeSymlink, Linkname: strings.Repeat("t", 500<<10), Format: tar.FormatPAX})
	}
	node := func(handler, code string) map[string]any {
		return map[string]any{"Name": "other", "Runtime": "nodejs", "Handler": handler, "TarFunctionCode": code}
	}
	cases := []struct {
		name string
		def  map[string]any
		msg  string
	}{
		{"path bomb", with(good, "TarFunctionCode", rawTar(t, reg("hello.py"), pathBomb)), "limit"},
		{"name bomb", with(good, "TarFunctionCode", rawTar(t, append([]*tar.Header{reg("hello.py")}, nameBomb...)...)), "limit"},
		{"component over 255 bytes", with(good, "TarFunctionCode", rawTar(t, reg("hello.py"), reg(strings.Repeat("c", 256)))), "limit"},
		{"directory replaced by a file", with(good, "TarFunctionCode", rawTar(t, reg("hello.py"), dirHdr("d/"), reg("d"))), "replaces a directory"},
		{"file replaced by a directory", with(good, "TarFunctionCode", rawTar(t, reg("hello.py"), reg("d"), dirHdr("d/"))), "directory replacing a file"},
		{"python module missing", with(good, "Handler", "nosuch.echo"), "nosuch"},
		{"python package without __init__", with(good, "TarFunctionCode", rawTar(t, reg("hello/other.py"))), "hello/__init__.py"},
		{"python module is a directory", with(good, "TarFunctionCode", rawTar(t, dirHdr("hello.py/"))), "hello.py"},
		{"nodejs file missing", node("index.js", rawTar(t, reg("main.js"))), "index.js"},
		{"nodejs absolute handler", node("/etc/passwd", rawTar(t, reg("main.js"))), "inside"},
		{"custom image invalid", map[string]any{"Name": "other", "Runtime": "custom", "CustomImage": "Bad Image!"}, "CustomImage"},
		{"custom image uppercase", map[string]any{"Name": "other", "Runtime": "custom", "CustomImage": "Serverledge/X:latest"}, "CustomImage"},
	}
	check := func(t *testing.T, path string, body any, msg string) {
		t.Helper()
		code, reply := n.do(t, "POST", path, body)
		if code != 400 {
			t.Fatalf("%s: status %d, want 400 (body %q)", path, code, reply)
		}
		if !strings.Contains(reply, msg) {
			t.Errorf("%s: body %q does not mention %q", path, reply, msg)
		}
		names, err := n.reg.ListFunctions(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 1 || names[0] != "hello" {
			t.Errorf("registry functions changed: %v", names)
		}
		now, err := n.reg.GetFunction(context.Background(), "hello")
		if err != nil || now.Version != before.Version {
			t.Errorf("function hello changed: %v %+v", err, now)
		}
		if c := n.rt.Stats().Creates; c != creates {
			t.Errorf("containers created: %d, want %d", c, creates)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check(t, "/create", with(tc.def, "Name", "other"), tc.msg)
			check(t, "/update", with(tc.def, "Name", "hello"), tc.msg)
		})
	}
	t.Run("invoke nested too deep", func(t *testing.T) {
		check(t, "/invoke/hello", nested(70), "nested deeper")
	})
	t.Run("create nested too deep", func(t *testing.T) {
		check(t, "/create", `{"Name": "other", "AllowedZones": `+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`, "nested deeper")
	})
	t.Run("invoke nested within the bound", func(t *testing.T) {
		if code, body := n.do(t, "POST", "/invoke/hello", nested(60)); code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
	})
}

// TestAcceptedHandlerLayouts checks the layouts the workers load are accepted.
func TestAcceptedHandlerLayouts(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	defs := []map[string]any{
		{"Name": "pkg", "Runtime": "python", "Handler": "hello.echo", "TarFunctionCode": rawTar(t, reg("hello/__init__.py"))},
		{"Name": "sub", "Runtime": "python", "Handler": "a.b.echo", "TarFunctionCode": rawTar(t, reg("a/__init__.py"), reg("a/b.py"))},
		{"Name": "linked", "Runtime": "python", "Handler": "hello.echo", "TarFunctionCode": rawTar(t, reg("real.py"), &tar.Header{Name: "hello.py", Typeflag: tar.TypeSymlink, Linkname: "real.py"})},
		{"Name": "js", "Runtime": "nodejs", "Handler": "index.js", "TarFunctionCode": rawTar(t, reg("index.js"))},
		{"Name": "jsnoext", "Runtime": "nodejs", "Handler": "index", "TarFunctionCode": rawTar(t, reg("index.js"))},
		{"Name": "jsdir", "Runtime": "nodejs", "Handler": "lib", "TarFunctionCode": rawTar(t, reg("lib/index.js"))},
		{"Name": "jsmjs", "Runtime": "nodejs", "Handler": "src/h.mjs", "TarFunctionCode": rawTar(t, reg("src/h.mjs"))},
		{"Name": "custom", "Runtime": "custom", "CustomImage": "serverledge/example-custom:latest"},
		{"Name": "custom2", "Runtime": "custom", "CustomImage": "localhost:5000/team/fn@sha256:" + strings.Repeat("a", 64)},
	}
	for _, d := range defs {
		if code, body := n.do(t, "POST", "/create", d); code != 200 {
			t.Errorf("create %s: %d %s", d["Name"], code, body)
		}
	}
}

package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/serverledge/serverledge/internal/wire"
)

// Function sources used by several tests.
const (
	// sleepPy sleeps params["s"] seconds (default 1) and returns "slept".
	sleepPy = "import time\n\n\ndef handler(params, context):\n    time.sleep(float(params.get(\"s\", 1)))\n    return \"slept\"\n"
	// failPy raises an error.
	failPy = "def handler(params, context):\n    raise ValueError(\"boom \" + str(params.get(\"n\")))\n"
	// loopPy loops forever when params["loop"] is true.
	loopPy = "def handler(params, context):\n    while params.get(\"loop\"):\n        pass\n    return \"done\"\n"
	// failJS throws an error.
	failJS = "module.exports = function (params, context) {\n  throw new Error(\"kaput \" + params.n);\n};\n"
)

// sourceDir writes files (name → content) into a new directory and returns it.
func sourceDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tarOf returns a tar archive of files (name → content).
func tarOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarFileOf packs the contents of dir (regular files, at the archive root)
// into a .tar file and returns its path.
func tarFileOf(t testing.TB, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	path := filepath.Join(t.TempDir(), "code.tar")
	if err := os.WriteFile(path, tarOf(t, files), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// createCLI creates a function through the CLI and checks the reply.
func createCLI(t testing.TB, n *node, name string, args ...string) {
	t.Helper()
	var created wire.CreatedResponse
	cliOK(t, n, &created, append([]string{"create", "-f", name}, args...)...)
	if created.Created != name {
		t.Fatalf("create %s: reply names %q", name, created.Created)
	}
}

// createPython creates a python function named name from files over HTTP.
func createPython(t testing.TB, n *node, name, handler string, memoryMB int64, files map[string]string) {
	t.Helper()
	createHTTP(t, n, wire.FunctionRequest{
		Name:            name,
		Runtime:         "python",
		Handler:         handler,
		MemoryMB:        memoryMB,
		TarFunctionCode: base64.StdEncoding.EncodeToString(tarOf(t, files)),
	})
}

// createHTTP posts a /create and fails the test unless it answers 200.
func createHTTP(t testing.TB, n *node, req wire.FunctionRequest) {
	t.Helper()
	code, body := postJSON(t, n.URL+"/create", req)
	if code != http.StatusOK {
		t.Fatalf("create %s: %d %s", req.Name, code, body)
	}
}

// invokeCLI invokes fn through the CLI, fails unless it exits 0, and
// returns the response.
func invokeCLI(t testing.TB, n *node, fn string, args ...string) wire.InvocationResponse {
	t.Helper()
	var resp wire.InvocationResponse
	cliOK(t, n, &resp, append([]string{"invoke", "-f", fn}, args...)...)
	if !resp.Success {
		t.Fatalf("invoke %s: Success false: %+v", fn, resp)
	}
	return resp
}

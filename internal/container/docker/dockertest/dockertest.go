// Package dockertest gives tests of the packages above the container layer
// a Docker runtime of their own, skipping (or, with
// testutil.RealPartsRequired, failing) when the daemon or an image is
// missing.
package dockertest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/testutil"
)

// PythonImage is the python runtime image that `make images` builds.
const PythonImage = "serverledge/runtime-python:latest"

// Runtime connects to the Docker daemon with a run directory named runDir
// under the system's temporary directory, and makes sure image exists.
// The runtime is closed when the test ends.
func Runtime(t testing.TB, runDir, image string) *docker.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := docker.New(ctx, docker.Options{RunDir: filepath.Join(os.TempDir(), runDir), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		testutil.SkipOrFail(t, "no Docker daemon: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	ok, err := rt.ImageExists(ctx, image)
	if err != nil {
		t.Fatalf("ImageExists %s: %v", image, err)
	}
	if !ok {
		testutil.SkipOrFail(t, "image %s is missing (run `make images`)", image)
	}
	return rt
}

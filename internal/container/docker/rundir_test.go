package docker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container/docker"
)

// TestRunDirPermissions checks defect 10: the runtime creates a missing run
// directory 0700 and refuses, naming container.rundir, one that exists with
// group or other write permission, that is owned by another user, or that
// is not a directory. The checks come before Docker is contacted.
func TestRunDirPermissions(t *testing.T) {
	newAt := func(t *testing.T, dir string) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rt, err := docker.New(ctx, docker.Options{RunDir: dir})
		if err == nil {
			_ = rt.Close()
		}
		return err
	}
	base, err := os.MkdirTemp("", "sl-rd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })

	t.Run("created private", func(t *testing.T) {
		dir := filepath.Join(base, "fresh")
		if err := newAt(t, dir); errors.Is(err, docker.ErrUnsafeRunDir) {
			t.Fatalf("New on a missing run dir: %v", err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatalf("run dir not created: %v", err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("run dir created with mode %04o, want 0700", perm)
		}
	})

	refused := func(t *testing.T, dir, want string) {
		t.Helper()
		err := newAt(t, dir)
		if !errors.Is(err, docker.ErrUnsafeRunDir) || !strings.Contains(err.Error(), "container.rundir") || !strings.Contains(err.Error(), want) {
			t.Fatalf("New = %v, want ErrUnsafeRunDir naming container.rundir and %q", err, want)
		}
	}
	for _, mode := range []os.FileMode{0o777, 0o770, 0o702} {
		t.Run("mode "+mode.String(), func(t *testing.T) {
			dir := filepath.Join(base, "open"+mode.String())
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			refused(t, dir, "writable by group or others")
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != mode {
				t.Errorf("refused run dir changed: %v, %v", fi.Mode(), err)
			}
		})
	}
	t.Run("not a directory", func(t *testing.T) {
		target := filepath.Join(base, "target")
		if err := os.Mkdir(target, 0o700); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(base, "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		refused(t, link, "not a directory")
	})
	t.Run("owned by another user", func(t *testing.T) {
		dir := filepath.Join(base, "foreign")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		other := 65534
		if os.Geteuid() == other {
			other = 65533
		}
		if err := os.Lchown(dir, other, other); err != nil {
			t.Skipf("cannot give the directory to another user (needs root): %v", err)
		}
		refused(t, dir, "owned by uid")
	})
}

package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/container/docker/dockertest"
)

const dockerPythonImage = dockertest.PythonImage

// dockerRuntime connects to Docker; without it or the python image the
// test is skipped, or fails when SERVERLEDGE_REQUIRE_DOCKER is set.
func dockerRuntime(t *testing.T) *docker.Runtime {
	t.Helper()
	return dockertest.Runtime(t, "sl-node-test", dockerPythonImage)
}

// dockerNodeID returns a node id unique to this test run, and removes every
// container labelled with it when the test ends.
func dockerNodeID(t *testing.T, rt *docker.Runtime) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := "test-node-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		infos, err := rt.List(ctx, map[string]string{container.LabelNode: id})
		if err != nil {
			t.Errorf("listing leftover containers: %v", err)
			return
		}
		for _, info := range infos {
			if err := rt.Remove(ctx, info.ID); err != nil {
				t.Errorf("removing leftover container %s: %v", info.ID, err)
			}
		}
	})
	return id
}

// dockerPool returns a started pool on Docker, shut down at the end of the test.
func dockerPool(t *testing.T, rt *docker.Runtime, cfg Config) *Pool {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p
}

// invokeEcho invokes c and checks the python echo handler's answer.
func invokeEcho(t *testing.T, c *Container) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := c.Invoke(ctx, container.InvokeRequest{Params: map[string]any{"n": 7.0}})
	if err != nil || !res.Success || (!strings.Contains(res.Result, `"n": 7`) && !strings.Contains(res.Result, `"n":7`)) {
		t.Fatalf("Invoke = %+v, %v; want the echoed params", res, err)
	}
}

func TestDockerWarmReuse(t *testing.T) {
	rt := dockerRuntime(t)
	p := dockerPool(t, rt, Config{NodeID: dockerNodeID(t, rt), MemoryMB: 512})
	f := testFunc("echo", "v1", 128, "main.handler")

	c, warm, err := p.Acquire(t.Context(), f)
	if err != nil || warm {
		t.Fatalf("Acquire = warm %v, %v; want a cold start", warm, err)
	}
	invokeEcho(t, c)
	p.Release(c, true)
	again, warm, err := p.Acquire(t.Context(), f)
	if err != nil || !warm || again.ID() != c.ID() {
		t.Fatalf("second Acquire = %v warm %v, %v; want the same container warm", again, warm, err)
	}
	invokeEcho(t, again)
	p.Release(again, true)
}

func TestDockerStemCellColdStart(t *testing.T) {
	rt := dockerRuntime(t)
	node := dockerNodeID(t, rt)
	p := dockerPool(t, rt, Config{NodeID: node, MemoryMB: 512, StemCells: map[string]int{"python": 1}, StemCellMemoryMB: 64})
	waitFor(t, "a python stem cell", func() bool { return p.Stats().StemCells["python"] == 1 })
	stems, err := rt.List(t.Context(), map[string]string{container.LabelNode: node})
	if err != nil || len(stems) != 1 {
		t.Fatalf("List = %v, %v; want one stem cell", stems, err)
	}

	c, warm, err := p.Acquire(t.Context(), testFunc("echo", "v1", 128, "main.handler"))
	if err != nil || warm {
		t.Fatalf("Acquire = warm %v, %v; want a cold start", warm, err)
	}
	if !slices.ContainsFunc(stems, func(s container.Info) bool { return s.ID == c.ID() }) {
		t.Errorf("cold start used container %s, not the stem cell %s", c.ID(), stems[0].ID)
	}
	invokeEcho(t, c)
	p.Release(c, true)
	waitFor(t, "the stem cell to be refilled", func() bool { return p.Stats().StemCells["python"] == 1 })
}

func TestDockerEvictionAndOrphans(t *testing.T) {
	rt := dockerRuntime(t)
	node := dockerNodeID(t, rt)
	p := dockerPool(t, rt, Config{NodeID: node, MemoryMB: 128})

	a, _, err := p.Acquire(t.Context(), testFunc("a", "v1", 128, "main.handler"))
	if err != nil {
		t.Fatal(err)
	}
	p.Release(a, true)
	b, _, err := p.Acquire(t.Context(), testFunc("b", "v1", 128, "main.handler"))
	if err != nil {
		t.Fatalf("Acquire(b) with a evictable: %v", err)
	}
	invokeEcho(t, b)
	waitFor(t, "a's container to be removed", func() bool {
		infos, err := rt.List(t.Context(), map[string]string{container.LabelNode: node})
		return err == nil && !slices.ContainsFunc(infos, func(i container.Info) bool { return i.ID == a.ID() })
	})
	p.Release(b, true)

	// A second pool with the same node id, as after a restart, removes
	// what the first one left behind.
	next, err := New(rt, Config{NodeID: node, MemoryMB: 128, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	infos, err := rt.List(t.Context(), map[string]string{container.LabelNode: node})
	if err != nil || len(infos) != 0 {
		t.Errorf("containers of node %s after the restart = %v, %v; want none", node, infos, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := next.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// BenchmarkDockerColdStart measures Acquire of a new container on Docker,
// from scratch and from a stem cell (resize and load only). Each iteration
// releases the container as not reusable, so every Acquire is cold.
func BenchmarkDockerColdStart(b *testing.B) {
	for _, stems := range []int{0, 1} {
		name := "fresh"
		if stems > 0 {
			name = "stem-cell"
		}
		b.Run(name, func(b *testing.B) {
			rt, err := docker.New(b.Context(), docker.Options{RunDir: filepath.Join(os.TempDir(), "sl-node-bench"), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Skipf("no Docker daemon: %v", err)
			}
			defer func() { _ = rt.Close() }()
			if ok, _ := rt.ImageExists(b.Context(), dockerPythonImage); !ok {
				b.Skipf("image %s not built", dockerPythonImage)
			}
			var rnd [4]byte
			_, _ = rand.Read(rnd[:])
			p, err := New(rt, Config{NodeID: "bench-node-" + hex.EncodeToString(rnd[:]), MemoryMB: 1024,
				StemCells: map[string]int{"python": stems}, StemCellMemoryMB: 128, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Start(b.Context()); err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = p.Shutdown(ctx)
			}()
			f := testFunc("echo", "v1", 128, "main.handler")
			for b.Loop() {
				b.StopTimer()
				deadline := time.Now().Add(time.Minute)
				for stems > 0 && p.Stats().StemCells["python"] < stems {
					if time.Now().After(deadline) {
						b.Fatal("the stem cell was not refilled within a minute")
					}
					time.Sleep(10 * time.Millisecond)
				}
				b.StartTimer()
				c, warm, err := p.Acquire(b.Context(), f)
				if err != nil || warm {
					b.Fatalf("Acquire = warm %v, %v", warm, err)
				}
				b.StopTimer()
				p.Release(c, false)
				b.StartTimer()
			}
		})
	}
}

// TestDockerKilledIdleContainerLeavesThePool kills an idle container with
// docker kill: the pool drops it (Docker's die event) and the next request
// runs on a new container.
func TestDockerKilledIdleContainerLeavesThePool(t *testing.T) {
	rt := dockerRuntime(t)
	p := dockerPool(t, rt, Config{NodeID: dockerNodeID(t, rt), MemoryMB: 512, JanitorInterval: time.Hour})
	f := testFunc("echo", "v1", 128, "main.handler")
	c, _, err := p.Acquire(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	invokeEcho(t, c)
	p.Release(c, true)
	if _, err := rt.Client().ContainerKill(t.Context(), c.ID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("docker kill: %v", err)
	}
	waitFor(t, "the killed container to leave the pool", func() bool {
		st := p.Stats()
		return st.Idle["echo"] == 0 && st.Vanished == 1
	})
	next, warm, err := p.Acquire(t.Context(), f)
	if err != nil || warm || next.ID() == c.ID() {
		t.Fatalf("Acquire after the kill = warm %v, %v; want a new container", warm, err)
	}
	invokeEcho(t, next)
	p.Release(next, true)
	waitFor(t, "the killed container to be removed", func() bool {
		infos, err := rt.List(t.Context(), map[string]string{container.LabelNode: p.cfg.NodeID})
		return err == nil && !slices.ContainsFunc(infos, func(i container.Info) bool { return i.ID == c.ID() })
	})
}

package scheduling_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/containertest"
	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/container/docker/dockertest"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/scheduling"
)

const dockerPythonImage = dockertest.PythonImage

// dockerRuntime connects to Docker; without it or the python image the
// test is skipped, or fails when SERVERLEDGE_REQUIRE_DOCKER is set.
func dockerRuntime(t *testing.T) *docker.Runtime {
	t.Helper()
	return dockertest.Runtime(t, "sl-sched-test", dockerPythonImage)
}

// TestDockerRequestAfterIdleContainerKilledSucceeds kills the idle
// container of a function with docker kill and invokes it at once, before
// the pool may have heard Docker's event (the pool here hears none): the
// executor is unreachable, the function never got its input, and the
// request is served by a new container.
func TestDockerRequestAfterIdleContainerKilledSucceeds(t *testing.T) {
	rt := dockerRuntime(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	nodeID := "sched-test-" + hex.EncodeToString(b[:])
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var sched *scheduling.Scheduler
	pool, err := node.New(deafRuntime{rt}, node.Config{NodeID: nodeID, MemoryMB: 512, JanitorInterval: time.Hour,
		OnFree: func() { sched.Notify() }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sched = scheduling.New(pool, scheduling.Config{QueueCapacity: 4, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	if err := pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go sched.Run(ctx)
	t.Cleanup(func() {
		cancel()
		sctx, c2 := context.WithTimeout(context.Background(), time.Minute)
		defer c2()
		if err := pool.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})

	f := &function.Function{Name: "echo", Runtime: "python", Handler: "main.handler", MemoryMB: 128, Version: "v1",
		TarFunctionCode: base64.StdEncoding.EncodeToString(containertest.Files(t, map[string]string{
			"main.py": "def handler(params, context):\n    return params\n"}))}
	if _, err := sched.Invoke(ctx, &scheduling.Request{ID: "first", Function: f, Arrival: time.Now()}); err != nil {
		t.Fatalf("first request: %v", err)
	}
	infos, err := rt.List(ctx, map[string]string{container.LabelNode: nodeID})
	if err != nil || len(infos) != 1 {
		t.Fatalf("List = %v, %v; want the one idle container", infos, err)
	}
	if _, err := rt.Client().ContainerKill(ctx, infos[0].ID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("docker kill: %v", err)
	}
	wait := rt.Client().ContainerWait(ctx, infos[0].ID, client.ContainerWaitOptions{Condition: "not-running"})
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		t.Fatalf("wait for the kill: %v", err)
	}
	resp, err := sched.Invoke(ctx, &scheduling.Request{ID: "second", Function: f, Params: map[string]any{"n": 1}, Arrival: time.Now()})
	if err != nil || !resp.Success || resp.Result != `{"n": 1}` && resp.Result != `{"n":1}` {
		t.Fatalf("request after the idle container was killed: %+v, %v; want it served by a new container", resp, err)
	}
}

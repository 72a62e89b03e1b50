package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/containertest"
	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/function"
)

const (
	pythonImage = "serverledge/runtime-python:latest"
	nodeImage   = "serverledge/runtime-nodejs:latest"
	customImage = "serverledge/example-custom:latest"
)

// newRuntime connects to the Docker daemon, or skips the test when there is
// none or the image is missing (run `make images` first).
func newRuntime(t *testing.T, image string) *docker.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := docker.New(ctx, docker.Options{RunDir: filepath.Join(os.TempDir(), "sl-rt-test")})
	if err != nil {
		t.Skipf("no Docker daemon: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	ok, err := rt.ImageExists(ctx, image)
	if err != nil {
		t.Fatalf("ImageExists(%s): %v", image, err)
	}
	if !ok {
		t.Skipf("image %s not built (run `make images`)", image)
	}
	return rt
}

// limits reads the limits Docker applied to a container.
func limits(rt *docker.Runtime) func(ctx context.Context, id string) (int64, float64, error) {
	return func(ctx context.Context, id string) (int64, float64, error) {
		info, err := rt.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return 0, 0, err
		}
		hc := info.Container.HostConfig
		return hc.Memory >> 20, float64(hc.NanoCPUs) / 1e9, nil
	}
}

func pythonFixture(t *testing.T, body string) containertest.Fixture {
	return containertest.Fixture{
		Handler: "main.handler",
		Code:    containertest.Files(t, map[string]string{"main.py": body}),
	}
}

func TestConformancePython(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	containertest.Run(t, containertest.Setup{
		Runtime: rt,
		Image:   pythonImage,
		Echo:    pythonFixture(t, "def handler(params, context):\n    return params\n"),
		Print: pythonFixture(t, fmt.Sprintf(
			"def handler(params, context):\n    print(%q)\n    return 'printed'\n", containertest.OutputMarker)),
		Raise: pythonFixture(t, fmt.Sprintf(
			"def handler(params, context):\n    raise RuntimeError(%q)\n", containertest.ErrorMarker)),
		Loop: pythonFixture(t, "def handler(params, context):\n    while True:\n        pass\n"),
		Hog: pythonFixture(t, "def handler(params, context):\n"+
			"    chunks = []\n"+
			"    for _ in range(2048):\n"+
			"        chunks.append(b'x' * (1 << 20))\n"+
			"    return len(chunks)\n"),
		Limits: limits(rt),
		Kill: func(ctx context.Context, id string) error {
			_, err := rt.Client().ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"})
			return err
		},
	})
	assertNoLeftovers(t, rt)
}

// assertNoLeftovers checks that the suite removed its run directories.
func assertNoLeftovers(t *testing.T, rt *docker.Runtime) {
	t.Helper()
	entries, err := os.ReadDir(rt.RunDir())
	if err != nil {
		t.Fatalf("read run dir: %v", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "sl-ct-") {
			t.Errorf("run directory %s left behind", e.Name())
		}
	}
}

// runOnce creates, starts and loads a container and removes it at the end.
func runOnce(t *testing.T, rt *docker.Runtime, spec container.Spec, load container.LoadRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	spec.Labels[container.LabelNode] = "docker-test"
	id, err := rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rt.Remove(rctx, id); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	if err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := rt.Load(ctx, id, load); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return id
}

func TestNodeJS(t *testing.T) {
	rt := newRuntime(t, nodeImage)
	tests := []struct {
		name       string
		code       string
		params     map[string]any
		output     bool
		wantResult any
		wantOutput string
		wantError  string
	}{
		{
			name:       "plain result",
			code:       "module.exports = (params, context) => ({hello: params.name, n: params.n + 1});\n",
			params:     map[string]any{"name": "node", "n": 1},
			wantResult: map[string]any{"hello": "node", "n": 2.0},
		},
		{
			name:       "promise result",
			code:       "module.exports = async (params) => { await new Promise(r => setTimeout(r, 10)); return [params.x, 'later']; };\n",
			params:     map[string]any{"x": "now"},
			wantResult: []any{"now", "later"},
		},
		{
			name:       "output captured",
			code:       "module.exports = (params) => { console.log('node says ' + params.x); return 1; };\n",
			params:     map[string]any{"x": "hi"},
			output:     true,
			wantResult: 1.0,
			wantOutput: "node says hi",
		},
		{
			name:      "rejected promise",
			code:      "module.exports = async () => { throw new Error('nodejs-boom'); };\n",
			params:    map[string]any{},
			wantError: "nodejs-boom",
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := runOnce(t, rt,
				container.Spec{Name: fmt.Sprintf("sl-node-test-%d-%d", os.Getpid(), i), Image: nodeImage, MemoryMB: 128},
				container.LoadRequest{Handler: "index.js", Code: containertest.Files(t, map[string]string{"index.js": tc.code})})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := rt.Invoke(ctx, id, container.InvokeRequest{Params: tc.params, ReturnOutput: tc.output})
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if tc.wantError != "" {
				if res.Success || !strings.Contains(res.Error, tc.wantError) {
					t.Fatalf("Invoke = %+v, want Success false with %q", res, tc.wantError)
				}
				return
			}
			if !res.Success {
				t.Fatalf("Invoke: Success false, Error %q", res.Error)
			}
			var got any
			if err := json.Unmarshal([]byte(res.Result), &got); err != nil {
				t.Fatalf("Result %q: %v", res.Result, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantResult) {
				t.Errorf("Result = %s, want %v", res.Result, tc.wantResult)
			}
			if !strings.Contains(res.Output, tc.wantOutput) || (!tc.output && res.Output != "") {
				t.Errorf("Output = %q, want %q", res.Output, tc.wantOutput)
			}
		})
	}
}

// TestCustomImage runs the example custom image (examples/custom), whose
// worker ships its own function: the node loads an empty archive and the
// image's handler name.
func TestCustomImage(t *testing.T) {
	rt := newRuntime(t, customImage)
	id := runOnce(t, rt,
		container.Spec{Name: fmt.Sprintf("sl-custom-test-%d", os.Getpid()), Image: customImage, MemoryMB: 64},
		container.LoadRequest{Handler: "greet", Code: containertest.Tar(t)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{"name": "world"}})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if !res.Success || res.Result != `{"greeting":"Hello, WORLD!"}` {
		t.Fatalf("Invoke = %+v, want the greeting for WORLD", res)
	}
}

// TestStartReportsEarlyExit checks that a container whose executor never
// becomes ready fails Start at once, quoting its logs, instead of waiting
// for the start timeout.
func TestStartReportsEarlyExit(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The executor cannot listen in a socket directory that does not exist,
	// logs why and exits.
	id, err := rt.Create(ctx, container.Spec{
		Name:  fmt.Sprintf("sl-exit-test-%d", os.Getpid()),
		Image: pythonImage,
		Env:   []string{"SERVERLEDGE_SOCKET_DIR=/nonexistent/socket-dir"},
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Remove(context.Background(), id); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	err = rt.Start(ctx, id)
	t.Logf("Start: %v", err)
	if err == nil {
		t.Fatal("Start of a container whose executor exits succeeded")
	}
	if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start error %q, want one saying the container exited", err)
	}
	if !strings.Contains(err.Error(), "nonexistent/socket-dir") {
		t.Errorf("Start error %q does not quote the executor's log", err)
	}
}

// TestRemoveLeftovers checks that a runtime removes a container created by
// another runtime instance (a previous node run), with its run directory.
func TestRemoveLeftovers(t *testing.T) {
	first := newRuntime(t, pythonImage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := fmt.Sprintf("leftover-%d", os.Getpid())
	id, err := first.Create(ctx, container.Spec{
		Name:   "sl-" + run,
		Image:  pythonImage,
		Labels: map[string]string{containertest.LabelRun: run},
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	dir := filepath.Join(first.RunDir(), "sl-"+run)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("run dir: %v", err)
	}

	second := newRuntime(t, pythonImage)
	left, err := second.List(ctx, map[string]string{containertest.LabelRun: run})
	if err != nil || len(left) != 1 || left[0].ID != id {
		t.Fatalf("List from a new runtime = %+v, %v, want the leftover container", left, err)
	}
	if err := second.Remove(ctx, id); err != nil {
		t.Fatalf("Remove from a new runtime: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir after Remove: %v, want it gone", err)
	}
	left, err = second.List(ctx, map[string]string{containertest.LabelRun: run})
	if err != nil || len(left) != 0 {
		t.Errorf("List after Remove = %+v, %v, want nothing", left, err)
	}
}

func TestBuiltinImagesMatchFunctionModel(t *testing.T) {
	for _, rt := range function.BuiltinRuntimes() {
		if rt.Image != pythonImage && rt.Image != nodeImage {
			t.Errorf("runtime %s uses image %s, which these tests do not cover", rt.Name, rt.Image)
		}
	}
}

// TestCreateHardensContainer checks the host configuration every function
// container gets.
func TestCreateHardensContainer(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("sl-hc-test-%d", os.Getpid())
	id, err := rt.Create(ctx, container.Spec{Name: name, Image: pythonImage, MemoryMB: 96, CPUs: 0.25, Env: []string{"FOO=bar"}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Remove(context.Background(), id); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	info, err := rt.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	hc := info.Container.HostConfig
	if hc.Memory != 96<<20 || hc.MemorySwap != hc.Memory {
		t.Errorf("Memory %d, MemorySwap %d, want both %d (no swap)", hc.Memory, hc.MemorySwap, 96<<20)
	}
	if hc.NanoCPUs != 250_000_000 {
		t.Errorf("NanoCPUs = %d, want 250000000", hc.NanoCPUs)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != docker.PidsLimit {
		t.Errorf("PidsLimit = %v, want %d", hc.PidsLimit, docker.PidsLimit)
	}
	if fmt.Sprint(hc.CapDrop) != "[ALL]" {
		t.Errorf("CapDrop = %v, want [ALL]", hc.CapDrop)
	}
	if fmt.Sprint(hc.SecurityOpt) != "[no-new-privileges]" {
		t.Errorf("SecurityOpt = %v, want [no-new-privileges]", hc.SecurityOpt)
	}
	if len(hc.PortBindings) != 0 || hc.PublishAllPorts {
		t.Errorf("ports published: %v, all %v", hc.PortBindings, hc.PublishAllPorts)
	}
	if hc.RestartPolicy.Name != "" && hc.RestartPolicy.Name != "no" {
		t.Errorf("RestartPolicy = %q, want none", hc.RestartPolicy.Name)
	}
	if string(hc.NetworkMode) != docker.DefaultNetwork {
		t.Errorf("NetworkMode = %q, want %q", hc.NetworkMode, docker.DefaultNetwork)
	}
	want := filepath.Join(rt.RunDir(), name)
	found := false
	for _, m := range info.Container.Mounts {
		if m.Destination == "/run/serverledge" && m.Source == want {
			found = true
		}
	}
	if !found {
		t.Errorf("mounts %+v, want %s at /run/serverledge", info.Container.Mounts, want)
	}
	if info.Container.Config.Labels[container.LabelManaged] != "true" {
		t.Errorf("labels %v, want %s=true", info.Container.Config.Labels, container.LabelManaged)
	}
	if !strings.Contains(strings.Join(info.Container.Config.Env, " "), "FOO=bar") {
		t.Errorf("Env = %v, want FOO=bar", info.Container.Config.Env)
	}
}

// TestResizeToNoLimit checks that "no limit" becomes the host's capacity,
// since Docker cannot lift a limit once set.
func TestResizeToNoLimit(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := rt.Create(ctx, container.Spec{Name: fmt.Sprintf("sl-nolimit-test-%d", os.Getpid()), Image: pythonImage, MemoryMB: 64, CPUs: 0.5})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Remove(context.Background(), id); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	if err := rt.Resize(ctx, id, 0, 0); err != nil {
		t.Fatalf("Resize(0, 0): %v", err)
	}
	sys, err := rt.Client().Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	mem, cpus, err := limits(rt)(ctx, id)
	if err != nil {
		t.Fatalf("limits: %v", err)
	}
	if mem != sys.Info.MemTotal>>20 || cpus != float64(sys.Info.NCPU) {
		t.Errorf("limits after Resize(0, 0) = %d MB, %.2f CPUs, want the host's %d MB, %d CPUs",
			mem, cpus, sys.Info.MemTotal>>20, sys.Info.NCPU)
	}
}

// TestKilledContainer checks that a container killed behind the runtime's
// back while idle yields ErrUnavailable (the function never got its input)
// once, then ErrUnusable.
func TestKilledContainer(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	id := runOnce(t, rt,
		container.Spec{Name: fmt.Sprintf("sl-kill-test-%d", os.Getpid()), Image: pythonImage, MemoryMB: 64},
		container.LoadRequest{Handler: "main.handler", Code: containertest.Files(t, map[string]string{"main.py": "def handler(p, c):\n    return 1\n"})})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rt.Invoke(ctx, id, container.InvokeRequest{}); err != nil {
		t.Fatalf("Invoke before the kill: %v", err)
	}
	if _, err := rt.Client().ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("kill: %v", err)
	}
	wait := rt.Client().ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: "not-running"})
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		t.Fatalf("wait for the kill: %v", err)
	}
	_, err := rt.Invoke(ctx, id, container.InvokeRequest{})
	t.Logf("Invoke after the kill: %v", err)
	if !errors.Is(err, container.ErrUnavailable) || errors.Is(err, container.ErrCrashed) {
		t.Fatalf("Invoke after the kill: error %v, want ErrUnavailable", err)
	}
	if _, err := rt.Invoke(ctx, id, container.InvokeRequest{}); !errors.Is(err, container.ErrUnusable) {
		t.Errorf("next Invoke: error %v, want ErrUnusable", err)
	}
	list, err := rt.List(ctx, map[string]string{container.LabelNode: "docker-test"})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, c := range list {
		if c.ID == id && c.Running {
			t.Errorf("killed container listed as running")
		}
	}
}

package docker_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/containertest"
	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/testutil"
)

// imageTag is the tag of the images under test: SERVERLEDGE_IMAGE_TAG, as
// scripts/build-images.sh uses it, or latest.
var imageTag = cmp.Or(os.Getenv("SERVERLEDGE_IMAGE_TAG"), "latest")

var (
	pythonImage = "serverledge/runtime-python:" + imageTag
	nodeImage   = "serverledge/runtime-nodejs:" + imageTag
	customImage = "serverledge/example-custom:" + imageTag
)

// newRuntime connects to the Docker daemon, or skips the test when there is
// none or the image is missing (run `make images` first); with
// SERVERLEDGE_REQUIRE_DOCKER set it fails instead.
func newRuntime(t *testing.T, image string) *docker.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := docker.New(ctx, docker.Options{RunDir: filepath.Join(os.TempDir(), "sl-rt-test")})
	if err != nil {
		testutil.SkipOrFail(t, "no Docker daemon: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	ok, err := rt.ImageExists(ctx, image)
	if err != nil {
		t.Fatalf("ImageExists(%s): %v", image, err)
	}
	if !ok {
		testutil.SkipOrFail(t, "image %s not built (run `make images`)", image)
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
		Meet: pythonFixture(t, fmt.Sprintf("import threading\n\n_meet = threading.Barrier(%d)\n\n"+
			"def handler(params, context):\n    _meet.wait(timeout=30)\n    return 'met'\n", containertest.MeetCount)),
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
		if rt.Image != "serverledge/runtime-python:latest" && rt.Image != "serverledge/runtime-nodejs:latest" {
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
	capAdd := slices.Sorted(slices.Values(hc.CapAdd))
	if got := strings.ReplaceAll(fmt.Sprint(capAdd), "CAP_", ""); got != "[KILL SETGID SETUID]" {
		t.Errorf("CapAdd = %v, want SETUID, SETGID and KILL", hc.CapAdd)
	}
	if !hc.ReadonlyRootfs {
		t.Errorf("ReadonlyRootfs = false, want a read-only root file system")
	}
	tmpfs := map[string]int64{}
	for _, m := range hc.Mounts {
		if m.Type == "tmpfs" && m.TmpfsOptions != nil {
			tmpfs[m.Target] = m.TmpfsOptions.SizeBytes
		}
	}
	if tmpfs["/tmp"] != docker.DefaultTmpSizeMB<<20 || tmpfs["/code"] != docker.CodeSizeBytes {
		t.Errorf("tmpfs mounts %v, want /tmp of %d MiB and /code of %d bytes", tmpfs, docker.DefaultTmpSizeMB, docker.CodeSizeBytes)
	}
	if len(hc.GroupAdd) != 1 {
		t.Errorf("GroupAdd = %v, want the run dir's group", hc.GroupAdd)
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

// sandboxProbe is a Python function that tries what a function must not be
// able to do and reports each outcome.
const sandboxProbe = `import errno, os

def outcome(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def fill_tmp():
    chunk = b"x" * (1 << 20)
    with open("/tmp/fill", "wb") as f:
        for _ in range(params_mb + 8):
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())

def write_root():
    with open("/escape", "w") as f:
        f.write("x")

def write_socket_dir():
    with open("/run/serverledge/planted", "w") as f:
        f.write("x")

def write_code():
    with open("/code/planted.py", "w") as f:
        f.write("x")

def write_small_tmp():
    with open("/tmp/small", "w") as f:
        f.write("fine")

params_mb = 0

def handler(params, context):
    global params_mb
    params_mb = params["tmp_mb"]
    res = {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "small_tmp": outcome(write_small_tmp),
        "fill_tmp": outcome(fill_tmp),
        "root": outcome(write_root),
        "socket_dir": outcome(write_socket_dir),
        "code": outcome(write_code),
    }
    try:
        os.remove("/tmp/fill")
    except OSError:
        pass
    return res
`

// TestFunctionSandbox checks defect 5: a function cannot fill the host's
// disk or write where it must not. Its /tmp is a tmpfs of the requested
// size (writing more fails with ENOSPC inside the function), the root file
// system is read-only, the socket directory and the code are not writable,
// the function does not run as root, and nothing lands in the container's
// writable layer on the host.
func TestFunctionSandbox(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	const tmpMB = 8
	id := runOnce(t, rt,
		container.Spec{Name: fmt.Sprintf("sl-sandbox-test-%d", os.Getpid()), Image: pythonImage, MemoryMB: 128, TmpSizeMB: tmpMB},
		container.LoadRequest{Handler: "main.handler", Code: containertest.Files(t, map[string]string{"main.py": sandboxProbe})})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{"tmp_mb": tmpMB}})
	if err != nil || !res.Success {
		t.Fatalf("Invoke = %+v, %v", res, err)
	}
	var got struct {
		UID, EUID, GID int
		Groups         []int
		SmallTmp       string `json:"small_tmp"`
		FillTmp        string `json:"fill_tmp"`
		Root           string
		SocketDir      string `json:"socket_dir"`
		Code           string
	}
	if err := json.Unmarshal([]byte(res.Result), &got); err != nil {
		t.Fatalf("result %s: %v", res.Result, err)
	}
	t.Logf("probe: %s", res.Result)
	if got.UID == 0 || got.EUID == 0 || got.GID == 0 {
		t.Errorf("function runs as uid %d euid %d gid %d, want no root", got.UID, got.EUID, got.GID)
	}
	if len(got.Groups) != 0 {
		t.Errorf("function has supplementary groups %v, want none", got.Groups)
	}
	if got.SmallTmp != "ok" {
		t.Errorf("writing a small file to /tmp: %s, want ok", got.SmallTmp)
	}
	if got.FillTmp != "ENOSPC" {
		t.Errorf("writing %d MB to a %d MB /tmp: %s, want ENOSPC", tmpMB+8, tmpMB, got.FillTmp)
	}
	if got.Root != "EROFS" && got.Root != "EACCES" {
		t.Errorf("writing to /: %s, want EROFS or EACCES", got.Root)
	}
	if got.SocketDir != "EACCES" {
		t.Errorf("creating a file in /run/serverledge: %s, want EACCES", got.SocketDir)
	}
	if got.Code != "EACCES" && got.Code != "EROFS" {
		t.Errorf("writing to /code: %s, want EACCES", got.Code)
	}
	entries, err := os.ReadDir(filepath.Join(rt.RunDir(), fmt.Sprintf("sl-sandbox-test-%d", os.Getpid())))
	if err != nil {
		t.Fatalf("read the container's run dir: %v", err)
	}
	for _, e := range entries {
		if e.Name() != "ready" && e.Name() != "executor.sock" {
			t.Errorf("run dir holds %s, want only the FIFO and the socket", e.Name())
		}
	}
	info, err := rt.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{Size: true})
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if info.Container.SizeRw != nil && *info.Container.SizeRw > 1<<20 {
		t.Errorf("container's writable layer holds %d bytes on the host, want next to nothing", *info.Container.SizeRw)
	}
	// The container still serves after the function hit ENOSPC.
	if res, err := rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{"tmp_mb": tmpMB}}); err != nil || !res.Success {
		t.Errorf("second Invoke = %+v, %v", res, err)
	}
}

// TestExecutorRefusesRootWorker checks that the executor of the runtime
// images, started without the capabilities it needs to switch users (the
// host configuration of earlier versions: all capabilities dropped), stops
// with a message instead of running the function as root.
func TestExecutorRefusesRootWorker(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rt.Client().ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       fmt.Sprintf("sl-nocap-test-%d", os.Getpid()),
		Config:     &dcontainer.Config{Image: pythonImage, Labels: map[string]string{container.LabelManaged: "true", container.LabelNode: "docker-test"}},
		HostConfig: &dcontainer.HostConfig{CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"}},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		_, _ = rt.Client().ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	wait := rt.Client().ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: dcontainer.WaitConditionNextExit})
	if _, err := rt.Client().ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	select {
	case st := <-wait.Result:
		if st.StatusCode == 0 {
			t.Errorf("executor exited with status 0, want a failure")
		}
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	}
	logs, err := rt.Client().ContainerLogs(ctx, res.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer logs.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, logs); err != nil {
		t.Fatalf("read logs: %v", err)
	}
	if !strings.Contains(out.String(), "CAP_SETUID") {
		t.Errorf("executor log %q does not say it lacks CAP_SETUID", out.String())
	}
}

// concurrentPython and concurrentNode sleep 200 ms and report when they
// ran, writing their own markers to their output.
const concurrentPython = `import time

def handler(params, context):
    start = time.time()
    print("output of", params["n"])
    time.sleep(0.2)
    print("end of", params["n"])
    return {"start": start, "end": time.time()}
`

const concurrentNode = `module.exports = async (params) => {
  const start = Date.now() / 1000;
  console.log('output of', params.n);
  await new Promise((r) => setTimeout(r, 200));
  console.log('end of', params.n);
  return { start: start, end: Date.now() / 1000 };
};
`

// TestConcurrentInvocations checks MaxConcurrency on the executor side: a
// container loaded with concurrency 4 runs 4 invocations of a function that
// sleeps 200 ms at the same time (their intervals, as the function measured
// them, overlap), and each gets only its own output.
func TestConcurrentInvocations(t *testing.T) {
	for _, tc := range []struct{ runtime, image, handler, file, code string }{
		{"python", pythonImage, "main.handler", "main.py", concurrentPython},
		{"nodejs", nodeImage, "index.js", "index.js", concurrentNode},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			rt := newRuntime(t, tc.image)
			const n = 4
			id := runOnce(t, rt,
				container.Spec{Name: fmt.Sprintf("sl-conc-test-%s-%d", tc.runtime, os.Getpid()), Image: tc.image, MemoryMB: 128},
				container.LoadRequest{Handler: tc.handler, Code: containertest.Files(t, map[string]string{tc.file: tc.code}), Concurrency: n})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			type span struct{ Start, End float64 }
			spans := make([]span, n)
			outs := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					res, err := rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{"n": i}, ReturnOutput: true})
					if err == nil && !res.Success {
						err = errors.New(res.Error)
					}
					if err == nil {
						err = json.Unmarshal([]byte(res.Result), &spans[i])
					}
					outs[i], errs[i] = res.Output, err
				})
			}
			wg.Wait()
			latestStart, earliestEnd := spans[0].Start, spans[0].End
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("invocation %d: %v", i, errs[i])
				}
				want := fmt.Sprintf("output of %d\nend of %d\n", i, i)
				if outs[i] != want {
					t.Errorf("invocation %d output %q, want %q", i, outs[i], want)
				}
				latestStart = max(latestStart, spans[i].Start)
				earliestEnd = min(earliestEnd, spans[i].End)
			}
			if latestStart >= earliestEnd {
				t.Errorf("the %d invocations did not all overlap: spans %+v", n, spans)
			}
		})
	}
}

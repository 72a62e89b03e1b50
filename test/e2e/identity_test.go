package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

// runToExit runs a node process with the given name and etcd that is
// expected to exit on its own, and returns its exit code and output.
func runToExit(t *testing.T, name string, etcd []string) (int, string) {
	t.Helper()
	ports, err := testutil.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	runDir, err := os.MkdirTemp("/tmp", "sle")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	confFile := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(confFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(nodeBin,
		"--config", confFile,
		"--api.ip", "127.0.0.1",
		"--api.port", strconv.Itoa(ports[0]),
		"--node.name", name,
		"--etcd.address", strings.Join(etcd, ","),
		"--container.rundir", runDir,
		"--async.spool.dir", filepath.Join(t.TempDir(), "spool"),
		"--container.stemcells=",
		"--registry.ttl", "2s",
	)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = out, out
	proc, err := testutil.StartProcess(cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	if !proc.Wait(nodeReadyTimeout) {
		proc.Kill()
		t.Fatalf("duplicate node still running after %v; output:\n%s", nodeReadyTimeout, out.String())
	}
	return proc.State().ExitCode(), out.String()
}

// TestDuplicateNodeIDLeavesLiveNodeIntact starts a second node with the name
// of a live one: it must exit non-zero naming the live node, and leave the
// live node's containers alone.
func TestDuplicateNodeIDLeavesLiveNodeIntact(t *testing.T) {
	t.Parallel()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	endpoints := registrytest.StartExternalEtcd(t)
	a := startNode(t, nodeOpts{Etcd: endpoints, Args: []string{"--registry.ttl", "2s"}})
	createPython(t, a, "twin", "hello.handler", 128, helloFiles)
	var pre wire.PrewarmResponse
	cliOK(t, a, &pre, "prewarm", "-f", "twin", "--count", "1")
	before := nodeContainers(t, a, "")
	if pre.Prewarmed != 1 || len(before) != 1 {
		t.Fatalf("prewarmed %d, %d containers; want 1", pre.Prewarmed, len(before))
	}

	code, out := runToExit(t, a.Name, endpoints)
	if code == 0 || !strings.Contains(out, a.URL) {
		t.Errorf("duplicate node exited %d; want non-zero and a message naming %s; output:\n%s", code, a.URL, tail(out, 20))
	}
	if strings.Contains(out, "orphan") {
		t.Errorf("duplicate node reconciled containers; output:\n%s", tail(out, 20))
	}
	if after := nodeContainers(t, a, ""); len(after) != 1 || after[0] != before[0] {
		t.Fatalf("live node's containers %v after the duplicate; want %v", after, before)
	}
	if resp := invokeCLI(t, a, "twin", "-p", "name:Still"); resp.Result != `"Hello, Still!"` || !resp.IsWarmStart {
		t.Errorf("invoke on the live node after the duplicate: Result %s, IsWarmStart %v; want a warm start", resp.Result, resp.IsWarmStart)
	}
}

// pollHTTP returns GET /poll/{id} of n.
func pollHTTP(n *node, id string) (int, wire.InvocationResponse, error) {
	var r wire.InvocationResponse
	code, b, err := tryDo(http.MethodGet, n.URL+"/poll/"+id, nil)
	if err != nil {
		return 0, r, err
	}
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &r); err != nil {
			return code, r, err
		}
	}
	return code, r, nil
}

// TestKilledNodeReportedByPoll kills a node with SIGKILL while an async
// request runs on it: another node's /poll must report the failure, naming
// the node, once the node's lease expires, instead of "running" for the
// result TTL.
func TestKilledNodeReportedByPoll(t *testing.T) {
	t.Parallel()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	endpoints := registrytest.StartExternalEtcd(t)
	a := startNode(t, nodeOpts{Etcd: endpoints, Args: []string{"--registry.ttl", "2s"}})
	b := startNode(t, nodeOpts{Etcd: endpoints})
	defer removeNodeContainers(a.Name)
	createPython(t, a, "doomed", "sleep.handler", 128, map[string]string{"sleep.py": sleepPy})
	var async wire.AsyncResponse
	cliOK(t, a, &async, "invoke", "-f", "doomed", "-p", "s:60", "-a", "--no_offload")
	if code, _, err := pollHTTP(b, async.ReqID); err != nil || code != http.StatusAccepted {
		t.Fatalf("poll while the node lives: %d, %v; want 202", code, err)
	}

	a.signal(t, syscall.SIGKILL)
	if !a.proc.Wait(10 * time.Second) {
		t.Fatal("node did not die of SIGKILL")
	}
	want := "node " + a.Name + " stopped before the request finished"
	var last wire.InvocationResponse
	eventually(t, 20*time.Second, "poll on another node reports the killed node", func() bool {
		code, r, err := pollHTTP(b, async.ReqID)
		last = r
		return err == nil && code == http.StatusOK && !r.Success && r.Error == want
	})
	if last.ReqID != async.ReqID {
		t.Errorf("failure reported for %q, want %q", last.ReqID, async.ReqID)
	}
}

// TestSpooledResultDeliveredAfterRestart completes an async request while
// etcd is down, stops the node with its result spooled, and restarts both:
// the restarted node delivers the result, which another node then serves.
func TestSpooledResultDeliveredAfterRestart(t *testing.T) {
	t.Parallel()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	etcd := registrytest.StartEtcdProcess(t)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	args := []string{"--registry.ttl", "2s"}
	a := startNode(t, nodeOpts{Etcd: etcd.Endpoints(), SpoolDir: spoolDir, Args: args})
	b := startNode(t, nodeOpts{Etcd: etcd.Endpoints()})
	createPython(t, a, "patient", "sleep.handler", 128, map[string]string{"sleep.py": sleepPy})
	// Warm a container first, so that the async request needs no registry.
	invokeCLI(t, a, "patient", "-p", "s:0")
	var async wire.AsyncResponse
	cliOK(t, a, &async, "invoke", "-f", "patient", "-p", "s:2", "-a", "--no_offload")

	etcd.Stop()
	eventually(t, 60*time.Second, "node A answers the poll from its spool while etcd is down", func() bool {
		code, r, err := pollHTTP(a, async.ReqID)
		return err == nil && code == http.StatusOK && r.Success
	})
	a.stop(t)
	if files, err := os.ReadDir(spoolDir); err != nil || len(files) != 1 {
		t.Fatalf("spool after the stop: %v, %v; want the one result", files, err)
	}

	etcd.Start()
	a2 := startNode(t, nodeOpts{Name: a.Name, Etcd: etcd.Endpoints(), SpoolDir: spoolDir, RunDir: a.RunDir, Args: args})
	var polled wire.InvocationResponse
	eventually(t, 30*time.Second, "node B serves the result the restarted node delivered", func() bool {
		code, r, err := pollHTTP(b, async.ReqID)
		polled = r
		return err == nil && code == http.StatusOK
	})
	if !polled.Success || polled.Result != `"slept"` {
		t.Errorf("result polled on B: %+v; want the spooled success", polled)
	}
	eventually(t, 10*time.Second, "spool emptied", func() bool {
		files, err := os.ReadDir(a2.SpoolDir)
		return err == nil && len(files) == 0
	})
}

package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/registry/embedded"
	"github.com/serverledge/serverledge/internal/testutil"
)

// EtcdEnv names an environment variable that, when set, is the path of the
// etcd binary StartExternalEtcd runs.
const EtcdEnv = "SERVERLEDGE_TEST_ETCD"

// etcdModule is the package built when no etcd binary is on PATH; its
// version is the one in go.mod.
const etcdModule = "go.etcd.io/etcd/server/v3"

const (
	// etcdReadyTimeout bounds the wait for a started etcd to answer.
	etcdReadyTimeout = 20 * time.Second
	// etcdStopTimeout bounds the wait for etcd to exit after SIGTERM.
	etcdStopTimeout = 5 * time.Second
)

// StartEmbeddedEtcd starts an etcd server inside the test process, on a free
// loopback port with a temporary data directory, stops it when the test
// ends, and returns its client endpoints.
func StartEmbeddedEtcd(t testing.TB) []string {
	t.Helper()
	srv, err := embedded.Start(context.Background(), embedded.Config{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: "http://127.0.0.1:0",
	})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("stop embedded etcd: %v", err)
		}
	})
	return srv.Endpoints()
}

// StartExternalEtcd starts an etcd server process on free loopback ports
// with a temporary data directory, waits until it answers, stops it by its
// pid when the test ends, and returns its client endpoints.
//
// The binary is $SERVERLEDGE_TEST_ETCD, else etcd on PATH, else one built
// from the etcd server module in go.mod (cached in the user cache directory).
func StartExternalEtcd(t testing.TB) []string {
	t.Helper()
	bin, err := etcdBinary()
	if err != nil {
		t.Fatalf("find an etcd binary: %v", err)
	}
	// Free ports are found by binding and releasing them, so another process
	// may take one first; then etcd exits at once and another try is made.
	const attempts = 3
	for i := 1; ; i++ {
		endpoints, err := startEtcdProcess(t, bin)
		if err == nil {
			return endpoints
		}
		if i == attempts {
			t.Fatalf("start etcd (%s): %v", bin, err)
		}
		t.Logf("start etcd (%s), attempt %d: %v", bin, i, err)
	}
}

var built struct {
	once sync.Once
	path string
	err  error
}

// etcdBinary returns the path of the etcd binary to run.
func etcdBinary() (string, error) {
	if p := os.Getenv(EtcdEnv); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	built.once.Do(func() { built.path, built.err = buildEtcd() })
	return built.path, built.err
}

// buildEtcd builds the etcd server of go.mod into the user cache directory,
// unless a previous run did.
func buildEtcd() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory to build etcd into: %w", err)
	}
	dir := filepath.Join(cache, "serverledge-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("etcd is not on PATH and go is not there to build it: %w", err)
	}
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Version}}", "go.etcd.io/etcd/server/v3").Output()
	if err != nil {
		return "", fmt.Errorf("find the etcd server version in go.mod: %w", err)
	}
	path := filepath.Join(dir, "etcd-"+string(bytes.TrimSpace(out)))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	// Build next to the target and rename, so that concurrent test
	// processes never run a half-written binary.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if out, err := exec.Command(goBin, "build", "-o", tmp, etcdModule).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build %s: %w\n%s", etcdModule, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return path, nil
}

func startEtcdProcess(t testing.TB, bin string) ([]string, error) {
	e, err := newEtcdProcess(t, bin)
	if err != nil {
		return nil, err
	}
	return e.Endpoints(), nil
}

// EtcdProcess is an etcd server process that a test can stop and start
// again on the same ports and data, to see what clients do while etcd is
// unreachable.
type EtcdProcess struct {
	t                  testing.TB
	bin, dir           string
	clientURL, peerURL string
	out                *testutil.SyncBuffer
	proc               *testutil.Process
}

// StartEtcdProcess is StartExternalEtcd returning the process, to stop and
// start it again.
func StartEtcdProcess(t testing.TB) *EtcdProcess {
	t.Helper()
	bin, err := etcdBinary()
	if err != nil {
		t.Fatalf("find an etcd binary: %v", err)
	}
	const attempts = 3
	for i := 1; ; i++ {
		e, err := newEtcdProcess(t, bin)
		if err == nil {
			return e
		}
		if i == attempts {
			t.Fatalf("start etcd (%s): %v", bin, err)
		}
		t.Logf("start etcd (%s), attempt %d: %v", bin, i, err)
	}
}

func newEtcdProcess(t testing.TB, bin string) (*EtcdProcess, error) {
	ports, err := testutil.FreePorts(2)
	if err != nil {
		return nil, err
	}
	e := &EtcdProcess{
		t:         t,
		bin:       bin,
		dir:       filepath.Join(t.TempDir(), "etcd"),
		clientURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		peerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		out:       &testutil.SyncBuffer{},
	}
	if err := e.start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("etcd output:\n%s", e.out.String())
		}
	})
	return e, nil
}

// Endpoints returns the client endpoints, the same across restarts.
func (e *EtcdProcess) Endpoints() []string { return []string{e.clientURL} }

// Stop stops etcd (SIGTERM, then SIGKILL) and waits for it to exit.
func (e *EtcdProcess) Stop() {
	if e.proc != nil {
		e.proc.Stop(etcdStopTimeout)
		e.proc = nil
	}
}

// Start starts etcd again on the same ports and data, and waits until it
// answers; the test fails if it does not.
func (e *EtcdProcess) Start() {
	e.t.Helper()
	if err := e.start(); err != nil {
		e.t.Fatalf("restart etcd: %v", err)
	}
}

func (e *EtcdProcess) start() error {
	cmd := exec.Command(e.bin,
		"--name", "test",
		"--data-dir", e.dir,
		"--listen-client-urls", e.clientURL,
		"--advertise-client-urls", e.clientURL,
		"--listen-peer-urls", e.peerURL,
		"--initial-advertise-peer-urls", e.peerURL,
		"--initial-cluster", "test="+e.peerURL,
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = e.out, e.out
	// Should the test binary die, the kernel stops etcd too.
	proc, err := testutil.StartProcess(cmd, syscall.SIGKILL)
	if err != nil {
		return err
	}
	if err := waitHealthy(e.clientURL, proc.Exited()); err != nil {
		proc.Stop(etcdStopTimeout)
		return fmt.Errorf("%w; output:\n%s", err, e.out.String())
	}
	e.proc = proc
	return nil
}

// waitHealthy polls etcd's /health until it reports a healthy member.
func waitHealthy(clientURL string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(etcdReadyTimeout)
	for {
		resp, err := client.Get(clientURL + "/health")
		if err == nil {
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body.Bytes(), []byte(`"health":"true"`)) {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("etcd exited")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not healthy within %v", etcdReadyTimeout)
		}
	}
}

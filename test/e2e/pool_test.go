package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/wire"
)

// helloFiles is the python hello example as an in-memory archive.
var helloFiles = map[string]string{
	"hello.py": "def handler(params, context):\n    return \"Hello, \" + params.get(\"name\", \"world\") + \"!\"\n",
}

// TestConcurrentInvocationsStayWithinPool sends 40 parallel invocations of
// two functions to a node whose pool holds four containers, and samples the
// node and Docker while they run.
func TestConcurrentInvocationsStayWithinPool(t *testing.T) {
	t.Parallel()
	const (
		poolMB     = 512
		functionMB = 128
		requests   = 40
	)
	// The queue may hold every request. The scheduler's dispatcher runs the
	// cold starts of queued requests one at a time, so with a slow Docker
	// daemon the default maximum wait (30 s) would turn some into 429s; this
	// test is about the memory budget, not about queueing delay.
	n := startNode(t, nodeOpts{PoolMemoryMB: poolMB, Args: []string{"--scheduler.queue.maxwait", "3m"}})
	fns := []string{"sleepa", "sleepb"}
	for _, fn := range fns {
		createPython(t, n, fn, "sleep.handler", functionMB, map[string]string{"sleep.py": sleepPy})
	}

	stop := make(chan struct{})
	var sampler sync.WaitGroup
	var samples, dockerSamples int
	var maxCounted, maxDocker int64
	var sampleErr []string
	overBefore := false
	sampler.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			st, err := tryStatus(n)
			if err != nil {
				sampleErr = append(sampleErr, err.Error())
				continue
			}
			samples++
			counted := countContainers(st.BusyContainers) + countContainers(st.AvailableWarmContainers)
			maxCounted = max(maxCounted, int64(counted)*functionMB)
			if st.AvailableMemMB < 0 || int64(counted)*functionMB > poolMB {
				sampleErr = append(sampleErr, fmt.Sprintf("status: %d containers of %d MB and %d MB available in a %d MB pool", counted, functionMB, st.AvailableMemMB, poolMB))
			}
			if i%3 != 0 {
				continue
			}
			// Running containers of the node, as Docker sees them.
			out, err := docker("ps", "-q", "--filter", "label=serverledge.node="+n.Name, "--filter", "status=running")
			if err != nil {
				sampleErr = append(sampleErr, err.Error())
				continue
			}
			dockerSamples++
			mb := int64(len(strings.Fields(out))) * functionMB
			maxDocker = max(maxDocker, mb)
			// The pool stops counting an evicted container before Docker has
			// killed it, so only an excess seen twice in a row (300 ms
			// apart) is a container the pool really forgot.
			if mb > poolMB && overBefore {
				sampleErr = append(sampleErr, fmt.Sprintf("docker: %d MB of running containers in a %d MB pool", mb, poolMB))
			}
			overBefore = mb > poolMB
		}
	})

	var wg sync.WaitGroup
	errs := make(chan string, requests)
	for i := range requests {
		fn := fns[i%len(fns)]
		wg.Go(func() {
			code, body, err := invokeHTTP(n, fn, map[string]any{"s": 0.2})
			if err != nil {
				errs <- err.Error()
				return
			}
			var resp wire.InvocationResponse
			if code != http.StatusOK || json.Unmarshal(body, &resp) != nil || !resp.Success || resp.Result != `"slept"` {
				errs <- fmt.Sprintf("%s: %d %s", fn, code, body)
			}
		})
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("invocation failed: %s", e)
	}
	for _, e := range sampleErr {
		t.Errorf("pool over budget: %s", e)
	}
	if samples == 0 || dockerSamples == 0 {
		t.Fatalf("no sample taken while the invocations ran (%d status, %d docker)", samples, dockerSamples)
	}
	t.Logf("%d status samples (max %d MB counted), %d docker samples (max %d MB running), pool %d MB",
		samples, maxCounted, dockerSamples, maxDocker, poolMB)
	if st := status(t, n); st.DropCount != 0 {
		t.Errorf("DropCount %d; want 0", st.DropCount)
	}
}

// countContainers sums a function → count map.
func countContainers(m map[string]int) int {
	total := 0
	for _, v := range m {
		total += v
	}
	return total
}

// TestEvictionLeastRecentlyUsed fills a pool of two containers and checks
// that a third function evicts the least recently used idle container.
func TestEvictionLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{PoolMemoryMB: 256})
	for _, fn := range []string{"fa", "fb", "fc"} {
		createPython(t, n, fn, "hello.handler", 128, helloFiles)
	}
	invokeCLI(t, n, "fa")
	invokeCLI(t, n, "fb")
	if resp := invokeCLI(t, n, "fa"); !resp.IsWarmStart {
		t.Fatalf("second invoke of fa was not warm")
	}
	// fb is now the least recently used.
	fbContainers := nodeContainers(t, n, "fb")
	if len(fbContainers) != 1 {
		t.Fatalf("%d containers of fb; want 1", len(fbContainers))
	}
	if resp := invokeCLI(t, n, "fc", "-p", "name:C"); resp.Result != `"Hello, C!"` || resp.IsWarmStart {
		t.Fatalf("invoke of fc: Result %s, IsWarmStart %v; want a cold start's result", resp.Result, resp.IsWarmStart)
	}
	st := status(t, n)
	want := map[string]int{"fa": 1, "fc": 1}
	if !mapsEqual(st.AvailableWarmContainers, want) {
		t.Fatalf("AvailableWarmContainers %v; want %v (fb, the least recently used, evicted)", st.AvailableWarmContainers, want)
	}
	eventually(t, 20*time.Second, "the evicted container of fb is still in Docker", func() bool {
		return !slices.Contains(containers(t, "serverledge.node="+n.Name), fbContainers[0])
	})
	if resp := invokeCLI(t, n, "fa"); !resp.IsWarmStart {
		t.Errorf("fa lost its warm container, although fb was the least recently used")
	}
}

// mapsEqual compares two count maps, ignoring zero entries.
func mapsEqual(a, b map[string]int) bool {
	for k, v := range a {
		if v != b[k] {
			return false
		}
	}
	for k, v := range b {
		if v != a[k] {
			return false
		}
	}
	return true
}

// TestJanitorRemovesIdleContainers checks that an idle container expires.
func TestJanitorRemovesIdleContainers(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{Args: []string{"--container.expiration", "2s", "--janitor.interval", "1s"}})
	createPython(t, n, "idle", "hello.handler", 128, helloFiles)
	if code, body, err := invokeHTTP(n, "idle", nil); err != nil || code != http.StatusOK {
		t.Fatalf("invoke: %d %s %v", code, body, err)
	}
	if got := status(t, n).AvailableWarmContainers["idle"]; got != 1 {
		t.Fatalf("%d idle containers right after the invocation; want 1", got)
	}
	eventually(t, 15*time.Second, "the idle container did not expire from /status", func() bool {
		return status(t, n).AvailableWarmContainers["idle"] == 0
	})
	eventually(t, 15*time.Second, "the expired container is still in Docker", func() bool {
		return len(nodeContainers(t, n, "idle")) == 0
	})
	if resp := invokeCLI(t, n, "idle"); resp.IsWarmStart {
		t.Errorf("invoke after expiry was warm")
	}
}

// TestPrewarmThenWarmStart prewarms two containers through the CLI.
func TestPrewarmThenWarmStart(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	createPython(t, n, "pre", "hello.handler", 128, helloFiles)
	var pre wire.PrewarmResponse
	cliOK(t, n, &pre, "prewarm", "-f", "pre", "--count", "2")
	if pre.Prewarmed != 2 {
		t.Fatalf("Prewarmed %d; want 2", pre.Prewarmed)
	}
	if got := status(t, n).AvailableWarmContainers["pre"]; got != 2 {
		t.Fatalf("%d idle containers after prewarm; want 2", got)
	}
	if ids := nodeContainers(t, n, "pre"); len(ids) != 2 {
		t.Fatalf("%d containers of pre in Docker after prewarm; want 2", len(ids))
	}
	if resp := invokeCLI(t, n, "pre", "-p", "name:P"); !resp.IsWarmStart || resp.Result != `"Hello, P!"` {
		t.Fatalf("first invoke after prewarm: IsWarmStart %v, Result %s; want a warm start", resp.IsWarmStart, resp.Result)
	}
}

// TestStemCellColdStart checks that a cold start of a never-seen function
// takes the ready stem cell instead of creating a container, and that a new
// stem cell is started afterwards.
func TestStemCellColdStart(t *testing.T) {
	t.Parallel()
	const functionMB = 256
	n := startNode(t, nodeOpts{Args: []string{"--container.stemcells=python:1", "--container.stemcell.memory", "128"}})
	eventually(t, 30*time.Second, "no stem cell became ready", func() bool {
		return status(t, n).StemCells["python"] == 1
	})
	before := nodeContainers(t, n, "")
	if len(before) != 1 {
		t.Fatalf("%d containers with one stem cell; want 1", len(before))
	}
	stem := before[0]

	createPython(t, n, "fresh", "hello.handler", functionMB, helloFiles)
	resp := invokeCLI(t, n, "fresh", "-p", "name:S")
	if resp.IsWarmStart || resp.Result != `"Hello, S!"` {
		t.Fatalf("invoke: IsWarmStart %v, Result %s; want a cold start's result", resp.IsWarmStart, resp.Result)
	}
	// No container was created for the function: the stem cell serves it,
	// resized to the function's memory.
	if ids := nodeContainers(t, n, "fresh"); len(ids) != 0 {
		t.Fatalf("containers %v were created for the function; want the stem cell used", ids)
	}
	out, err := docker("ps", "-a", "--no-trunc", "--filter", "label=serverledge.node="+n.Name,
		"--format", `{{.ID}} function={{.Label "serverledge.function"}}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.HasPrefix(line, stem) && !strings.HasSuffix(line, " function=") {
			t.Fatalf("container %q was created for a function during the cold start; want only the stem cell's replacement", line)
		}
	}
	if mem := inspect(t, stem, "{{.HostConfig.Memory}}"); mem != strconv.Itoa(functionMB<<20) {
		t.Errorf("stem cell memory limit %s bytes after the cold start; want %d MB", mem, functionMB)
	}
	var after []string
	eventually(t, 30*time.Second, "no new stem cell after the cold start", func() bool {
		after = nodeContainers(t, n, "")
		return status(t, n).StemCells["python"] == 1 && len(after) == 2
	})
	if !slices.Contains(after, stem) {
		t.Fatalf("containers after the refill %v; want the old stem cell %s and one new", after, stem)
	}
	if st := status(t, n); st.AvailableWarmContainers["fresh"] != 1 {
		t.Errorf("AvailableWarmContainers %v; want fresh: 1", st.AvailableWarmContainers)
	}
	if resp := invokeCLI(t, n, "fresh"); !resp.IsWarmStart {
		t.Errorf("second invoke was not warm")
	}
}

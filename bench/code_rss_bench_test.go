package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container/containertest"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/wire"
)

// codeRSSResultsFile is where BenchmarkNodeCodeRSS writes its numbers.
const codeRSSResultsFile = "results/rss.txt"

// codeRSSCommand is the command the header of codeRSSResultsFile quotes.
const codeRSSCommand = "SERVERLEDGE_BENCH_BEFORE_BIN=/tmp/sl-before go test -run '^$' -bench NodeCodeRSS -benchtime 1x -timeout 30m ./bench/"

// codeRSSBeforeEnv names a node binary to measure beside the one built from
// this tree, e.g. one built from an older commit.
const codeRSSBeforeEnv = "SERVERLEDGE_BENCH_BEFORE_BIN"

const (
	// codeRSSFunctions is how many functions are registered.
	codeRSSFunctions = 200
	// codeRSSCodeBytes is the size of the random file in each function's archive.
	codeRSSCodeBytes = 1 << 20
	// codeRSSWriters is how many creations run at once.
	codeRSSWriters = 4
	// codeRSSInvoked is how many distinct functions are cold-started at the end.
	codeRSSInvoked = 10
)

var codeRSSResults = newResultsFile(codeRSSResultsFile, func() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Serverledge node RSS with registered functions — %s\n", codeRSSCommand)
	fmt.Fprintf(&sb, "# this run: %s\n", strings.Join(nodeTestFlags(), " "))
	fmt.Fprintf(&sb, "# %s; VmRSS and VmHWM of the node process from /proc/<pid>/status\n", time.Now().Format(time.RFC3339))
	return sb.String()
})

// BenchmarkNodeCodeRSS starts a node, registers codeRSSFunctions python
// functions whose archives each hold codeRSSCodeBytes of random
// (incompressible) data through POST /create, and reads the node's resident
// memory: idle, after the registrations, after GET /function/{name} of every
// function, and after cold-starting codeRSSInvoked of them. It measures the
// node built from this tree and, when SERVERLEDGE_BENCH_BEFORE_BIN names
// another binary, that one too; each against an external etcd process (whose
// memory is not counted) and the embedded etcd (counted).
func BenchmarkNodeCodeRSS(b *testing.B) {
	env := newRuntimeEnv(b)
	type binary struct{ label, path string }
	bins := []binary{}
	if before := os.Getenv(codeRSSBeforeEnv); before != "" {
		bins = append(bins, binary{"before (" + before + ")", before})
	}
	bins = append(bins, binary{"this tree", buildNode(b)})
	ctx := benchCtx(b, 25*time.Minute)
	codes := codeRSSArchives(b)

	rows := [][]string{{"node", "etcd", "idle", "after creates", "after GET all", "after cold starts", "peak (VmHWM)", "create time"}}
	for _, bin := range bins {
		for _, external := range []bool{true, false} {
			var etcd []string
			etcdLabel := "embedded"
			if external {
				etcd = registrytest.StartExternalEtcd(b)
				etcdLabel = "external"
			}
			r := codeRSSRun(ctx, b, env, bin.path, etcd, codes)
			rows = append(rows, []string{bin.label, etcdLabel, mbKB(r.idle), mbKB(r.created), mbKB(r.described),
				mbKB(r.invoked), mbKB(r.peak), r.createTime.Round(time.Millisecond).String()})
			b.Logf("%s, %s etcd: %+v", bin.label, etcdLabel, r)
		}
	}
	b.ReportMetric(0, "ns/op")
	codeRSSResults.set(b, "CodeRSS", nodeTable(
		[]string{
			fmt.Sprintf("%d python functions, each an archive of main.py and %d bytes of random data (%d bytes of base64 per /create), %d writers",
				codeRSSFunctions, codeRSSCodeBytes, base64.StdEncoding.EncodedLen(len(codes[0])), codeRSSWriters),
			fmt.Sprintf("idle: %s after ready, no stem cells; after creates: %s after the last /create returned", nodeIdleSettle, nodeIdleSettle),
			fmt.Sprintf("after cold starts: one invocation each of %d distinct functions", codeRSSInvoked),
			"external etcd: etcd's memory is not counted; embedded: the node's RSS includes etcd's",
		}, rows))
}

// codeRSSArchives returns codeRSSFunctions distinct archives of a python
// no-op and codeRSSCodeBytes of random data.
func codeRSSArchives(b *testing.B) [][]byte {
	out := make([][]byte, codeRSSFunctions)
	blob := make([]byte, codeRSSCodeBytes)
	for i := range out {
		if _, err := rand.Read(blob); err != nil {
			b.Fatal(err)
		}
		out[i] = containertest.Files(b, map[string]string{
			"main.py":  "def handler(params, context):\n    return None\n",
			"blob.bin": string(blob),
		})
	}
	return out
}

// codeRSSResult holds the readings of one run, in KiB.
type codeRSSResult struct {
	idle, created, described, invoked, peak int64
	createTime                              time.Duration
}

// codeRSSRun measures one node binary against one etcd.
func codeRSSRun(ctx context.Context, b *testing.B, env *runtimeEnv, bin string, etcd []string, codes [][]byte) codeRSSResult {
	n := startNode(b, env, bin, nodeOpts{kind: "coderss", etcd: etcd})
	defer n.stop(b)
	var r codeRSSResult
	read := func(what string) int64 {
		kb, err := procStatusKB(n.proc.Pid(), "VmRSS")
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return kb
	}
	time.Sleep(nodeIdleSettle)
	r.idle = read("idle")

	t0 := time.Now()
	if err := codeRSSCreate(ctx, n, codes); err != nil {
		b.Fatalf("create: %v", err)
	}
	r.createTime = time.Since(t0)
	time.Sleep(nodeIdleSettle)
	r.created = read("after creates")

	for i := range codes {
		var f wire.FunctionRequest
		if err := n.call(ctx, http.MethodGet, "/function/"+codeRSSName(i), nil, &f); err != nil {
			b.Fatalf("describe: %v", err)
		}
	}
	r.described = read("after GET all")

	for i := range codeRSSInvoked {
		if _, err := n.invoke(ctx, codeRSSName(i)); err != nil {
			b.Fatalf("invoke: %v", err)
		}
	}
	r.invoked = read("after cold starts")
	peak, err := procStatusKB(n.proc.Pid(), "VmHWM")
	if err != nil {
		b.Fatal(err)
	}
	r.peak = peak
	return r
}

func codeRSSName(i int) string { return "code-rss-" + strconv.Itoa(i) }

// codeRSSCreate registers one function per archive, codeRSSWriters at a time.
func codeRSSCreate(ctx context.Context, n *nodeProc, codes [][]byte) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range codeRSSWriters {
		wg.Go(func() {
			for i := range next {
				err := n.call(ctx, http.MethodPost, "/create", wire.FunctionRequest{
					Name:            codeRSSName(i),
					Runtime:         "python",
					MemoryMB:        64,
					Handler:         noopHandler,
					TarFunctionCode: base64.StdEncoding.EncodeToString(codes[i]),
				}, nil)
				if err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range codes {
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr
}

// procStatusKB returns a "<field>: <n> kB" line of /proc/<pid>/status.
func procStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s line in /proc/%d/status", field, pid)
}

func mbKB(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

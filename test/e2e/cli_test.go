package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/wire"
)

// TestCLIFunctionLifecycle drives a function through its whole life with
// the CLI, as the quick start does, for each runtime.
func TestCLIFunctionLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})

	t.Run("python", func(t *testing.T) {
		createCLI(t, n, "hello", "--runtime", "python", "--handler", "hello.handler",
			"--src", repoPath(t, "examples/python/hello"))

		cold := invokeCLI(t, n, "hello", "-p", "name:Ada")
		if cold.Result != `"Hello, Ada!"` || cold.IsWarmStart {
			t.Fatalf("first invoke: Result %s, IsWarmStart %v; want \"Hello, Ada!\" from a cold start", cold.Result, cold.IsWarmStart)
		}
		warm := invokeCLI(t, n, "hello", "-p", "name:Bob")
		if warm.Result != `"Hello, Bob!"` || !warm.IsWarmStart {
			t.Fatalf("second invoke: Result %s, IsWarmStart %v; want \"Hello, Bob!\" from a warm start", warm.Result, warm.IsWarmStart)
		}

		var async wire.AsyncResponse
		cliOK(t, n, &async, "invoke", "-f", "hello", "-p", "name:Cy", "-a")
		if !strings.HasPrefix(async.ReqID, "hello-") {
			t.Fatalf("async invoke: ReqId %q", async.ReqID)
		}
		var polled wire.InvocationResponse
		cliOK(t, n, &polled, "poll", "--request", async.ReqID, "--wait", "30s")
		if !polled.Success || polled.Result != `"Hello, Cy!"` {
			t.Fatalf("poll: %+v; want Success and \"Hello, Cy!\"", polled)
		}

		newCode := sourceDir(t, map[string]string{
			"hello.py": "def handler(params, context):\n    return \"Bye, \" + params.get(\"name\", \"world\") + \"!\"\n",
		})
		var updated wire.UpdatedResponse
		cliOK(t, n, &updated, "update", "-f", "hello", "--src", tarFileOf(t, newCode))
		if updated.Updated != "hello" {
			t.Fatalf("update: reply %+v", updated)
		}
		after := invokeCLI(t, n, "hello", "-p", "name:Ada")
		if after.Result != `"Bye, Ada!"` {
			t.Fatalf("invoke after update: Result %s; want the new code's \"Bye, Ada!\"", after.Result)
		}
		if after.IsWarmStart {
			t.Errorf("invoke after update ran in a warm container of the old version")
		}

		var deleted wire.DeletedResponse
		cliOK(t, n, &deleted, "delete", "-f", "hello")
		if deleted.Deleted != "hello" {
			t.Fatalf("delete: reply %+v", deleted)
		}
		res := cli(t, n, "invoke", "-f", "hello", "-p", "name:Ada")
		if res.Code == 0 || !strings.Contains(res.Stderr, "does not exist") || !strings.Contains(res.Stderr, "404") {
			t.Fatalf("invoke after delete: exit %d, stderr %q; want non-zero and the 404 message", res.Code, res.Stderr)
		}
		var names []string
		cliOK(t, n, &names, "list")
		if slices.Contains(names, "hello") {
			t.Errorf("list after delete still has hello: %v", names)
		}
		eventually(t, 20*time.Second, "containers of the deleted function are still there", func() bool {
			return len(nodeContainers(t, n, "hello")) == 0
		})
	})

	t.Run("nodejs", func(t *testing.T) {
		requireImage(t, nodejsImage)
		createCLI(t, n, "hellojs", "--runtime", "nodejs", "--handler", "hello.js",
			"--src", repoPath(t, "examples/nodejs/hello"))
		resp := invokeCLI(t, n, "hellojs", "-p", "name:Ada")
		if resp.Result != `"Hello, Ada!"` || resp.IsWarmStart {
			t.Fatalf("invoke: Result %s, IsWarmStart %v; want \"Hello, Ada!\" from a cold start", resp.Result, resp.IsWarmStart)
		}
		if warm := invokeCLI(t, n, "hellojs"); warm.Result != `"Hello, world!"` || !warm.IsWarmStart {
			t.Fatalf("second invoke: Result %s, IsWarmStart %v; want \"Hello, world!\" from a warm start", warm.Result, warm.IsWarmStart)
		}
	})

	t.Run("custom", func(t *testing.T) {
		requireImage(t, customImage)
		createCLI(t, n, "greet", "--runtime", "custom", "--custom_image", customImage, "--handler", "greet")
		resp := invokeCLI(t, n, "greet", "-p", "name:world")
		if !strings.Contains(resp.Result, "Hello, WORLD!") || resp.IsWarmStart {
			t.Fatalf("invoke: Result %s, IsWarmStart %v; want the greeting from a cold start", resp.Result, resp.IsWarmStart)
		}
	})
}

// TestOutputErrorsAndTimeout checks output capture, a failing function and
// a function that runs past its timeout.
func TestOutputErrorsAndTimeout(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})

	t.Run("output", func(t *testing.T) {
		createCLI(t, n, "hello", "--runtime", "python", "--handler", "hello.handler",
			"--src", repoPath(t, "examples/python/hello"))
		resp := invokeCLI(t, n, "hello", "-p", "name:Ada", "-o")
		if !strings.Contains(resp.Output, "greeting Ada") {
			t.Errorf("python Output %q; want it to hold what the function printed", resp.Output)
		}
		if quiet := invokeCLI(t, n, "hello", "-p", "name:Ada"); quiet.Output != "" {
			t.Errorf("python Output %q without -o; want none", quiet.Output)
		}
	})

	t.Run("output-nodejs", func(t *testing.T) {
		requireImage(t, nodejsImage)
		createCLI(t, n, "hellojs", "--runtime", "nodejs", "--handler", "hello.js",
			"--src", repoPath(t, "examples/nodejs/hello"))
		resp := invokeCLI(t, n, "hellojs", "-p", "name:Ada", "-o")
		if !strings.Contains(resp.Output, "greeting Ada") {
			t.Errorf("nodejs Output %q; want it to hold what the function printed", resp.Output)
		}
	})

	t.Run("error", func(t *testing.T) {
		createCLI(t, n, "fail", "--runtime", "python", "--handler", "fail.handler",
			"--src", sourceDir(t, map[string]string{"fail.py": failPy}))
		res := cli(t, n, "invoke", "-f", "fail", "-p", "n:7")
		if res.Code == 0 || !strings.Contains(res.Stderr, "ValueError") || !strings.Contains(res.Stderr, "boom 7") {
			t.Fatalf("invoke of a raising function: exit %d, stderr %q; want non-zero and the error", res.Code, res.Stderr)
		}
		// The container survives a function error and serves the next call.
		res = cli(t, n, "invoke", "-f", "fail", "-p", "n:8")
		if res.Code == 0 || !strings.Contains(res.Stderr, "boom 8") {
			t.Fatalf("second invoke of a raising function: exit %d, stderr %q", res.Code, res.Stderr)
		}
	})

	t.Run("error-nodejs", func(t *testing.T) {
		requireImage(t, nodejsImage)
		createCLI(t, n, "failjs", "--runtime", "nodejs", "--handler", "fail.js",
			"--src", sourceDir(t, map[string]string{"fail.js": failJS}))
		res := cli(t, n, "invoke", "-f", "failjs", "-p", "n:3")
		if res.Code == 0 || !strings.Contains(res.Stderr, "kaput 3") {
			t.Fatalf("invoke of a throwing function: exit %d, stderr %q; want non-zero and the error", res.Code, res.Stderr)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		createCLI(t, n, "loop", "--runtime", "python", "--handler", "loop.handler", "--timeout", "1",
			"--src", sourceDir(t, map[string]string{"loop.py": loopPy}))
		if first := invokeCLI(t, n, "loop"); first.Result != `"done"` {
			t.Fatalf("invoke without looping: Result %s", first.Result)
		}
		before := nodeContainers(t, n, "loop")
		if len(before) != 1 {
			t.Fatalf("%d containers of loop after one invocation; want 1", len(before))
		}

		code, body, err := invokeHTTP(n, "loop", map[string]any{"loop": true})
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusGatewayTimeout || !strings.Contains(string(body), "timeout") {
			t.Fatalf("looping invoke: %d %q; want 504 saying it timed out", code, body)
		}
		res := cli(t, n, "invoke", "-f", "loop", "-p", "loop:true")
		if res.Code == 0 || !strings.Contains(res.Stderr, "504") {
			t.Fatalf("looping invoke through the CLI: exit %d, stderr %q; want non-zero and 504", res.Code, res.Stderr)
		}

		next := invokeCLI(t, n, "loop")
		if next.Result != `"done"` || next.IsWarmStart {
			t.Fatalf("invoke after the timeouts: Result %s, IsWarmStart %v; want \"done\" from a new container", next.Result, next.IsWarmStart)
		}
		eventually(t, 20*time.Second, "the timed-out containers are still there", func() bool {
			ids := nodeContainers(t, n, "loop")
			return len(ids) == 1 && ids[0] != before[0]
		})
	})
}

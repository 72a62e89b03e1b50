package main

import (
	"net"
	"strings"
	"testing"
)

// readNode answers the read commands like a node would.
func readNode(t *testing.T) *fakeNode {
	t.Helper()
	return newFakeNode(t, map[string]reply{
		"GET /function":       {200, `["hello","isprime"]`},
		"GET /function/hello": {200, `{"Name":"hello","Runtime":"python","MemoryMB":128,"CPUDemand":0,"Handler":"hello.handler","Version":"0123abcd","AllowedZones":["edge-rome","cloud"]}`},
		"GET /status": {200, `{"Url":"http://127.0.0.1:1323","AvailableWarmContainers":{"hello":2,"isprime":1},"AvailableMemMB":768,"AvailableCPUs":1.5,"DropCount":3,` +
			`"Coordinates":{"X":[0,0]},"NodeId":"edge1","Area":"lab","Cloud":false,"BusyContainers":{"hello":1},"QueueLength":0,"PoolMemoryMB":1024,"PoolCPUs":2}`},
	})
}

// JSON output exactly as the CLI printed it before --output existed, so that
// scripts reading it keep working.
const (
	listJSON = "[\n  \"hello\",\n  \"isprime\"\n]\n"
	// describeJSON prints the definition's fields in the order of the
	// node's function type.
	describeJSON = `{
  "Name": "hello",
  "Runtime": "python",
  "MemoryMB": 128,
  "CPUDemand": 0,
  "Handler": "hello.handler",
  "AllowedZones": [
    "edge-rome",
    "cloud"
  ],
  "Version": "0123abcd"
}
`
)

// TestOutputJSONWhenNotATerminal checks that list and describe print the
// same bytes as before when stdout is not a terminal, with and without
// -o json.
func TestOutputJSONWhenNotATerminal(t *testing.T) {
	node := readNode(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list"}, listJSON},
		{[]string{"list", "-o", "json"}, listJSON},
		{[]string{"describe", "hello"}, describeJSON},
		{[]string{"describe", "-f", "hello", "--output", "json"}, describeJSON},
	} {
		res := runCLI(t, nil, append(tc.args, node.flags()...)...)
		if res.code != 0 || res.stdout != tc.want {
			t.Errorf("%v: exit %d, stdout\n%s\nwant\n%s(stderr %q)", tc.args, res.code, res.stdout, tc.want, res.stderr)
		}
	}
	res := runCLI(t, nil, append([]string{"status"}, node.flags()...)...)
	if res.code != 0 || !strings.HasPrefix(res.stdout, "{\n  \"Url\": \"http://127.0.0.1:1323\",\n  \"AvailableWarmContainers\": {\n    \"hello\": 2,") {
		t.Errorf("status: exit %d, stdout\n%s", res.code, res.stdout)
	}
	jsonEqual(t, []byte(res.stdout), `{"Url":"http://127.0.0.1:1323","AvailableWarmContainers":{"hello":2,"isprime":1},"AvailableMemMB":768,"AvailableCPUs":1.5,"DropCount":3,`+
		`"Coordinates":{"X":[0,0],"Height":0,"Error":0},"NodeId":"edge1","Area":"lab","Cloud":false,"BusyContainers":{"hello":1},"QueueLength":0,"PoolMemoryMB":1024,"PoolCPUs":2}`)
}

func TestOutputTable(t *testing.T) {
	node := readNode(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "-o", "table"}, "NAME\nhello\nisprime\n"},
		{[]string{"describe", "-f", "hello", "-o", "table"}, "" +
			"FIELD         VALUE\n" +
			"Name          hello\n" +
			"Runtime       python\n" +
			"MemoryMB      128\n" +
			"CPUDemand     0\n" +
			"Handler       hello.handler\n" +
			"AllowedZones  edge-rome, cloud\n" +
			"Version       0123abcd\n"},
	} {
		res := runCLI(t, nil, append(tc.args, node.flags()...)...)
		if res.code != 0 || res.stdout != tc.want {
			t.Errorf("%v: exit %d, stdout\n%s\nwant\n%s(stderr %q)", tc.args, res.code, res.stdout, tc.want, res.stderr)
		}
	}
	res := runCLI(t, nil, append([]string{"status", "--output", "table"}, node.flags()...)...)
	for _, row := range []string{
		"FIELD                    VALUE\n",
		"Url                      http://127.0.0.1:1323\n",
		"AvailableWarmContainers  hello=2, isprime=1\n",
		"AvailableMemMB           768\n",
		"DropCount                3\n",
		"BusyContainers           hello=1\n",
		"Cloud                    false\n",
	} {
		if res.code != 0 || !strings.Contains(res.stdout, row) {
			t.Errorf("status table: exit %d, lacks row %q:\n%s", res.code, row, res.stdout)
		}
	}
}

func TestOutputBadFormatSendsNothing(t *testing.T) {
	node := readNode(t)
	for _, args := range [][]string{{"list", "-o", "yaml"}, {"status", "--output="}, {"describe", "hello", "-o", "TABLE"}} {
		res := runCLI(t, nil, append(args, node.flags()...)...)
		if res.code != exitError || !strings.Contains(res.stderr, "want table or json") {
			t.Errorf("%v: exit %d, stderr %q", args, res.code, res.stderr)
		}
	}
	if reqs := node.requests(); len(reqs) != 0 {
		t.Errorf("bad --output sent %d requests: %+v", len(reqs), reqs)
	}
}

// completions runs the CLI's hidden __complete command and returns the
// candidates it prints (without the trailing directive line).
func completions(t *testing.T, args ...string) []string {
	t.Helper()
	res := runCLI(t, nil, append([]string{"__complete"}, args...)...)
	if res.code != 0 {
		t.Fatalf("__complete %v: exit %d, stderr %q", args, res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], ":") {
		t.Fatalf("__complete %v: no directive in %q", args, res.stdout)
	}
	return lines[:len(lines)-1]
}

func TestCompletionOfFunctionNames(t *testing.T) {
	node := readNode(t)
	flags := node.flags()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(append([]string{"invoke"}, flags...), "-f", ""), "hello isprime"},
		{append(append([]string{"invoke"}, flags...), "--function", "is"), "isprime"},
		{append(append([]string{"describe"}, flags...), "h"), "hello"},
		{append(append([]string{"delete"}, flags...), ""), "hello isprime"},
		{append(append([]string{"prewarm"}, flags...), "-f", "hel"), "hello"},
		{append(append([]string{"update"}, flags...), "-f", ""), "hello isprime"},
		{append(append([]string{"describe", "hello"}, flags...), ""), ""},
		{append(append([]string{"list"}, flags...), "-o", ""), "table json"},
		{[]string{"create", "--runtime", ""}, "custom python nodejs"},
	} {
		if got := strings.Join(completions(t, tc.args...), " "); got != tc.want {
			t.Errorf("__complete %v = %q, want %q", tc.args, got, tc.want)
		}
	}
	// SERVERLEDGE_HOST/PORT choose the node for completion too.
	res := runCLI(t, []string{"SERVERLEDGE_HOST=127.0.0.1", "SERVERLEDGE_PORT=" + node.port()}, "__complete", "invoke", "-f", "")
	if !strings.HasPrefix(res.stdout, "hello\nisprime\n:") {
		t.Errorf("completion with the node from the environment: %q", res.stdout)
	}
}

// TestCompletionUnreachableNode completes nothing, successfully, when the
// node does not answer.
func TestCompletionUnreachableNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	if got := completions(t, "invoke", "-H", "127.0.0.1", "-P", port, "-f", ""); len(got) != 0 {
		t.Errorf("completions from an unreachable node: %q", got)
	}
}

// TestCompletionSilentNode completes nothing when the node accepts the
// connection but never answers: the query has a timeout.
func TestCompletionSilentNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	if got := completions(t, "invoke", "-H", "127.0.0.1", "-P", port, "-f", ""); len(got) != 0 {
		t.Errorf("completions from a silent node: %q", got)
	}
}

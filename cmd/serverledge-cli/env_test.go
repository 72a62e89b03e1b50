package main

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	got, err := parseEnv([]string{"A=1", "B==x=", "EMPTY=", "_u=ü"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "=x=", "EMPTY": "", "_u": "ü"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseEnv = %v, want %v", got, want)
	}
	if got, err := parseEnv(nil); err != nil || got != nil {
		t.Errorf("parseEnv(nil) = %v, %v; want nil, nil", got, err)
	}
	for _, bad := range [][]string{{"A"}, {"=v"}, {"1A=x"}, {"A-B=x"}, {"PATH=/tmp"}, {"SERVERLEDGE_X=1"}, {"A=1", "A=2"}, {"A=x\x00"}} {
		if _, err := parseEnv(bad); err == nil {
			t.Errorf("parseEnv(%q) accepted", bad)
		}
	}
}

// TestCreateSendsEnvAndUpstreamFields checks --env, --max-concurrency and
// --arch reach the definition the CLI sends.
func TestCreateSendsEnvAndUpstreamFields(t *testing.T) {
	work := t.TempDir()
	mustWrite(t, filepath.Join(work, "hello.py"), "def handler(params, context):\n    return 'hi'\n")
	node := newFakeNode(t, map[string]reply{"POST /create": {200, `{"Created":"hello"}`}})
	res := runCLI(t, nil, append([]string{"create", "-f", "hello", "--runtime", "python", "--handler", "hello.handler",
		"--src", filepath.Join(work, "hello.py"), "--env", "GREETING=hi there", "--env", "URL=http://x/?a=b",
		"--max-concurrency", "8", "--arch", "amd64", "--arch", "arm64"}, node.flags()...)...)
	if res.code != 0 {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	var body map[string]any
	if err := json.Unmarshal(node.only(t).body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Env":            map[string]any{"GREETING": "hi there", "URL": "http://x/?a=b"},
		"MaxConcurrency": 8.0,
		"SupportedArchs": []any{"amd64", "arm64"},
	}
	for k, w := range want {
		if !reflect.DeepEqual(body[k], w) {
			t.Errorf("%s = %#v, want %#v", k, body[k], w)
		}
	}
}

// TestBadEnvFlagSendsNothing checks a bad --env fails before any request.
func TestBadEnvFlagSendsNothing(t *testing.T) {
	work := t.TempDir()
	mustWrite(t, filepath.Join(work, "hello.py"), "def handler(p, c):\n    return 1\n")
	for _, tc := range []struct{ cmd, env, msg string }{
		{"create", "NOVALUE", "NAME=value"},
		{"create", "=x", "NAME=value"},
		{"create", "9LIVES=x", "Env name"},
		{"create", "PATH=/tmp", "reserved"},
		{"update", "A-B=x", "Env name"},
	} {
		t.Run(tc.cmd+" "+tc.env, func(t *testing.T) {
			node := newFakeNode(t, map[string]reply{
				"GET /function/hello": {200, `{"Name":"hello","Runtime":"python","MemoryMB":128,"CPUDemand":0,"Handler":"hello.handler"}`},
				"POST /create":        {200, `{"Created":"hello"}`},
				"POST /update":        {200, `{"Updated":"hello"}`},
			})
			args := []string{tc.cmd, "-f", "hello", "--src", filepath.Join(work, "hello.py"), "--env", tc.env}
			if tc.cmd == "create" {
				args = append(args, "--runtime", "python", "--handler", "hello.handler")
			}
			res := runCLI(t, nil, append(args, node.flags()...)...)
			if res.code == 0 || !strings.Contains(res.stderr, tc.msg) || !strings.Contains(res.stderr, "--env") {
				t.Errorf("exit %d, stderr %q; want a failure naming --env and %q", res.code, res.stderr, tc.msg)
			}
			if n := len(node.requests()); n != 0 {
				t.Errorf("node received %d requests, want none", n)
			}
		})
	}
}

// TestUpdateKeepsOrReplacesEnv checks update keeps the current Env and the
// upstream fields unless their flags are given; --env replaces the set.
func TestUpdateKeepsOrReplacesEnv(t *testing.T) {
	work := t.TempDir()
	mustWrite(t, filepath.Join(work, "hello.py"), "def handler(p, c):\n    return 1\n")
	current := `{"Name":"hello","Runtime":"python","MemoryMB":128,"CPUDemand":0,"Handler":"hello.handler",` +
		`"MaxConcurrency":3,"SupportedArchs":["arm64"],"Signature":{"Inputs":[{"Name":"n","Type":"Int"}],"Outputs":[]},"Env":{"A":"1","B":"2"}}`
	for _, tc := range []struct {
		name  string
		flags []string
		want  map[string]any
	}{
		{"no flags keep everything", nil, map[string]any{
			"Env": map[string]any{"A": "1", "B": "2"}, "MaxConcurrency": 3.0, "SupportedArchs": []any{"arm64"},
			"Signature": map[string]any{"Inputs": []any{map[string]any{"Name": "n", "Type": "Int"}}, "Outputs": []any{}},
		}},
		{"--env replaces the set", []string{"--env", "C=3", "--max-concurrency", "1", "--arch", "amd64"}, map[string]any{
			"Env": map[string]any{"C": "3"}, "MaxConcurrency": 1.0, "SupportedArchs": []any{"amd64"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := newFakeNode(t, map[string]reply{
				"GET /function/hello": {200, current},
				"POST /update":        {200, `{"Updated":"hello"}`},
			})
			args := append([]string{"update", "-f", "hello", "--src", filepath.Join(work, "hello.py")}, tc.flags...)
			res := runCLI(t, nil, append(args, node.flags()...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			reqs := node.requests()
			if len(reqs) != 2 {
				t.Fatalf("requests %+v, want GET then POST /update", reqs)
			}
			var body map[string]any
			if err := json.Unmarshal(reqs[1].body, &body); err != nil {
				t.Fatal(err)
			}
			for k, w := range tc.want {
				if !reflect.DeepEqual(body[k], w) {
					t.Errorf("%s = %#v, want %#v", k, body[k], w)
				}
			}
		})
	}
}

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// FuzzRequests sends fuzzed bodies to /create, /update and /invoke of a
// real API server over HTTP: no reply is a 5xx, and a refused request
// changes nothing in the registry.
func FuzzRequests(f *testing.F) {
	n := newTestNode(f, nodeOpts{maxBody: 1 << 20})
	good := helloDef(f, "hello.echo")
	goodBody, err := json.Marshal(good)
	if err != nil {
		f.Fatal(err)
	}
	otherBody, err := json.Marshal(with(good, "Name", "other"))
	if err != nil {
		f.Fatal(err)
	}
	if code, body := n.do(f, "POST", "/create", string(goodBody)); code != 200 {
		f.Fatalf("create: %d %s", code, body)
	}
	f.Add(uint8(0), otherBody)
	f.Add(uint8(1), goodBody)
	f.Add(uint8(0), []byte(`{"Name": "x", "Runtime": "python", "Handler": "x.y", "TarFunctionCode": "H4sIAAAAAAAA"}`))
	f.Add(uint8(0), []byte(`{"Name": "c", "Runtime": "custom", "CustomImage": "a:b@sha256:00"}`))
	f.Add(uint8(2), []byte(`{"Params": {"a": [1, 2, {"b": null}]}, "QoSClass": 1}`))
	f.Add(uint8(2), []byte(`{"Params": `+strings.Repeat(`[`, 100)+strings.Repeat(`]`, 100)+`}`))
	f.Add(uint8(2), []byte(``))
	paths := []string{"/create", "/update", "/invoke/hello"}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		ctx := context.Background()
		before, err := n.reg.ListFunctions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hello, err := n.reg.GetFunction(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		path := paths[int(which)%len(paths)]
		req, err := http.NewRequest("POST", n.url+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var reply bytes.Buffer
		_, _ = reply.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %q: %d %s", path, body, resp.StatusCode, reply.String())
		}
		after, err := n.reg.ListFunctions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			now, err := n.reg.GetFunction(ctx, "hello")
			slices.Sort(before)
			slices.Sort(after)
			if err != nil || now.Version != hello.Version || !slices.Equal(before, after) {
				t.Fatalf("refused %s (%d) changed the registry: %v -> %v", path, resp.StatusCode, before, after)
			}
		}
		for _, name := range after {
			if name != "hello" {
				_ = n.reg.DeleteFunction(ctx, name)
			}
		}
	})
}

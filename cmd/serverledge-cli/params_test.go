package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseClass(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"low", 0, false},
		{"0", 0, false},
		{"performance", 1, false},
		{"Performance", 1, false},
		{"1", 1, false},
		{"availability", 2, false},
		{"2", 2, false},
		{"", 0, true},
		{"3", 0, true},
		{"-1", 0, true},
		{"fast", 0, true},
	}
	for _, tc := range tests {
		got, err := parseClass(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseClass(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("parseClass(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseParam(t *testing.T) {
	tests := []struct {
		in        string
		wantName  string
		wantValue any
		wantErr   bool
	}{
		{"n:17", "n", json.Number("17"), false},
		{"big:12345678901234567890", "big", json.Number("12345678901234567890"), false},
		{"x:2.5", "x", json.Number("2.5"), false},
		{"b:true", "b", true, false},
		{"b:false", "b", false, false},
		{"name:Ada", "name", "Ada", false},
		{"quoted:\"17\"", "quoted", "17", false},
		{"url:http://example.com:80/x", "url", "http://example.com:80/x", false},
		{"empty:", "empty", "", false},
		{"words:hello world", "words", "hello world", false},
		{"list:[1,2]", "list", []any{json.Number("1"), json.Number("2")}, false},
		{"obj:{\"a\":true}", "obj", map[string]any{"a": true}, false},
		{"noColon", "", nil, true},
		{":value", "", nil, true},
	}
	for _, tc := range tests {
		name, value, err := parseParam(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseParam(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if name != tc.wantName || !reflect.DeepEqual(value, tc.wantValue) {
			t.Errorf("parseParam(%q) = %q, %#v; want %q, %#v", tc.in, name, value, tc.wantName, tc.wantValue)
		}
	}
}

func TestBuildParams(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "params.json")
	if err := os.WriteFile(good, []byte(`{"n": 10, "name": "file", "keep": [1]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	array := filepath.Join(dir, "array.json")
	if err := os.WriteFile(array, []byte(`[1, 2]`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte(`{"n": `), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		params  []string
		want    string
		wantErr bool
	}{
		{"nothing gives an empty object", "", nil, `{}`, false},
		{"params only", "", []string{"n:3", "s:x"}, `{"n":3,"s":"x"}`, false},
		{"a param overrides the file", good, []string{"name:flag"}, `{"keep":[1],"n":10,"name":"flag"}`, false},
		{"later param wins", "", []string{"n:1", "n:2"}, `{"n":2}`, false},
		{"file not an object", array, nil, "", true},
		{"file not JSON", broken, nil, "", true},
		{"missing file", filepath.Join(dir, "none.json"), nil, "", true},
		{"bad param", "", []string{"oops"}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := buildParams(tc.file, tc.params)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("params = %s, want %s", b, tc.want)
			}
		})
	}
}

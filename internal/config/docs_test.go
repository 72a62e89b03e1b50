package config

import (
	"os"
	"strings"
	"testing"
)

// docRow is the row of the key table in docs/configuration.md that documents k.
func docRow(k *keyDef) string {
	return "| `" + k.name + "` | " + k.typ + " | " + k.docDefault() + " | " + k.doc + " |"
}

// TestDocsListEveryKey checks docs/configuration.md against the key table:
// every key has a row with its type, default and meaning, and no row
// documents a key that does not exist.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		rows[name] = strings.TrimSpace(line)
	}
	for i := range keys {
		k := &keys[i]
		want := docRow(k)
		got, ok := rows[k.name]
		switch {
		case !ok:
			t.Errorf("docs/configuration.md has no row for %s; add:\n%s", k.name, want)
		case got != want:
			t.Errorf("docs/configuration.md row for %s is out of date:\n got %s\nwant %s", k.name, got, want)
		}
	}
	for name := range rows {
		if lookupKey(name) == nil {
			t.Errorf("docs/configuration.md documents %q, which is not a key", name)
		}
	}
}

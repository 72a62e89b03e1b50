package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// defaultSearchDirs returns the directories searched for FileName, in order.
func defaultSearchDirs(env func(string) (string, bool)) []string {
	dirs := []string{"/etc/serverledge"}
	if home, ok := env("HOME"); ok && home != "" {
		dirs = append(dirs, home)
	}
	return append(dirs, ".")
}

// findFile returns the first FileName found in the search directories, or "".
func (l *loader) findFile() string {
	for _, dir := range l.searchDirs {
		p := filepath.Join(dir, FileName)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	return ""
}

// readFile applies the keys of the YAML file at path. A file that cannot be
// read or parsed is returned as an error; problems with single keys are
// recorded in s so that every one of them is reported.
func readFile(s *state, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &KeyError{Key: "config", Kind: ErrConfigFile, Msg: "cannot read configuration file: " + err.Error(), Cause: err}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &KeyError{Key: "config", Kind: ErrConfigFile, Msg: fmt.Sprintf("%s is not valid YAML: %v", path, err), Cause: err}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file or only comments
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return &KeyError{Key: "config", Kind: ErrConfigFile, Msg: fmt.Sprintf("%s:%d: the top level must be a mapping of keys to values", path, root.Line)}
	}

	f := &flattener{path: path, s: s, valueLine: map[string]int{}, sectionLine: map[string]int{}}
	f.mapping(root, "")
	f.checkConflicts()
	for _, e := range f.entries {
		src := fmt.Sprintf("file %s:%d", path, e.line)
		k := lookupKey(e.key)
		if k == nil {
			s.fail(e.key, src, ErrUnknownKey, unknownKeyMsg(e.key))
			continue
		}
		s.set(k, e.raw, src)
	}
	return nil
}

// fileEntry is one flattened key of the file.
type fileEntry struct {
	key  string
	raw  string
	line int
}

// flattener turns nested YAML mappings into flat dotted keys.
type flattener struct {
	path    string
	s       *state
	entries []fileEntry
	// valueLine is the line where each flat key got a value.
	valueLine map[string]int
	// sectionLine is the first line where each key was used as a nested mapping.
	sectionLine map[string]int
}

func (f *flattener) src(line int) string {
	return fmt.Sprintf("file %s:%d", f.path, line)
}

func (f *flattener) add(key, raw string, line int) {
	if prev, ok := f.valueLine[key]; ok {
		f.s.fail(key, f.src(line), ErrConfigFile, fmt.Sprintf("given twice in the file (lines %d and %d)", prev, line))
		return
	}
	f.valueLine[key] = line
	f.entries = append(f.entries, fileEntry{key: key, raw: raw, line: line})
}

func (f *flattener) mapping(n *yaml.Node, prefix string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], resolve(n.Content[i+1])
		if kn.Kind != yaml.ScalarNode || kn.Value == "" {
			f.s.fail(orConfig(prefix), f.src(kn.Line), ErrConfigFile, "keys must be non-empty names")
			continue
		}
		key := strings.ToLower(strings.TrimSpace(kn.Value))
		if prefix != "" {
			key = prefix + "." + key
		}
		k := lookupKey(key)
		switch vn.Kind {
		case yaml.MappingNode:
			if k != nil && k.typ == typeMap {
				raw, err := mapValue(vn)
				if err != nil {
					f.s.fail(key, f.src(kn.Line), ErrInvalidValue, err.Error())
					continue
				}
				f.add(key, raw, kn.Line)
				continue
			}
			if _, ok := f.sectionLine[key]; !ok {
				f.sectionLine[key] = kn.Line
			}
			f.mapping(vn, key)
		case yaml.SequenceNode:
			if k == nil {
				f.s.fail(key, f.src(kn.Line), ErrUnknownKey, unknownKeyMsg(key))
				continue
			}
			raw, err := listValue(vn)
			if err != nil || k.typ != typeList {
				f.s.fail(key, f.src(kn.Line), ErrInvalidValue, fmt.Sprintf("expected a value of type %s, got a list", k.typ))
				continue
			}
			f.add(key, raw, kn.Line)
		default:
			f.add(key, scalarValue(vn), kn.Line)
		}
	}
}

// checkConflicts reports keys that have a value and are also a nested
// mapping, such as "cloud: true" next to "cloud: {server: {url: ...}}".
func (f *flattener) checkConflicts() {
	var conflicts []string
	for key := range f.sectionLine {
		if _, ok := f.valueLine[key]; ok {
			conflicts = append(conflicts, key)
		}
	}
	slices.Sort(conflicts)
	for _, key := range conflicts {
		var example string
		for _, e := range f.entries {
			if strings.HasPrefix(e.key, key+".") {
				example = e.key
				break
			}
		}
		msg := fmt.Sprintf("has a value (line %d) and is also a nested mapping (line %d); a key that is both a value and a prefix must be written with flat dotted keys",
			f.valueLine[key], f.sectionLine[key])
		if example != "" {
			msg += fmt.Sprintf(", e.g. %q and %q", key+": ...", example+": ...")
		}
		f.s.fail(key, f.src(f.sectionLine[key]), ErrConfigFile, msg)
	}
}

func orConfig(prefix string) string {
	if prefix == "" {
		return "config"
	}
	return prefix
}

// resolve follows YAML aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// scalarValue returns the text of a scalar; null is the empty string.
func scalarValue(n *yaml.Node) string {
	if n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

// listValue joins a sequence of scalars with commas.
func listValue(n *yaml.Node) (string, error) {
	parts := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		item = resolve(item)
		if item.Kind != yaml.ScalarNode {
			return "", fmt.Errorf("list items must be plain values")
		}
		parts = append(parts, scalarValue(item))
	}
	return strings.Join(parts, ","), nil
}

// mapValue turns a mapping of scalars into "key:value,key:value".
func mapValue(n *yaml.Node) (string, error) {
	parts := make([]string, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := resolve(n.Content[i]), resolve(n.Content[i+1])
		if kn.Kind != yaml.ScalarNode || vn.Kind != yaml.ScalarNode {
			return "", fmt.Errorf("expected a mapping of runtime names to counts (line %d)", kn.Line)
		}
		parts = append(parts, kn.Value+":"+scalarValue(vn))
	}
	return strings.Join(parts, ","), nil
}

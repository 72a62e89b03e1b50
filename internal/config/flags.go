package config

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// flagSetting is one key given on the command line.
type flagSetting struct {
	name  string
	value string
}

// rawValue is a pflag.Value that keeps the last string it was given, so that
// parsing and error messages are the same for flags, files and environment.
type rawValue struct {
	typ   string
	value string
}

func (v *rawValue) String() string     { return v.value }
func (v *rawValue) Type() string       { return v.typ }
func (v *rawValue) Set(s string) error { v.value = s; return nil }

// newFlagSet defines --<key> for every key and --config.
func newFlagSet() (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet("serverledge", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	for i := range keys {
		k := &keys[i]
		f := fs.VarPF(&rawValue{typ: k.typ}, k.name, "", k.doc)
		if k.typ == typeBool {
			f.NoOptDefVal = "true"
		}
	}
	path := fs.String("config", "", "configuration file (also the first positional argument)")
	return fs, path
}

// parseArgs returns the keys set on the command line, in key-table order, and
// the configuration file named by --config or the positional argument.
func parseArgs(args []string) ([]flagSetting, string, error) {
	fs, path := newFlagSet()
	if err := fs.Parse(args); err != nil {
		return nil, "", flagError(err)
	}

	pos := fs.Args()
	switch {
	case len(pos) > 1:
		return nil, "", &KeyError{Key: "config", Source: "command line", Kind: ErrConfigFile,
			Msg: fmt.Sprintf("only one configuration file may be given, got %q", pos)}
	case len(pos) == 1 && *path != "" && pos[0] != *path:
		return nil, "", &KeyError{Key: "config", Source: "command line", Kind: ErrConfigFile,
			Msg: fmt.Sprintf("configuration file given twice: %q as argument and %q with --config", pos[0], *path)}
	case len(pos) == 1:
		*path = pos[0]
	}
	if fs.Changed("config") && *path == "" {
		return nil, "", &KeyError{Key: "config", Source: "flag --config", Kind: ErrConfigFile, Msg: "empty file name"}
	}

	var out []flagSetting
	for i := range keys {
		if f := fs.Lookup(keys[i].name); f != nil && f.Changed {
			out = append(out, flagSetting{name: f.Name, value: f.Value.String()})
		}
	}
	return out, *path, nil
}

// flagError turns a pflag error into a KeyError naming the key.
func flagError(err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return ErrHelp
	}
	var notExist *pflag.NotExistError
	if errors.As(err, &notExist) {
		if short := notExist.GetSpecifiedShortnames(); short != "" {
			name := strings.SplitN(short, "=", 2)[0]
			return &KeyError{Key: name, Source: "flag -" + short, Kind: ErrUnknownKey,
				Msg: fmt.Sprintf("flags take two dashes (--%s)", name)}
		}
		name := notExist.GetSpecifiedName()
		return &KeyError{Key: name, Source: "flag --" + name, Kind: ErrUnknownKey, Msg: unknownKeyMsg(name)}
	}
	var needsValue *pflag.ValueRequiredError
	if errors.As(err, &needsValue) {
		name := needsValue.GetSpecifiedName()
		return &KeyError{Key: name, Source: "flag --" + name, Kind: ErrInvalidValue, Msg: "no value given"}
	}
	return &KeyError{Key: "config", Source: "command line", Kind: ErrInvalidValue, Msg: err.Error(), Cause: err}
}

// Usage returns the --help text: how to run the node and every key with
// its type, default and meaning.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: serverledge [config-file] [--config file] [--<key>=<value> ...]\n\n")
	b.WriteString("Sources, lowest to highest precedence: defaults, the YAML file, environment\n")
	b.WriteString("variables (" + EnvPrefix + "<KEY>, dots as underscores), flags.\n")
	b.WriteString("Without a file argument, " + FileName + " is searched in /etc/serverledge,\n")
	b.WriteString("$HOME and the working directory. Durations are seconds or Go durations (1m30s).\n\n")
	b.WriteString("Keys:\n")
	for i := range keys {
		k := &keys[i]
		fmt.Fprintf(&b, "  --%s %s\n", k.name, k.typ)
		fmt.Fprintf(&b, "        %s\n", stripBackquotes(k.doc))
		fmt.Fprintf(&b, "        default: %s; env: %s\n", stripBackquotes(k.docDefault()), envName(k.name))
	}
	return b.String()
}

func stripBackquotes(s string) string {
	return strings.ReplaceAll(s, "`", "")
}

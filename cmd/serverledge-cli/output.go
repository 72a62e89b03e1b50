package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
)

// Output formats of --output.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// outputFormat is the value of --output: "" (the default: table on a
// terminal, JSON otherwise), outputTable or outputJSON.
type outputFormat string

// String implements pflag.Value.
func (o *outputFormat) String() string { return string(*o) }

// Set implements pflag.Value; it refuses anything but table and json, so a
// bad value fails before the node is asked.
func (o *outputFormat) Set(v string) error {
	switch v {
	case outputTable, outputJSON:
		*o = outputFormat(v)
		return nil
	}
	return fmt.Errorf("want %s or %s", outputTable, outputJSON)
}

// Type implements pflag.Value.
func (o *outputFormat) Type() string { return "format" }

// withOutput gives cmd the -o/--output flag, which callAndPrint honours.
func withOutput(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().VarP(new(outputFormat), "output", "o", "output format: table or json (default: table on a terminal, json otherwise)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// print writes v in the format cmd's --output asks for; commands without
// the flag print JSON.
func (c *cli) print(cmd *cobra.Command, v any) error {
	format := outputJSON
	if f := cmd.Flags().Lookup("output"); f != nil {
		switch f.Value.String() {
		case outputTable:
			format = outputTable
		case "":
			if c.terminal {
				format = outputTable
			}
		}
	}
	if format == outputJSON {
		return c.printJSON(v)
	}
	return printTable(c.stdout, v)
}

// printTable writes v as a table: a list of names as one NAME column,
// anything else as one FIELD VALUE row per JSON field, in the order of the
// JSON reply.
func printTable(w io.Writer, v any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if names, ok := v.([]string); ok {
		fmt.Fprintln(tw, "NAME")
		for _, n := range names {
			fmt.Fprintln(tw, cell(n))
		}
		return tw.Flush()
	}
	fields, err := orderedFields(v)
	if err != nil {
		return err
	}
	fmt.Fprintln(tw, "FIELD\tVALUE")
	for _, f := range fields {
		fmt.Fprintf(tw, "%s\t%s\n", cell(f.name), f.value)
	}
	return tw.Flush()
}

// field is one top-level field of a JSON object, its value formatted.
type field struct {
	name, value string
}

// orderedFields encodes v as JSON and returns its top-level fields in order.
func orderedFields(v any) ([]field, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("table output needs a JSON object")
	}
	var fields []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var raw any
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		fields = append(fields, field{name: name, value: formatValue(raw, true)})
	}
	return fields, nil
}

// formatValue renders a decoded JSON value in one cell: scalars as they
// are, lists joined by commas, objects as sorted key=value pairs (at the
// top level; nested deeper, as compact JSON); missing and empty values
// as "-".
func formatValue(v any, top bool) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return cell(x)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		if len(x) == 0 {
			return "-"
		}
		if !top {
			return compactJSON(x)
		}
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatValue(e, false)
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		if len(x) == 0 {
			return "-"
		}
		if !top {
			return compactJSON(x)
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = cell(k) + "=" + formatValue(x[k], false)
		}
		return strings.Join(parts, ", ")
	}
	return compactJSON(v)
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// cell quotes s when it holds a character that does not print (a tab
// or a newline would break the table).
func cell(s string) string {
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

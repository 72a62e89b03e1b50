package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/serverledge/serverledge/internal/function"
)

// completionTimeout bounds the node query behind a completion, so that a
// shell never hangs on an unreachable node.
const completionTimeout = 2 * time.Second

// completeFunctions lists the names of the node's functions that start
// with toComplete, asking the node chosen by -H/-P or the environment.
// An unreachable node completes nothing.
func (c *cli) completeFunctions(cmd *cobra.Command, toComplete string) ([]string, cobra.ShellCompDirective) {
	cl, err := c.client(cmd)
	if err != nil {
		cobra.CompDebugln(err.Error(), true)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	names, err := cl.List(ctx)
	if err != nil {
		cobra.CompDebugln("listing functions: "+err.Error(), true)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, toComplete) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeFunctionNames makes cmd complete the names of existing functions
// for -f/--function and for its one positional argument.
func (c *cli) completeFunctionNames(cmd *cobra.Command) *cobra.Command {
	cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 || cmd.Flags().Changed("function") {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return c.completeFunctions(cmd, toComplete)
	}
	_ = cmd.RegisterFlagCompletionFunc("function", func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return c.completeFunctions(cmd, toComplete)
	})
	return cmd
}

// completeRuntimes makes cmd complete --runtime with the built-in runtimes.
func completeRuntimes(cmd *cobra.Command) {
	names := []string{function.RuntimeCustom}
	for _, r := range function.BuiltinRuntimes() {
		names = append(names, r.Name)
	}
	_ = cmd.RegisterFlagCompletionFunc("runtime", cobra.FixedCompletions(names, cobra.ShellCompDirectiveNoFileComp))
}

// Command serverledge-cli is the command-line client of a Serverledge node:
// it creates, updates, deletes, lists, describes, invokes and prewarms
// functions, polls asynchronous results and prints a node's status.
//
// The node is chosen with -H/--host and -P/--port, or the environment
// variables SERVERLEDGE_HOST and SERVERLEDGE_PORT; flags win over the
// environment. See docs/cli.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/serverledge/serverledge/internal/client"
)

// Exit codes.
const (
	// exitError is used for every failure: a bad flag, an unreachable node,
	// an error reply, or a function that reported Success false.
	exitError = 1
	// exitPending is used by poll for a request that is still running.
	exitPending = 3
)

// exitCodeError carries a specific exit code; its message, when not empty,
// is printed to stderr.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run executes the CLI with args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRootCmd(stdout, stderr, getenv)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		if ec.msg != "" {
			fmt.Fprintln(stderr, "Error:", ec.msg)
		}
		return ec.code
	}
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Fprintf(stderr, "Error: %s (HTTP %d)\n", apiErr.Error(), apiErr.StatusCode)
		return exitError
	}
	fmt.Fprintln(stderr, "Error:", err)
	return exitError
}

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runOnTerminal runs the built CLI with its stdout on a new pseudo
// terminal and returns what it printed there (line ends as "\n") and its
// exit code.
func runOnTerminal(t *testing.T, args ...string) (string, int) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo terminal: %v", err)
	}
	defer master.Close()
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pseudo terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("naming the pseudo terminal: %v", err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening the terminal side: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, args...)
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = slave, &stderr
	err = cmd.Start()
	slave.Close()
	if err != nil {
		t.Fatalf("starting the CLI: %v", err)
	}
	// The terminal side is closed once the CLI exits: reading then ends
	// with EIO.
	out, readErr := io.ReadAll(master)
	var pathErr *os.PathError
	if readErr != nil && !(errors.As(readErr, &pathErr) && errors.Is(pathErr.Err, unix.EIO)) {
		t.Fatalf("reading the terminal: %v", readErr)
	}
	code := 0
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running the CLI: %v", err)
		}
		code = ee.ExitCode()
	}
	if stderr.Len() > 0 {
		t.Logf("stderr: %s", stderr.String())
	}
	return strings.ReplaceAll(string(out), "\r\n", "\n"), code
}

// TestOutputTableOnTerminal runs the CLI with its stdout on a pseudo
// terminal: table is the default there.
func TestOutputTableOnTerminal(t *testing.T) {
	node := readNode(t)
	out, code := runOnTerminal(t, append([]string{"list"}, node.flags()...)...)
	if code != 0 || out != "NAME\nhello\nisprime\n" {
		t.Errorf("list on a terminal: exit %d, stdout %q", code, out)
	}
	out, code = runOnTerminal(t, append([]string{"list", "-o", "json"}, node.flags()...)...)
	if code != 0 || out != listJSON {
		t.Errorf("list -o json on a terminal: exit %d, stdout %q", code, out)
	}
}

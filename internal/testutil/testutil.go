// Package testutil holds small helpers shared by the tests, test doubles and
// benchmarks of several packages: free loopback ports, a goroutine-safe
// output buffer, polling until a condition holds, and child processes that
// are stopped by their pid.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago. They are found by binding and releasing them, so another process may
// take one before the caller does.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			return nil, fmt.Errorf("unexpected listener address %v", l.Addr())
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}

// SyncBuffer is a bytes.Buffer that several goroutines may write and read
// at once, such as the stdout and stderr of a process. Its zero value is an
// empty buffer ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what has been written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitUntil polls cond every 50 ms until it holds, and fails the test,
// naming what was awaited, once timeout has passed.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

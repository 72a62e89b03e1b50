package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/testutil"
)

// ErrOutOfMemory is returned by Call.Alloc past the container's memory limit;
// the invocation then fails with ErrCrashed whatever the func returns.
var ErrOutOfMemory = errors.New("out of memory")

// Func is a function the fake runs in place of code. Its result is
// JSON-encoded into InvokeResult.Result; a non-nil error is the function's
// own failure (Success false). A func should return when ctx is done (the
// invocation timed out or the container went away).
type Func func(ctx context.Context, call *Call) (any, error)

// Call is one invocation as seen by a Func.
type Call struct {
	// Params are the invocation's parameters.
	Params map[string]any
	// RequestID is the invocation's request id.
	RequestID string
	// Stdout collects the function's output; it is returned only when the
	// invocation asked for it.
	Stdout io.Writer
	// Env is the environment loaded into the container (LoadRequest.Env).
	Env map[string]string

	mu        sync.Mutex
	limitMB   int64
	allocated int64
	oom       chan struct{}
}

// Alloc accounts mb megabytes of memory to the invocation. Past the
// container's memory limit it returns ErrOutOfMemory and the invocation
// crashes, as the kernel's OOM killer would make it.
func (c *Call) Alloc(mb int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allocated += mb
	if c.limitMB > 0 && c.allocated > c.limitMB {
		select {
		case <-c.oom:
		default:
			close(c.oom)
		}
		return fmt.Errorf("%w: %d MB allocated, limit %d MB", ErrOutOfMemory, c.allocated, c.limitMB)
	}
	return nil
}

// outcome is what a Func produced.
type outcome struct {
	value    any
	err      error
	panicked any
}

// run executes fn for one invocation on c.
func (r *Runtime) run(ctx context.Context, c *fakeContainer, fn Func, memoryMB int64, req container.InvokeRequest) (container.InvokeResult, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &testutil.SyncBuffer{}
	call := &Call{
		Params:    req.Params,
		RequestID: req.RequestID,
		Stdout:    out,
		Env:       c.env,
		limitMB:   memoryMB,
		oom:       make(chan struct{}),
	}
	if call.Params == nil {
		call.Params = map[string]any{}
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- outcome{panicked: p}
			}
		}()
		v, err := fn(fctx, call)
		done <- outcome{value: v, err: err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	select {
	case o := <-done:
		select {
		case <-call.oom:
			return container.InvokeResult{}, r.crash(c, fmt.Sprintf("out of memory (limit %d MB)", memoryMB))
		default:
		}
		if o.panicked != nil {
			return container.InvokeResult{}, r.crash(c, fmt.Sprintf("function process died: %v", o.panicked))
		}
		return result(o, out, req.ReturnOutput, time.Since(start)), nil
	case <-call.oom:
		return container.InvokeResult{}, r.crash(c, fmt.Sprintf("out of memory (limit %d MB)", memoryMB))
	case <-timer.C:
		err := fmt.Errorf("invoke %s: %w after %s", c.id, container.ErrTimeout, timeout)
		r.retire(c, err)
		return container.InvokeResult{}, err
	case <-c.stop:
		return container.InvokeResult{}, r.stoppedErr(c, true)
	case <-ctx.Done():
		r.retire(c, fmt.Errorf("invoke interrupted: %w", ctx.Err()))
		return container.InvokeResult{}, fmt.Errorf("invoke %s: %w", c.id, ctx.Err())
	}
}

// result turns a func's outcome into an InvokeResult.
func result(o outcome, out *testutil.SyncBuffer, returnOutput bool, d time.Duration) container.InvokeResult {
	res := container.InvokeResult{Success: true, Duration: d}
	if returnOutput {
		res.Output = out.String()
	}
	if o.err != nil {
		res.Success = false
		res.Error = o.err.Error()
		return res
	}
	b, err := json.Marshal(o.value)
	if err != nil {
		res.Success = false
		res.Error = fmt.Sprintf("result is not JSON-encodable: %v", err)
		return res
	}
	res.Result = string(b)
	return res
}

// crash retires c after its function process died and returns ErrCrashed.
func (r *Runtime) crash(c *fakeContainer, why string) error {
	err := fmt.Errorf("invoke %s: %w: %s", c.id, container.ErrCrashed, why)
	r.retire(c, err)
	if strings.HasPrefix(why, "out of memory") {
		r.mu.Lock()
		r.emitLocked(c, container.EventOOM)
		r.mu.Unlock()
	}
	return err
}

func (r *Runtime) retire(c *fakeContainer, why error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.retired == nil {
		c.retired = why
	}
}

// Builtins returns the funcs every fake Runtime starts with, by handler:
//
//	echo   returns its parameters
//	print  writes Params["text"] (default "hello") to its output, returns "ok"
//	sleep  sleeps Params["ms"] milliseconds, returns its parameters
//	fail   fails with Params["message"] (default "function failed")
//	loop   never returns until the invocation times out
//	hog    allocates Params["mb"] (default 1024) megabytes, 1 MB at a time
func Builtins() map[string]Func {
	return map[string]Func{
		"echo": Echo,
		"print": func(_ context.Context, call *Call) (any, error) {
			text, ok := call.Params["text"].(string)
			if !ok {
				text = "hello"
			}
			fmt.Fprintln(call.Stdout, text)
			return "ok", nil
		},
		"sleep": func(ctx context.Context, call *Call) (any, error) {
			ms, _ := call.Params["ms"].(float64)
			t := time.NewTimer(time.Duration(ms * float64(time.Millisecond)))
			defer t.Stop()
			select {
			case <-t.C:
				return call.Params, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		"fail": func(_ context.Context, call *Call) (any, error) {
			msg, ok := call.Params["message"].(string)
			if !ok {
				msg = "function failed"
			}
			return nil, errors.New(msg)
		},
		"loop": Loop,
		"hog": func(ctx context.Context, call *Call) (any, error) {
			mb, ok := call.Params["mb"].(float64)
			if !ok {
				mb = 1024
			}
			return Hog(int64(mb))(ctx, call)
		},
	}
}

// Echo returns the invocation's parameters.
func Echo(_ context.Context, call *Call) (any, error) {
	return call.Params, nil
}

// Loop blocks until the invocation is over (timeout, removal).
func Loop(ctx context.Context, _ *Call) (any, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Hog returns a func that allocates mb megabytes, 1 MB at a time.
func Hog(mb int64) Func {
	return func(ctx context.Context, call *Call) (any, error) {
		for i := int64(0); i < mb; i++ {
			if err := call.Alloc(1); err != nil {
				return nil, err
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		return mb, nil
	}
}

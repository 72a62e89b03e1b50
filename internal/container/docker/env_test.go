package docker_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
)

// TestLoadEnvPython checks a function's environment variables, sent with
// the code to a container that started without them (as a stem cell does),
// are visible to the python function from its import on.
func TestLoadEnvPython(t *testing.T) {
	rt := newRuntime(t, pythonImage)
	code := "import os\n\nAT_IMPORT = os.environ.get('GREETING')\n\n" +
		"def handler(params, context):\n    return [AT_IMPORT, os.environ.get('GREETING'), os.environ.get('OTHER')]\n"
	id := runOnce(t, rt,
		container.Spec{Name: fmt.Sprintf("sl-env-test-%d", os.Getpid()), Image: pythonImage, MemoryMB: 64},
		container.LoadRequest{
			Handler: "main.handler",
			Code:    pythonFixture(t, code).Code,
			Env:     map[string]string{"GREETING": "hello from Env", "OTHER": "x=y"},
		})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rt.Invoke(ctx, id, container.InvokeRequest{})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if want := `["hello from Env", "hello from Env", "x=y"]`; !res.Success || res.Result != want {
		t.Fatalf("Invoke = %+v, want Result %s", res, want)
	}
}

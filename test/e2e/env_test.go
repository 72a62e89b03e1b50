package e2e

import (
	"testing"
	"time"
)

// TestStemCellSeesFunctionEnv creates a function with --env on a node that
// keeps a python stem cell: the stem cell started before the function
// existed, and the function still sees its variables, at import and when
// called.
func TestStemCellSeesFunctionEnv(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{Args: []string{"--container.stemcells=python:1", "--container.stemcell.memory", "128"}})
	eventually(t, 30*time.Second, "no stem cell became ready", func() bool {
		return status(t, n).StemCells["python"] == 1
	})
	src := sourceDir(t, map[string]string{"envfn.py": "import os\n\nAT_IMPORT = os.environ.get('GREETING')\n\n" +
		"def handler(params, context):\n    return [AT_IMPORT, os.environ.get('GREETING'), os.environ.get('EXTRA')]\n"})
	createCLI(t, n, "envfn", "--runtime", "python", "--handler", "envfn.handler", "--memory", "128", "--src", src,
		"--env", "GREETING=hello from a stem cell", "--env", "EXTRA=a=b")
	resp := invokeCLI(t, n, "envfn")
	if want := `["hello from a stem cell", "hello from a stem cell", "a=b"]`; resp.Result != want {
		t.Fatalf("Result %s, want %s", resp.Result, want)
	}
	if ids := nodeContainers(t, n, "envfn"); len(ids) != 0 {
		t.Errorf("containers %v were created for the function; want the stem cell used", ids)
	}
}

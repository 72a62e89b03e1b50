package function

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/distribution/reference"

	"github.com/serverledge/serverledge/internal/codearchive"
)

// checkImage refuses a CustomImage that is not a valid Docker image reference.
func checkImage(ref string) error {
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return fmt.Errorf("%w: CustomImage %q is not a valid image reference: %v", ErrInvalid, ref, err)
	}
	return nil
}

// CheckCode validates the code archive with the rules the container's
// unpacker applies (codearchive) and checks that the handler is in it, so
// that a function accepted at /create can be loaded. It runs under ctx and
// returns ErrInvalid (wrapped) for a refused archive or a missing handler.
func (f *Function) CheckCode(ctx context.Context) error {
	code, err := f.Code()
	if err != nil || len(code) == 0 {
		return err
	}
	ix, err := codearchive.Inspect(ctx, code)
	if err != nil {
		return fmt.Errorf("%w: TarFunctionCode refused: %w", ErrInvalid, err)
	}
	switch f.Runtime {
	case RuntimePython:
		return checkPythonHandler(ix, f.Handler)
	case RuntimeNodeJS:
		return checkNodeHandler(ix, f.Handler)
	}
	return nil
}

// checkPythonHandler looks for the module of "pkg.mod.func" as pkg/mod.py or
// pkg/mod/__init__.py, where the worker's import would find it.
func checkPythonHandler(ix *codearchive.Index, handler string) error {
	i := strings.LastIndexByte(handler, '.')
	if i <= 0 {
		return fmt.Errorf("%w: Handler %q for python must be module.function", ErrInvalid, handler)
	}
	module := handler[:i]
	parts := strings.Split(module, ".")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "/\\ ") {
			return fmt.Errorf("%w: Handler %q must be module.function with a dotted module name", ErrInvalid, handler)
		}
	}
	file := strings.Join(parts, "/")
	if ix.IsFile(file+".py") || ix.IsFile(file+"/__init__.py") {
		return nil
	}
	return fmt.Errorf("%w: Handler %q: module %s is not in TarFunctionCode (looked for %s.py and %s/__init__.py)", ErrInvalid, handler, module, file, file)
}

// checkNodeHandler looks for the handler file as the worker does: the name
// itself, or with ".js" added when it has no .js/.cjs/.mjs suffix; a
// directory with index.js or package.json also loads.
func checkNodeHandler(ix *codearchive.Index, handler string) error {
	if path.IsAbs(handler) {
		return fmt.Errorf("%w: Handler %q must be a path inside TarFunctionCode", ErrInvalid, handler)
	}
	candidates := []string{handler}
	if ext := path.Ext(handler); ext != ".js" && ext != ".cjs" && ext != ".mjs" {
		candidates = append(candidates, handler+".js")
	}
	for _, c := range candidates {
		c = path.Clean(c)
		if ix.IsFile(c) || (ix.IsDir(c) && (ix.IsFile(c+"/index.js") || ix.IsFile(c+"/package.json"))) {
			return nil
		}
	}
	return fmt.Errorf("%w: Handler %q: file %s is not in TarFunctionCode", ErrInvalid, handler, strings.Join(candidates, " or "))
}

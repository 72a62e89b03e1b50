package function

import (
	"encoding/json"
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strings"
)

// Limits on the fields added for parity with the newest upstream release,
// documented in docs/api.md.
const (
	// MaxConcurrencyLimit is the largest MaxConcurrency accepted.
	MaxConcurrencyLimit = 1000
	// MaxArchs is the largest number of SupportedArchs entries accepted.
	MaxArchs = 16
	// MaxEnvVars is the largest number of Env variables accepted.
	MaxEnvVars = 64
	// MaxEnvNameLen is the longest Env variable name accepted.
	MaxEnvNameLen = 256
	// MaxEnvValueBytes is the longest Env value accepted.
	MaxEnvValueBytes = 4 << 10
	// MaxEnvTotalBytes bounds the names and values of all Env variables together.
	MaxEnvTotalBytes = 32 << 10
	// MaxSignatureEntries bounds the inputs and the outputs of a Signature.
	MaxSignatureEntries = 64
	// MaxSignatureNameLen is the longest input or output name accepted.
	MaxSignatureNameLen = 128
)

// unknownRuntime describes a runtime name that is neither built in nor an
// alias, listing what is accepted.
func unknownRuntime(name string) error {
	if strings.HasPrefix(name, "go") {
		return fmt.Errorf("%w %q: this node has no Go runtime; build the function into a custom image (Runtime custom) or use one of: %s",
			ErrUnknownRuntime, name, runtimeList())
	}
	return fmt.Errorf("%w %q (known: %s)", ErrUnknownRuntime, name, runtimeList())
}

// runtimeList names the runtimes and their aliases, for error messages.
func runtimeList() string {
	byRuntime := map[string][]string{}
	for alias, canon := range aliases {
		byRuntime[canon] = append(byRuntime[canon], alias)
	}
	var parts []string
	for _, name := range []string{RuntimePython, RuntimeNodeJS, RuntimeCustom} {
		a := byRuntime[name]
		slices.Sort(a)
		if len(a) == 0 {
			parts = append(parts, name)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (also %s)", name, strings.Join(a, ", ")))
	}
	return strings.Join(parts, "; ")
}

// SupportsArch reports whether f runs on the GOARCH-style architecture
// arch; a function without SupportedArchs runs anywhere.
func (f *Function) SupportsArch(arch string) bool {
	return len(f.SupportedArchs) == 0 || slices.Contains(f.SupportedArchs, arch)
}

// knownArchs are the GOARCH names accepted in SupportedArchs.
var knownArchs = []string{"386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64", "ppc64le", "riscv64", "s390x"}

// Signature declares a function's inputs and outputs, with upstream
// Serverledge's JSON shape.
type Signature struct {
	// Inputs are the parameters the function reads.
	Inputs []*InputDef `json:"Inputs"`
	// Outputs are the fields of the function's result.
	Outputs []*OutputDef `json:"Outputs"`
}

// InputDef names one input parameter and its type.
type InputDef struct {
	Name string `json:"Name"`
	Type string `json:"Type"`
}

// OutputDef names one output field and its type.
type OutputDef struct {
	Name string `json:"Name"`
	Type string `json:"Type"`
}

// signatureTypes are the data types upstream Serverledge defines.
var signatureTypes = []string{"Int", "Float", "Text", "Bool", "ArrayInt", "ArrayFloat", "ArrayBool", "ArrayText", "ArrayArrayInt", "ArrayArrayFloat"}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnv are variable names the runtimes set and rely on.
var reservedEnv = []string{"PATH", "HOME", "HOSTNAME", "PWD", "PYTHONPATH", "PYTHONHOME", "NODE_PATH", "NODE_OPTIONS", "LD_PRELOAD", "LD_LIBRARY_PATH"}

// reservedEnvPrefix is the namespace of variables Serverledge itself sets.
const reservedEnvPrefix = "SERVERLEDGE_"

// normalizeExtras validates MaxConcurrency, SupportedArchs, Signature and
// Env, the fields added for parity with the newest upstream release.
func (f *Function) normalizeExtras() error {
	if f.MaxConcurrency < 0 || f.MaxConcurrency > MaxConcurrencyLimit {
		return fmt.Errorf("%w: MaxConcurrency must be between 1 and %d (0 means 1), got %d", ErrInvalid, MaxConcurrencyLimit, f.MaxConcurrency)
	}
	f.MaxConcurrency = max(f.MaxConcurrency, 1)
	if err := validateArchs(f.SupportedArchs); err != nil {
		return err
	}
	if err := f.Signature.validate(); err != nil {
		return err
	}
	return ValidateEnv(f.Env)
}

func validateArchs(archs []string) error {
	if len(archs) > MaxArchs {
		return fmt.Errorf("%w: SupportedArchs has %d entries, the limit is %d", ErrInvalid, len(archs), MaxArchs)
	}
	for i, a := range archs {
		if !slices.Contains(knownArchs, a) {
			return fmt.Errorf("%w: SupportedArchs entry %q is not an architecture name (use GOARCH names: %s)", ErrInvalid, truncate(a), strings.Join(knownArchs, ", "))
		}
		if slices.Contains(archs[:i], a) {
			return fmt.Errorf("%w: SupportedArchs lists %q twice", ErrInvalid, a)
		}
	}
	return nil
}

func (s *Signature) validate() error {
	if s == nil {
		return nil
	}
	if len(s.Inputs) > MaxSignatureEntries || len(s.Outputs) > MaxSignatureEntries {
		return fmt.Errorf("%w: Signature may declare at most %d inputs and %d outputs", ErrInvalid, MaxSignatureEntries, MaxSignatureEntries)
	}
	check := func(kind string, i int, name, typ string) error {
		if name == "" || len(name) > MaxSignatureNameLen {
			return fmt.Errorf("%w: Signature %s %d needs a Name of 1-%d bytes", ErrInvalid, kind, i, MaxSignatureNameLen)
		}
		if !slices.Contains(signatureTypes, typ) {
			return fmt.Errorf("%w: Signature %s %q has Type %q; known types: %s", ErrInvalid, kind, name, truncate(typ), strings.Join(signatureTypes, ", "))
		}
		return nil
	}
	for i, in := range s.Inputs {
		if in == nil {
			return fmt.Errorf("%w: Signature input %d is null", ErrInvalid, i)
		}
		if err := check("input", i, in.Name, in.Type); err != nil {
			return err
		}
	}
	for i, out := range s.Outputs {
		if out == nil {
			return fmt.Errorf("%w: Signature output %d is null", ErrInvalid, i)
		}
		if err := check("output", i, out.Name, out.Type); err != nil {
			return err
		}
	}
	return nil
}

// ValidateEnv checks a function's environment variables: at most
// MaxEnvVars, names matching [A-Za-z_][A-Za-z0-9_]* that are not reserved,
// values of at most MaxEnvValueBytes without NUL bytes, MaxEnvTotalBytes in
// all.
func ValidateEnv(env map[string]string) error {
	if len(env) > MaxEnvVars {
		return fmt.Errorf("%w: Env has %d variables, the limit is %d", ErrInvalid, len(env), MaxEnvVars)
	}
	total := 0
	for name, value := range env {
		total += len(name) + len(value)
		if len(name) > MaxEnvNameLen || !envNameRE.MatchString(name) {
			return fmt.Errorf("%w: Env name %q must match [A-Za-z_][A-Za-z0-9_]* (at most %d bytes)", ErrInvalid, truncate(name), MaxEnvNameLen)
		}
		if slices.Contains(reservedEnv, name) || strings.HasPrefix(name, reservedEnvPrefix) {
			return fmt.Errorf("%w: Env name %s is reserved (reserved: %s and names starting with %s)", ErrInvalid, name, strings.Join(reservedEnv, ", "), reservedEnvPrefix)
		}
		if len(value) > MaxEnvValueBytes {
			return fmt.Errorf("%w: Env value of %s is %d bytes, the limit is %d", ErrInvalid, name, len(value), MaxEnvValueBytes)
		}
		if strings.IndexByte(value, 0) >= 0 {
			return fmt.Errorf("%w: Env value of %s contains a NUL byte", ErrInvalid, name)
		}
	}
	if total > MaxEnvTotalBytes {
		return fmt.Errorf("%w: Env names and values add up to %d bytes, the limit is %d", ErrInvalid, total, MaxEnvTotalBytes)
	}
	return nil
}

// truncate shortens a client-supplied string for an error message.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// digestExtras adds the parity fields to a definition's digest. A
// definition that leaves them at their defaults keeps the digest it had
// before they existed.
func (f *Function) digestExtras(h hash.Hash) {
	if f.MaxConcurrency <= 1 && len(f.SupportedArchs) == 0 && f.Signature == nil && len(f.Env) == 0 {
		return
	}
	// json.Marshal sorts map keys, so equal definitions hash alike.
	b, err := json.Marshal(struct {
		MaxConcurrency int
		SupportedArchs []string
		Signature      *Signature
		Env            map[string]string
	}{f.MaxConcurrency, f.SupportedArchs, f.Signature, f.Env})
	if err != nil {
		// Every field is a plain value; Marshal cannot fail on them.
		fmt.Fprintf(h, "\x00%v", err)
		return
	}
	h.Write([]byte{0})
	h.Write(b)
}

// Package function defines what a Serverledge function is: its definition,
// the runtimes it can run on, and the validation every definition passes
// before it reaches the registry.
package function

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Sentinel errors callers branch on.
var (
	// ErrUnknownRuntime is returned for a runtime that is neither built in nor an alias.
	ErrUnknownRuntime = errors.New("unknown runtime")
	// ErrInvalid wraps every other validation failure.
	ErrInvalid = errors.New("invalid function definition")
)

// Limits on a definition, documented in docs/api.md.
const (
	// MaxCodeBytes is the largest decoded code archive accepted.
	MaxCodeBytes = 16 << 20
	// MaxNameLen is the longest function name accepted.
	MaxNameLen = 64
	// DefaultMemoryMB is used when MemoryMB is 0.
	DefaultMemoryMB = 128
	// MinMemoryMB is the smallest memory limit accepted (Docker needs 6 MB).
	MinMemoryMB = 16
	// MaxMemoryMB is the largest memory limit accepted.
	MaxMemoryMB = 64 << 10
	// DefaultTimeoutSeconds is the execution timeout when none is given.
	DefaultTimeoutSeconds = 60
	// MaxTimeoutSeconds is the largest execution timeout accepted.
	MaxTimeoutSeconds = 900
)

// Runtime names.
const (
	RuntimePython = "python"
	RuntimeNodeJS = "nodejs"
	RuntimeCustom = "custom"
)

// Runtime describes a built-in runtime.
type Runtime struct {
	// Name is the canonical runtime name.
	Name string
	// Image is the local Docker image that serves the runtime.
	Image string
}

var runtimes = map[string]Runtime{
	RuntimePython: {Name: RuntimePython, Image: "serverledge/runtime-python:latest"},
	RuntimeNodeJS: {Name: RuntimeNodeJS, Image: "serverledge/runtime-nodejs:latest"},
	RuntimeCustom: {Name: RuntimeCustom},
}

var aliases = map[string]string{
	"python3":   RuntimePython,
	"python38":  RuntimePython,
	"python39":  RuntimePython,
	"python310": RuntimePython,
	"python311": RuntimePython,
	"python312": RuntimePython,
	// The newest upstream release names its images python314 and
	// python312ml; our python image serves both.
	"python314":   RuntimePython,
	"python312ml": RuntimePython,
	"nodejs17":    RuntimeNodeJS,
	"nodejs17ng":  RuntimeNodeJS,
	"nodejs18":    RuntimeNodeJS,
	"nodejs20":    RuntimeNodeJS,
	"node":        RuntimeNodeJS,
}

// LookupRuntime resolves a runtime name or alias to its Runtime.
func LookupRuntime(name string) (Runtime, error) {
	if canon, ok := aliases[name]; ok {
		name = canon
	}
	rt, ok := runtimes[name]
	if !ok {
		return Runtime{}, unknownRuntime(name)
	}
	return rt, nil
}

// BuiltinRuntimes lists the runtimes with a built-in image.
func BuiltinRuntimes() []Runtime {
	return []Runtime{runtimes[RuntimePython], runtimes[RuntimeNodeJS]}
}

// Function is a function definition as stored in the registry.
type Function struct {
	Name     string `json:"Name"`
	Runtime  string `json:"Runtime"`
	MemoryMB int64  `json:"MemoryMB"`
	// CPUDemand is a CPU cap in cores; ≤0 means no cap.
	CPUDemand float64 `json:"CPUDemand"`
	Handler   string  `json:"Handler"`
	// TarFunctionCode is the base64 of a tar archive.
	TarFunctionCode string `json:"TarFunctionCode,omitempty"`
	CustomImage     string `json:"CustomImage,omitempty"`
	// AllowedZones restricts where the function may run (empty: anywhere).
	AllowedZones []string `json:"AllowedZones,omitempty"`
	// TimeoutSeconds bounds one execution.
	TimeoutSeconds float64 `json:"TimeoutSeconds,omitempty"`
	// SupportedArchs lists the GOARCH-style architectures the function
	// runs on (empty: any).
	SupportedArchs []string `json:"SupportedArchs,omitempty"`
	// Signature declares the function's inputs and outputs, as upstream
	// Serverledge does; it is stored and returned, not enforced.
	Signature *Signature `json:"Signature,omitempty"`
	// Env holds environment variables set for the function's process.
	Env map[string]string `json:"Env,omitempty"`
	// Version identifies this definition; it changes on every update.
	Version string `json:"Version,omitempty"`
	// MaxConcurrency is how many requests one container serves at once;
	// ≤ 1 means one at a time (see Concurrency).
	MaxConcurrency int `json:"MaxConcurrency,omitempty"`
}

// Concurrency returns how many requests one container of f serves at once:
// MaxConcurrency, at least 1.
func (f *Function) Concurrency() int {
	return max(1, f.MaxConcurrency)
}

// Image returns the Docker image that runs the function.
func (f *Function) Image() string {
	if f.Runtime == RuntimeCustom {
		return f.CustomImage
	}
	rt, err := LookupRuntime(f.Runtime)
	if err != nil {
		return ""
	}
	return rt.Image
}

// Code decodes the function's code archive.
func (f *Function) Code() ([]byte, error) {
	if f.TarFunctionCode == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(f.TarFunctionCode)
	if err != nil {
		return nil, fmt.Errorf("%w: TarFunctionCode is not valid base64: %v", ErrInvalid, err)
	}
	return b, nil
}

// Timeout returns the execution timeout in seconds.
func (f *Function) Timeout() float64 {
	if f.TimeoutSeconds <= 0 {
		return DefaultTimeoutSeconds
	}
	return f.TimeoutSeconds
}

// WithoutCode returns a copy of f with the code removed.
func (f Function) WithoutCode() Function {
	f.TarFunctionCode = ""
	return f
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidateName checks a function name.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: Name is required", ErrInvalid)
	}
	if len(name) > MaxNameLen || !nameRE.MatchString(name) {
		return fmt.Errorf("%w: Name %q must be 1-%d characters of letters, digits, '_', '.', '-', starting with a letter or digit", ErrInvalid, name, MaxNameLen)
	}
	return nil
}

// Normalize validates f, fills defaults, resolves runtime aliases and
// computes Version. It returns ErrUnknownRuntime or ErrInvalid (wrapped,
// with a message naming the bad field).
func (f *Function) Normalize() error {
	if err := ValidateName(f.Name); err != nil {
		return err
	}
	if f.Runtime == "" {
		return fmt.Errorf("%w: Runtime is required", ErrInvalid)
	}
	rt, err := LookupRuntime(f.Runtime)
	if err != nil {
		return err
	}
	f.Runtime = rt.Name
	if f.MemoryMB == 0 {
		f.MemoryMB = DefaultMemoryMB
	}
	if f.MemoryMB < MinMemoryMB || f.MemoryMB > MaxMemoryMB {
		return fmt.Errorf("%w: MemoryMB must be between %d and %d, got %d", ErrInvalid, MinMemoryMB, MaxMemoryMB, f.MemoryMB)
	}
	if f.CPUDemand < 0 {
		f.CPUDemand = 0
	}
	if f.CPUDemand > 1024 {
		return fmt.Errorf("%w: CPUDemand %.2f is not a plausible number of cores", ErrInvalid, f.CPUDemand)
	}
	if f.TimeoutSeconds < 0 || f.TimeoutSeconds > MaxTimeoutSeconds {
		return fmt.Errorf("%w: TimeoutSeconds must be between 0 and %d", ErrInvalid, MaxTimeoutSeconds)
	}
	if strings.TrimSpace(f.Handler) == "" && f.Runtime != RuntimeCustom {
		return fmt.Errorf("%w: Handler is required", ErrInvalid)
	}
	switch f.Runtime {
	case RuntimeCustom:
		if f.CustomImage == "" {
			return fmt.Errorf("%w: CustomImage is required when Runtime is custom", ErrInvalid)
		}
		if err := checkImage(f.CustomImage); err != nil {
			return err
		}
	default:
		if f.TarFunctionCode == "" {
			return fmt.Errorf("%w: TarFunctionCode is required for runtime %s", ErrInvalid, f.Runtime)
		}
		if f.CustomImage != "" {
			return fmt.Errorf("%w: CustomImage is only allowed when Runtime is custom", ErrInvalid)
		}
	}
	code, err := f.Code()
	if err != nil {
		return err
	}
	if len(code) > MaxCodeBytes {
		return fmt.Errorf("%w: TarFunctionCode decodes to %d bytes, the limit is %d", ErrInvalid, len(code), MaxCodeBytes)
	}
	if f.Runtime == RuntimePython && !strings.Contains(f.Handler, ".") {
		return fmt.Errorf("%w: Handler %q for python must be module.function", ErrInvalid, f.Handler)
	}
	for _, z := range f.AllowedZones {
		if strings.TrimSpace(z) == "" {
			return fmt.Errorf("%w: AllowedZones must not contain empty names", ErrInvalid)
		}
	}
	if err := f.normalizeExtras(); err != nil {
		return err
	}
	f.Version = f.digest()
	return nil
}

func (f *Function) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%g\x00%s\x00%s\x00%s\x00%g\x00%v",
		f.Name, f.Runtime, f.MemoryMB, f.CPUDemand, f.Handler, f.TarFunctionCode, f.CustomImage, f.TimeoutSeconds, f.AllowedZones)
	f.digestExtras(h)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

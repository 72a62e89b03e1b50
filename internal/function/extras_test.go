package function

import (
	"errors"
	"strings"
	"testing"
)

func TestNewestReleaseRuntimeNames(t *testing.T) {
	for name, want := range map[string]string{"python314": RuntimePython, "python312ml": RuntimePython, "nodejs17ng": RuntimeNodeJS} {
		rt, err := LookupRuntime(name)
		if err != nil || rt.Name != want {
			t.Errorf("LookupRuntime(%s) = %v, %v; want %s", name, rt, err, want)
		}
	}
	_, err := LookupRuntime("go125")
	if !errors.Is(err, ErrUnknownRuntime) {
		t.Fatalf("go125: %v, want ErrUnknownRuntime", err)
	}
	for _, want := range []string{"go125", "custom", "python", "python314", "nodejs17ng"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("go125 message %q does not mention %s", err, want)
		}
	}
}

func TestConcurrencyAndArchs(t *testing.T) {
	if c := (&Function{}).Concurrency(); c != 1 {
		t.Errorf("Concurrency of an unset MaxConcurrency = %d, want 1", c)
	}
	if c := (&Function{MaxConcurrency: 7}).Concurrency(); c != 7 {
		t.Errorf("Concurrency = %d, want 7", c)
	}
	if !(&Function{}).SupportsArch("riscv64") {
		t.Error("a function without SupportedArchs must run anywhere")
	}
	f := &Function{SupportedArchs: []string{"arm64"}}
	if f.SupportsArch("amd64") || !f.SupportsArch("arm64") {
		t.Error("SupportsArch ignores SupportedArchs")
	}
}

func TestValidateEnv(t *testing.T) {
	ok := map[string]string{"A": "", "_b9": "x=y", "Z_Z": strings.Repeat("v", MaxEnvValueBytes)}
	if err := ValidateEnv(ok); err != nil {
		t.Errorf("ValidateEnv(valid) = %v", err)
	}
	for _, bad := range []map[string]string{
		{"": "x"}, {"9A": "x"}, {"A B": "x"}, {"Ä": "x"}, {"PATH": "x"}, {"LD_PRELOAD": "x"}, {"SERVERLEDGE_": "x"},
		{"A": "x\x00"}, {"A": strings.Repeat("v", MaxEnvValueBytes+1)}, {strings.Repeat("N", MaxEnvNameLen+1): "x"},
	} {
		if err := ValidateEnv(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateEnv(%.40q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestDigestOfDefaults checks a definition that leaves the new fields at
// their defaults keeps the digest it had before they existed, and that
// each new field changes it.
func TestDigestOfDefaults(t *testing.T) {
	base := Function{Name: "f", Runtime: RuntimeCustom, CustomImage: "img:1"}
	if err := base.Normalize(); err != nil {
		t.Fatal(err)
	}
	old := base
	old.MaxConcurrency = 0
	if got := old.digest(); got != base.Version {
		t.Errorf("digest with MaxConcurrency 0 %s, after Normalize (1) %s", got, base.Version)
	}
	for name, mod := range map[string]func(*Function){
		"MaxConcurrency": func(f *Function) { f.MaxConcurrency = 2 },
		"SupportedArchs": func(f *Function) { f.SupportedArchs = []string{"arm64"} },
		"Signature":      func(f *Function) { f.Signature = &Signature{} },
		"Env":            func(f *Function) { f.Env = map[string]string{"A": "1"} },
	} {
		f := base
		mod(&f)
		if err := f.Normalize(); err != nil {
			t.Fatal(err)
		}
		if f.Version == base.Version {
			t.Errorf("setting %s kept the digest", name)
		}
	}
	a := Function{Name: "f", Runtime: RuntimeCustom, CustomImage: "img:1", Env: map[string]string{"A": "1", "B": "2", "C": "3"}}
	b := Function{Name: "f", Runtime: RuntimeCustom, CustomImage: "img:1", Env: map[string]string{"C": "3", "B": "2", "A": "1"}}
	if err := errors.Join(a.Normalize(), b.Normalize()); err != nil || a.Version != b.Version {
		t.Errorf("equal Env hashes differently: %s %s (%v)", a.Version, b.Version, err)
	}
}

package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireDockerEnv names the environment variable that, when set to a
// non-empty value, turns every test that would skip for lack of a real part
// (Docker, an image, python3, node, etcd) into a failure. CI sets it.
const RequireDockerEnv = "SERVERLEDGE_REQUIRE_DOCKER"

// RealPartsRequired reports whether RequireDockerEnv is set.
func RealPartsRequired() bool {
	return os.Getenv(RequireDockerEnv) != ""
}

// SkipOrFail skips the test for lack of a real part, saying why, or fails it
// when RealPartsRequired.
func SkipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if RealPartsRequired() {
		tb.Fatalf(format+" ("+RequireDockerEnv+" is set)", args...)
	}
	tb.Skipf(format, args...)
}

// LookPath returns the path of the program name, or skips (or, with
// RealPartsRequired, fails) the test when it is not installed.
func LookPath(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(tb, "%s not installed: %v", name, err)
	}
	return p
}

// Package testenv decides what a test does when a real part it needs is missing:
// skip with the reason on a developer's machine, fail under CI (EM340_STRICT_TESTS).
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// StrictVariable, when set (as .ci/run does), turns every missing-part skip into a failure.
const StrictVariable = "EM340_STRICT_TESTS"

// Missing skips t, or fails it under CI, saying which part is missing and why.
func Missing(t testing.TB, part, why string) {
	t.Helper()
	if os.Getenv(StrictVariable) != "" {
		t.Fatalf("%s is missing (%s); %s is set, so this is a failure", part, why, StrictVariable)
	}
	t.Skipf("%s is missing (%s)", part, why)
}

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

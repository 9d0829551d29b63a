// Package testenv decides what a test does when a real part it needs is missing:
// it fails, naming the part and how to get it, unless the run opts out loudly.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// AllowMissingVariable, when set, turns a missing part's failure into a skip
// that still names it: for a developer who knowingly runs part of the suite.
// Neither CI nor the README's test command sets it, so a run that lacks a
// part can never pass as a whole.
const AllowMissingVariable = "EM340_ALLOW_MISSING"

// Missing fails t (or skips it under EM340_ALLOW_MISSING), saying which part is
// missing and how to get it.
func Missing(t testing.TB, part, how string) {
	t.Helper()
	if os.Getenv(AllowMissingVariable) != "" {
		t.Skipf("%s is missing (%s); skipped because %s is set", part, how, AllowMissingVariable)
	}
	t.Fatalf("%s is missing: %s (bash .ci/run installs every part; set %s=1 to skip such tests instead)", part, how, AllowMissingVariable)
}

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

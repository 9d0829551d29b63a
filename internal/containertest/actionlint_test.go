package containertest

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/em340-bridge/em340-bridge/internal/testenv"
)

// actionlint is the workflow linter, run from the Go module proxy at a
// fixed version. It runs shellcheck on every run: step when shellcheck is
// on PATH, and silently skips that otherwise, so the test requires it.
const actionlint = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"

// The GitHub workflows pass actionlint: syntax, expressions, job and step
// references, action inputs, and the shell of every run: step.
func TestWorkflowsLint(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		testenv.Missing(t, "shellcheck", "apt-get install -y shellcheck: actionlint checks the run: steps' shell with it")
	}
	root := testenv.RepoRoot()
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("workflows %q, want at least release.yml and ci.yml", files)
	}
	cmd := exec.Command("go", append([]string{"run", actionlint, "-no-color"}, files...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("actionlint: %v\n%s", err, out)
	}
}

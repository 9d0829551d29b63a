package addon_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The add-on Dockerfile is checked as text: there is no Docker engine to
// build it here.
func TestDockerfile(t *testing.T) {
	df := readText(t, "Dockerfile")
	version := readManifest(t).Version

	// Without build.yaml the Supervisor passes no BUILD_FROM, so the default
	// is the base; a floating tag would change the add-on under the user.
	from := regexp.MustCompile(`(?m)^ARG BUILD_FROM=(\S+)$`).FindStringSubmatch(df)
	if from == nil {
		t.Fatal("no ARG BUILD_FROM=<image> default")
	}
	if image := from[1]; !strings.Contains(image, ":") || strings.HasSuffix(image, ":latest") {
		t.Errorf("BUILD_FROM default %s is not pinned to a tag", image)
	}
	if !regexp.MustCompile(`(?m)^FROM \$\{BUILD_FROM\}$`).MatchString(df) {
		t.Error("the runtime stage is not FROM ${BUILD_FROM}")
	}
	// The Supervisor passes BUILD_VERSION; the default serves builds outside
	// it and must name the same release.
	for _, m := range regexp.MustCompile(`(?m)^ARG BUILD_VERSION=(\S+)$`).FindAllStringSubmatch(df, -1) {
		if m[1] != version {
			t.Errorf("ARG BUILD_VERSION=%s, but config.yaml has version %s", m[1], version)
		}
	}
	for _, want := range []string{
		"CGO_ENABLED=0", "-trimpath", "@${BRIDGE_VERSION}", `HEALTHCHECK `, `"healthcheck"]`,
		`ENTRYPOINT ["/run.sh"]`, `io.hass.type="app"`, `io.hass.version="${BUILD_VERSION}"`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}

func TestRunScript(t *testing.T) {
	fi, err := os.Stat("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Error("run.sh is not executable")
	}
	if s := readText(t, "run.sh"); !strings.Contains(s, "\nexec /usr/bin/em340-bridge addon\n") {
		t.Error("run.sh does not exec em340-bridge addon")
	}
}

func TestChangelogHasVersion(t *testing.T) {
	version := readManifest(t).Version
	if !strings.Contains(readText(t, "CHANGELOG.md"), "\n## ["+version+"] - ") {
		t.Errorf("CHANGELOG.md has no section for %s", version)
	}
	for _, f := range []string{"DOCS.md", "README.md"} {
		if strings.TrimSpace(readText(t, f)) == "" {
			t.Errorf("%s is empty", f)
		}
	}
}

package addon_test

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
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

// The add-on Dockerfile is checked as text here; internal/containertest
// builds it on a real engine.
func TestDockerfile(t *testing.T) {
	df := readText(t, "Dockerfile")
	version := readManifest(t).Version

	// Without build.yaml the Supervisor passes no BUILD_FROM, so the default
	// is the base: the release image of this very version, so that a local
	// build needs only this folder and compiles nothing.
	from := regexp.MustCompile(`(?m)^ARG BUILD_FROM=(\S+)$`).FindStringSubmatch(df)
	if from == nil {
		t.Fatal("no ARG BUILD_FROM=<image> default")
	}
	if want := "ghcr.io/em340-bridge/em340-bridge:" + version; from[1] != want {
		t.Errorf("BUILD_FROM default %s, want the release image %s", from[1], want)
	}
	if !regexp.MustCompile(`(?m)^FROM \$\{BUILD_FROM\}$`).MatchString(df) {
		t.Error("the image is not FROM ${BUILD_FROM}")
	}
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n != 1 {
		t.Errorf("%d FROM lines: the add-on must not compile on the Home Assistant machine", n)
	}
	// The Supervisor passes BUILD_VERSION; the default serves builds outside
	// it and must name the same release.
	versions := regexp.MustCompile(`(?m)^ARG BUILD_VERSION=(\S+)$`).FindAllStringSubmatch(df, -1)
	if len(versions) == 0 {
		t.Error("no ARG BUILD_VERSION default")
	}
	for _, m := range versions {
		if m[1] != version {
			t.Errorf("ARG BUILD_VERSION=%s, but config.yaml has version %s", m[1], version)
		}
	}
	for _, want := range []string{
		`HEALTHCHECK `, `CMD ["/em340-bridge", "healthcheck"]`,
		`io.hass.type="app"`, `io.hass.version="${BUILD_VERSION}"`, `io.hass.arch="${BUILD_ARCH}"`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}

// The add-on starts as root to read its options, then runs the bridge as
// the release image's own non-root user.
func TestAddonDropsRoot(t *testing.T) {
	df := readText(t, "Dockerfile")
	users := regexp.MustCompile(`(?m)^USER (\S+)$`).FindAllStringSubmatch(readText(t, "../Dockerfile"), -1)
	if len(users) == 0 {
		t.Fatal("the root Dockerfile has no USER")
	}
	user := users[len(users)-1][1]
	if want := `ENTRYPOINT ["/em340-bridge", "addon", "-user", "` + user + `"]`; !strings.Contains(df, want) {
		t.Errorf("Dockerfile lacks %s: the bridge would run as root", want)
	}
	if !regexp.MustCompile(`(?m)^USER 0:0$`).MatchString(df) {
		t.Error("the add-on does not start as root: it could not read /data/options.json (0600, root)")
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

// The store's pictures have the sizes the developer docs give, and are
// what images_gen.go draws.
func TestImages(t *testing.T) {
	out := t.TempDir()
	gen := exec.Command("go", "run", "images_gen.go", "-o", out)
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run images_gen.go: %v\n%s", err, b)
	}
	for _, tc := range []struct {
		file string
		w, h int
	}{{"icon.png", 128, 128}, {"logo.png", 250, 100}} {
		committed, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(committed))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if b := img.Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
			t.Errorf("%s is %dx%d, want %dx%d", tc.file, b.Dx(), b.Dy(), tc.w, tc.h)
		}
		generated, err := os.ReadFile(filepath.Join(out, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(committed, generated) {
			t.Errorf("%s differs from what images_gen.go draws: run go run images_gen.go", tc.file)
		}
	}
}

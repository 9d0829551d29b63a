package compose_test

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/em340-bridge/em340-bridge/internal/config"
)

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// envEntry is one "NAME=value" line of .env.example, commented out or not,
// with the comment lines just above it.
type envEntry struct {
	name, value, comment string
}

func readEnvExample(t *testing.T) []envEntry {
	t.Helper()
	// Indented examples inside comments ("#   NAME=…") are not entries.
	assignment := regexp.MustCompile(`^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$`)
	var entries []envEntry
	var comment []string
	for line := range strings.Lines(readText(t, ".env.example")) {
		line = strings.TrimRight(line, "\n")
		if m := assignment.FindStringSubmatch(line); m != nil {
			entries = append(entries, envEntry{m[1], m[2], strings.Join(comment, "\n")})
			comment = nil
			continue
		}
		if line == "" {
			comment = nil
		} else {
			comment = append(comment, line)
		}
	}
	return entries
}

// .env.example documents every variable once, with its meaning and the
// default that applies under compose.
func TestEnvExample(t *testing.T) {
	entries := readEnvExample(t)
	// Under compose a few defaults differ from the bridge's own: those the
	// compose file sets itself.
	composeDefaults := map[string]string{}
	for _, kv := range environ(service(t, load(t, ""), bridge)) {
		k, v, _ := strings.Cut(kv, "=")
		composeDefaults[k] = v
	}

	seen := map[string]int{}
	for _, e := range entries {
		seen[e.name]++
	}
	for _, v := range config.Variables() {
		if seen[v.Name] != 1 {
			t.Errorf("%s is listed %d times, want once", v.Name, seen[v.Name])
		}
	}
	for _, name := range composeVariables() {
		if seen[name] != 1 {
			t.Errorf("%s is not listed once", name)
		}
	}

	vars := map[string]config.Variable{}
	for _, v := range config.Variables() {
		vars[v.Name] = v
	}
	for _, e := range entries {
		if slices.Contains(composeVariables(), e.name) {
			continue
		}
		v, ok := vars[e.name]
		if !ok {
			t.Errorf("%s is not a variable of the bridge", e.name)
			continue
		}
		want := v.Default
		if d, ok := composeDefaults[e.name]; ok {
			want = d
		}
		if e.value != want {
			t.Errorf("%s=%s, but its default under compose is %q", e.name, e.value, want)
		}
		if !strings.Contains(e.comment, v.Meaning) {
			t.Errorf("%s: the comment above does not give its meaning %q", e.name, v.Meaning)
		}
		if !slices.Contains(strings.Split(e.comment, "\n"), "# allowed: "+v.Allowed) {
			t.Errorf("%s: the comment above does not say what it allows: %q", e.name, "# allowed: "+v.Allowed)
		}
	}
}

// Copied as is, .env.example changes nothing; with every line uncommented
// it sets every default explicitly, and the bridge accepts that too.
func TestEnvExampleAsDotEnv(t *testing.T) {
	example := readText(t, ".env.example")
	uncommented := regexp.MustCompile(`(?m)^# ([A-Z][A-Z0-9_]*=)`).ReplaceAllString(example, "$1")
	for name, dotEnv := range map[string]string{"as is": example, "uncommented": uncommented} {
		t.Run(name, func(t *testing.T) {
			s := service(t, load(t, dotEnv), bridge)
			env := environ(s)
			if unknown := config.UnknownVariables(env); len(unknown) > 0 {
				t.Errorf("sets %v, which the bridge does not read", unknown)
			}
			if _, err := config.Load(inContainer(t, env)); err != nil {
				t.Errorf("the bridge rejects it: %v", err)
			}
			if name == "uncommented" && len(env) < len(config.Variables()) {
				t.Errorf("only %d variables reach the bridge: %q", len(env), env)
			}
		})
	}
}

// The root Dockerfile is checked as text: there is no Docker engine here.
func TestDockerfile(t *testing.T) {
	df := readText(t, "../Dockerfile")
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n < 2 {
		t.Errorf("%d FROM lines, want a multi-stage build", n)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", `ENTRYPOINT ["/em340-bridge"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	if !regexp.MustCompile(`(?m)^HEALTHCHECK .*\\\n\s*CMD \["/em340-bridge", "healthcheck"\]$`).MatchString(df) {
		t.Error(`no HEALTHCHECK running ["/em340-bridge", "healthcheck"]`)
	}

	// The runtime user is numeric (distroless has no names to resolve),
	// not root, and the one compose runs the bridge as.
	users := regexp.MustCompile(`(?m)^USER (\S+)$`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 {
		t.Fatal("no USER")
	}
	user := users[len(users)-1][1]
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %s is not a numeric non-root user", user)
	}
	if s := service(t, load(t, ""), bridge); s.User != user {
		t.Errorf("compose runs the bridge as %q, the image as %q", s.User, user)
	}
}

func TestDockerignoreKeepsSecretsOut(t *testing.T) {
	lines := strings.Split(readText(t, "../.dockerignore"), "\n")
	for _, want := range []string{".git", "**/.env", "compose"} { // compose/secrets/ holds the broker logins
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

// Every EM340_* name written anywhere in the deployment files is a real
// variable: a typo would be silently ignored by the bridge.
func TestFilesNameRealVariables(t *testing.T) {
	known := map[string]bool{}
	for _, v := range config.Variables() {
		known[v.Name] = true
	}
	name := regexp.MustCompile(`EM340_[A-Z0-9_]+`)
	for _, f := range []string{"docker-compose.yml", ".env.example", "README.md", "mosquitto/mosquitto.conf"} {
		for _, n := range name.FindAllString(readText(t, f), -1) {
			if !known[n] {
				t.Errorf("%s names %s, which the bridge does not read", f, n)
			}
		}
	}
}

package addon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/em340-bridge/em340-bridge/addon"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// notOptions are the bridge settings the add-on deliberately does not
// offer, with the reason; a new setting in internal/config fails
// TestEveryVariableIsAnOption until it is added to config.yaml or here.
func notOptions() map[string]string {
	return map[string]string{
		"EM340_STATUS_FILE":        "the image's HEALTHCHECK runs without the options and reads the default path",
		"EM340_MQTT_PASSWORD_FILE": "mqtt_password takes !secret values; the add-on has no place for a password file",
	}
}

// readYAML decodes an add-on file the way the Supervisor and the linter see
// it: as JSON values (numbers as float64), so comparisons with the JSON
// schema's defaults are like for like.
func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatalf("%s: not a mapping: %v", path, err)
	}
	return m
}

func TestConfigMatchesLinterSchema(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "addon-config.schema.json")) // see its .SOURCE
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("addon-config.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("addon-config.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := readYAML(t, "config.yaml")
	var inst any = cfg
	if err := schema.Validate(inst); err != nil {
		t.Errorf("config.yaml fails the linter's schema: %v", err)
	}

	// The rules of the linter's lint.py that the schema cannot express.
	var props struct {
		Properties map[string]struct {
			Default json.RawMessage `json:"default"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &props); err != nil {
		t.Fatal(err)
	}
	for key, value := range cfg {
		d := props.Properties[key].Default
		if len(d) == 0 {
			continue
		}
		var def any
		if err := json.Unmarshal(d, &def); err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(value, def) {
			t.Errorf("config.yaml sets %s to its default %s; the linter rejects that", key, d)
		}
	}
	for _, key := range []string{"watchdog", "devices", "auto_uart", "codenotary", "full_access", "privileged"} {
		if _, ok := cfg[key]; ok {
			t.Errorf("config.yaml has %s", key)
		}
	}
	for _, arch := range cfg["arch"].([]any) {
		if arch != "aarch64" && arch != "amd64" {
			t.Errorf("arch %v is deprecated", arch)
		}
	}
}

// The settings this add-on depends on, beyond what the schema allows.
func TestConfigEssentials(t *testing.T) {
	cfg := readYAML(t, "config.yaml")
	if cfg["uart"] != true {
		t.Error("uart is not true: a re-plugged adapter would need a restart")
	}
	if !slices.Contains(cfg["services"].([]any), any("mqtt:need")) {
		t.Error("services lacks mqtt:need: the Supervisor would refuse GET /services/mqtt")
	}
	// The release workflow pushes ghcr.io/em340-bridge/<arch>-addon-em340.
	if cfg["image"] != "ghcr.io/em340-bridge/{arch}-addon-em340" {
		t.Errorf("image %v, want the per-arch image the release workflow publishes", cfg["image"])
	}
	if cfg["tmpfs"] != true {
		t.Error("tmpfs is not true: the status file would be rewritten on persistent storage every poll cycle")
	}
	// The discovery payloads use the reactive_energy device class (HA 2025.6).
	if cfg["homeassistant"] != "2025.6.0" {
		t.Errorf("homeassistant %v, want the minimum 2025.6.0", cfg["homeassistant"])
	}
	if _, ok := cfg["init"]; ok {
		t.Error("init is set: the image has no init of its own, so Docker's tini (the default) must be PID 1")
	}
	if _, err := os.Stat("build.yaml"); err == nil {
		t.Error("build.yaml is deprecated; the Dockerfile carries its defaults")
	}
}

// manifest is what the option checks need from config.yaml.
type manifest struct {
	Version string            `yaml:"version"`
	Options map[string]any    `yaml:"options"`
	Schema  map[string]string `yaml:"schema"`
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	b, err := os.ReadFile("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// variablesByOption is the inverse of config.AddonOption.
func variablesByOption() map[string]config.Variable {
	vs := map[string]config.Variable{}
	for _, v := range config.Variables() {
		vs[config.AddonOption(v.Name)] = v
	}
	return vs
}

// schemaType is the Supervisor's grammar for a schema value
// (RE_SCHEMA_ELEMENT in supervisor/apps/options.py).
func schemaType() *regexp.Regexp {
	return regexp.MustCompile(`^(?:|bool|email|url|port|device(?:\((?P<filter>subsystem=[a-z]+)\))?` +
		`|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?` +
		`|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?` +
		`|match\((?P<match>.*)\)|list\((?P<list>.+)\))\??$`)
}

func TestOptions(t *testing.T) {
	m := readManifest(t)
	vars := variablesByOption()
	tr := readYAML(t, filepath.Join("translations", "en.yaml"))
	translations, _ := tr["configuration"].(map[string]any)

	for name := range m.Options {
		if _, ok := m.Schema[name]; !ok {
			t.Errorf("option %s has no schema entry", name)
		}
	}
	schemaType := schemaType()
	for _, name := range slices.Sorted(maps.Keys(m.Schema)) {
		typ := m.Schema[name]
		t.Run(name, func(t *testing.T) {
			v, ok := vars[name]
			if !ok {
				t.Fatalf("no EM340_* variable has the option name %s", name)
			}
			tr, _ := translations[name].(map[string]any) // TestTranslations checks them all
			parts := schemaType.FindStringSubmatch(typ)
			if parts == nil {
				t.Fatalf("schema type %q is not one the Supervisor knows", typ)
			}
			group := func(g string) string { return parts[schemaType.SubexpIndex(g)] }

			optional := strings.HasSuffix(typ, "?")
			def, hasDefault := m.Options[name]
			switch {
			case optional && hasDefault:
				t.Errorf("optional, yet has a default: optional options are absent when unset, so the bridge applies %q", v.Default)
			case !optional && !hasDefault:
				t.Errorf("required without a default: the add-on would not start until it is set")
			}
			value := v.Default
			if hasDefault {
				value = fmt.Sprint(def)
				if value != v.Default {
					t.Errorf("default %q, but %s defaults to %q", value, v.Name, v.Default)
				}
			} else if desc, _ := tr["description"].(string); v.Default != "" && name != "mqtt_url" &&
				!strings.Contains(desc, "Default: "+v.Default+".") {
				// mqtt_url is exempt: unset, it is the Supervisor's broker.
				t.Errorf("description does not say %q though the default is hidden", "Default: "+v.Default+".")
			}

			switch {
			case group("list") != "":
				items := strings.Split(group("list"), "|")
				if got := strings.Join(items, ", "); got != v.Allowed {
					t.Errorf("list %s differs from %s's allowed values %q", got, v.Name, v.Allowed)
				}
				if !slices.Contains(items, value) {
					t.Errorf("default %q is not in the list", value)
				}
			case group("match") != "":
				re, err := regexp.Compile(group("match"))
				if err != nil {
					t.Fatal(err)
				}
				if value != "" && !re.MatchString(value) {
					t.Errorf("default %q does not match %s", value, re)
				}
			case strings.HasPrefix(typ, "int("):
				n, err := strconv.Atoi(value)
				lo, _ := strconv.Atoi(group("i_min"))
				hi, _ := strconv.Atoi(group("i_max"))
				if err != nil || n < lo || n > hi {
					t.Errorf("default %q is outside %s", value, typ)
				}
			case strings.HasPrefix(typ, "float("):
				f, err := strconv.ParseFloat(value, 64)
				lo, _ := strconv.ParseFloat(group("f_min"), 64)
				if err != nil || f < lo {
					t.Errorf("default %q is outside %s", value, typ)
				}
			}
		})
	}
}

// The duration pattern of config.yaml accepts what the bridge accepts
// (Go durations, as config.Load parses them) and rejects the rest.
func TestDurationPattern(t *testing.T) {
	m := readManifest(t)
	pattern := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(m.Schema["poll_interval"], "?"), "match("), ")")
	re := regexp.MustCompile(pattern)
	for _, s := range []string{"500ms", "5s", "1m30s", "1.5h", "0s", "250us"} {
		if !re.MatchString(s) {
			t.Errorf("%s rejected", s)
		}
	}
	for _, s := range []string{"5", "fast", "-5s", "5 s", "s", ""} {
		if re.MatchString(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestEveryVariableIsAnOption(t *testing.T) {
	m := readManifest(t)
	for _, v := range config.Variables() {
		_, offered := m.Schema[config.AddonOption(v.Name)]
		_, excluded := notOptions()[v.Name]
		if offered == excluded {
			t.Errorf("%s: offered as an option %v, listed in notOptions %v; want exactly one", v.Name, offered, excluded)
		}
	}
}

// The options as shipped (the Supervisor writes them to options.json on
// first start) give a configuration the bridge accepts.
func TestDefaultOptionsLoad(t *testing.T) {
	m := readManifest(t)
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	environ, err := addon.Environ(t.Context(), writeOptions(t, m.Options), sup)
	if err != nil {
		t.Fatal(err)
	}
	mustLoad(t, environ)
}

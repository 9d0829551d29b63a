package config

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestEveryFieldIsDeclared(t *testing.T) {
	ty := reflect.TypeFor[Config]()
	seen := map[string]bool{}
	for i := range ty.NumField() {
		sf := ty.Field(i)
		name := varName(sf)
		switch {
		case !strings.HasPrefix(name, envPrefix):
			t.Errorf("%s: env tag %q is not an EM340_* variable", sf.Name, name)
		case seen[name]:
			t.Errorf("%s: %s declared twice", sf.Name, name)
		case sf.Tag.Get("doc") == "" || sf.Tag.Get("allowed") == "":
			t.Errorf("%s: missing doc or allowed tag", sf.Name)
		}
		seen[name] = true
	}
	if got := len(Variables()); got != ty.NumField() {
		t.Errorf("Variables() has %d entries for %d fields", got, ty.NumField())
	}
}

func TestAddonOption(t *testing.T) {
	for in, want := range map[string]string{
		"EM340_SERIAL_DEVICE":       "serial_device",
		"EM340_MQTT_URL":            "mqtt_url",
		"EM340_HA_DISCOVERY_PREFIX": "ha_discovery_prefix",
		"PATH":                      "",
	} {
		if got := AddonOption(in); got != want {
			t.Errorf("AddonOption(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnknownVariables(t *testing.T) {
	got := UnknownVariables([]string{"EM340_SERIAL_BUAD=9600", "EM340_SERIAL_BAUD=9600", "HOME=/root", "EM340_X=1", "EM340_X=2"})
	if want := []string{"EM340_SERIAL_BUAD", "EM340_X"}; !slices.Equal(got, want) {
		t.Errorf("UnknownVariables = %q, want %q", got, want)
	}
}

// exampleEntry is one setting in config.yaml.example.
type exampleEntry struct {
	Variable string `yaml:"variable"`
	Option   string `yaml:"option"`
	Default  string `yaml:"default"`
	Allowed  string `yaml:"allowed"`
	Meaning  string `yaml:"meaning"`
	Addon    string `yaml:"addon,omitempty"`
}

func TestExampleFileMatchesConfig(t *testing.T) {
	raw, err := os.ReadFile("../../config.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var entries []exampleEntry
	if err := dec.Decode(&entries); err != nil {
		t.Fatalf("config.yaml.example: %v", err)
	}

	inFile := map[string]exampleEntry{}
	var fileOrder []string
	for _, e := range entries {
		if _, dup := inFile[e.Variable]; dup {
			t.Errorf("config.yaml.example: %s listed twice", e.Variable)
		}
		inFile[e.Variable] = e
		fileOrder = append(fileOrder, e.Variable)
	}
	var order []string
	for _, v := range Variables() {
		order = append(order, v.Name)
		want := exampleEntry{Variable: v.Name, Option: AddonOption(v.Name), Default: v.Default, Allowed: v.Allowed, Meaning: v.Meaning}
		got, ok := inFile[v.Name]
		if !ok {
			t.Errorf("config.yaml.example lacks %s; add\n%s", v.Name, asYAML(t, want))
			continue
		}
		delete(inFile, v.Name)
		got.Addon = "" // add-on notes live only in the file
		if got != want {
			t.Errorf("config.yaml.example disagrees with Config about %s:\n got %+v\nwant %+v", v.Name, got, want)
		}
	}
	for name := range inFile {
		t.Errorf("config.yaml.example lists %s, which Config does not read", name)
	}
	if !t.Failed() && !slices.Equal(fileOrder, order) {
		t.Errorf("config.yaml.example order %v, want Config's %v", fileOrder, order)
	}
}

func asYAML(t *testing.T, e exampleEntry) string {
	t.Helper()
	b, err := yaml.Marshal([]exampleEntry{e})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

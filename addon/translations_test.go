package addon_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every file in translations/ is one the Supervisor reads, and names every
// option of config.yaml's schema, and nothing else, with a name and a
// description: a new option without its text fails here.
//
// The Supervisor (store/data.py) reads translations/*.{yaml,yml,json} and
// validates each with SCHEMA_APP_TRANSLATIONS (apps/validate.py):
// configuration: {option: {name, description, fields}}, network: {port:
// text}, where name is required and unknown keys are dropped silently
// (REMOVE_EXTRA). A misspelt key would just vanish from the UI, so here it
// is an error.
func TestTranslations(t *testing.T) {
	options := slices.Sorted(maps.Keys(readManifest(t).Schema))
	files, err := os.ReadDir("translations")
	if err != nil {
		t.Fatal(err)
	}
	english := false
	for _, f := range files {
		name := f.Name()
		ext := filepath.Ext(name)
		if !slices.Contains([]string{".yaml", ".yml", ".json"}, ext) {
			t.Errorf("translations/%s: the Supervisor reads only .yaml, .yml and .json files there", name)
			continue
		}
		english = english || strings.TrimSuffix(name, ext) == "en"
		t.Run(name, func(t *testing.T) {
			tr := readYAML(t, filepath.Join("translations", name)) // JSON is YAML too
			for key := range tr {
				if key != "configuration" && key != "network" {
					t.Errorf("top-level key %q, which the Supervisor drops", key)
				}
			}
			configuration, _ := tr["configuration"].(map[string]any)
			for option := range configuration {
				if !slices.Contains(options, option) {
					t.Errorf("%s is not an option of config.yaml", option)
				}
			}
			for _, option := range options {
				entry, ok := configuration[option].(map[string]any)
				if !ok {
					t.Errorf("option %s has no translation", option)
					continue
				}
				for key := range entry {
					if key != "name" && key != "description" && key != "fields" {
						t.Errorf("%s: key %q, which the Supervisor drops", option, key)
					}
				}
				for _, key := range []string{"name", "description"} {
					if text, _ := entry[key].(string); strings.TrimSpace(text) == "" {
						t.Errorf("%s: no %s", option, key)
					}
				}
			}
		})
	}
	if !english {
		t.Error("no translations/en.yaml: the UI would show bare option names")
	}
}

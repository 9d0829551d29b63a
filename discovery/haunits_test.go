package discovery

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/em340-bridge/em340-bridge/meter"
)

// haSensorRules is the part of testdata/sensor_units.json the tests use: HA's
// own DEVICE_CLASS_UNITS and DEVICE_CLASS_STATE_CLASSES for the classes we need.
type haSensorRules struct {
	StateClasses  []string `json:"state_classes"`
	DeviceClasses map[string]struct {
		Units        []*string `json:"units"` // nil entry = no unit key at all
		StateClasses []string  `json:"state_classes"`
	} `json:"device_classes"`
	Validation struct {
		StateClassUnits map[string][]string `json:"state_class_units"`
	} `json:"validation_behaviour"`
}

// loadHASensorRules reads HA's unit table (see testdata/README.md for where it
// comes from and its licence).
func loadHASensorRules(t *testing.T) haSensorRules {
	t.Helper()
	path := filepath.Join("testdata", "sensor_units.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules haSensorRules
	if err := json.Unmarshal(data, &rules); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(rules.DeviceClasses) == 0 || len(rules.StateClasses) == 0 {
		t.Fatalf("%s: no device classes or state classes", path)
	}
	return rules
}

var haID = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// fixture is one bridge + meter pair, as a broker may hold several.
type fixture struct{ base, prefix, deviceID string }

var fixtures = []fixture{
	{"em340", "homeassistant", "235411W"},
	{"em340", "homeassistant", "garage meter #2"},
	{"home/em340-cellar", "ha", "  235411W\x00"}, // same meter behind another bridge
	{"em340b", "homeassistant", "EM340_override-1"},
}

func fixtureConfigs(t *testing.T, f fixture) (Topics, []DeviceConfig) {
	t.Helper()
	topics := mustTopics(t, f.base, f.prefix, f.deviceID)
	origin := testOrigin(t)
	return topics, []DeviceConfig{
		BridgeDevice(topics, origin),
		MeterDevice(topics, origin, testIdentity(), meter.Registers(), testExpire),
	}
}

// TestSensorComponentsFollowHA checks every sensor of both devices against HA's
// rules: what HA would reject, and what would only warn but break statistics.
func TestSensorComponentsFollowHA(t *testing.T) {
	rules := loadHASensorRules(t)
	for _, f := range fixtures {
		_, configs := fixtureConfigs(t, f)
		for _, cfg := range configs {
			d := decodeDevice(t, cfg.Message().Payload)
			if _, ok := d.root["dev"].(map[string]any); !ok {
				t.Errorf("%s: no dev", cfg.Topic)
			}
			if o, ok := d.root["o"].(map[string]any); !ok || o["name"] == "" {
				t.Errorf("%s: no o with a name", cfg.Topic)
			}
			if len(d.components) == 0 {
				t.Errorf("%s: no components", cfg.Topic)
			}
			for key, c := range d.components {
				for _, p := range sensorProblems(rules, c) {
					t.Errorf("%s component %s: %s", cfg.Topic, key, p)
				}
			}
		}
	}
}

// sensorProblems lists every way a sensor component (with the root's shared
// options merged in) breaks HA's rules; nil when HA accepts it cleanly.
func sensorProblems(rules haSensorRules, c map[string]any) []string {
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if c["p"] != "sensor" {
		problem("p = %v, want sensor", c["p"])
	}
	for _, required := range []string{"unique_id", "state_topic", "value_template", "name", "default_entity_id"} {
		if s, _ := c[required].(string); s == "" {
			problem("%s missing or empty", required)
		}
	}
	if cat, ok := c["entity_category"]; ok && cat != "diagnostic" {
		problem("entity_category = %v: a sensor may only be diagnostic", cat)
	}
	rawUnit, hasUnit := c["unit_of_measurement"]
	unit, _ := rawUnit.(string)
	if hasUnit && unit == "" {
		problem("unit_of_measurement is %#v: omit the key instead of an empty unit", rawUnit)
	}
	stateClass, hasStateClass := c["state_class"].(string)
	if hasStateClass && !slices.Contains(rules.StateClasses, stateClass) {
		problem("unknown state_class %q", stateClass)
	}
	if units, ok := rules.Validation.StateClassUnits[stateClass]; ok && !slices.Contains(units, unit) {
		problem("state_class %s needs a unit in %v", stateClass, units)
	}
	options, hasOptions := c["options"]
	_, hasPrecision := c["suggested_display_precision"]

	class, hasClass := c["device_class"].(string)
	if !hasClass {
		// A text sensor or a plain count.
		if hasOptions {
			problem("options without device_class enum")
		}
		if hasPrecision && !hasStateClass && !hasUnit {
			problem("suggested_display_precision on a text sensor makes HA expect a number")
		}
		return problems
	}
	allowed, known := rules.DeviceClasses[class]
	if !known {
		problem("device_class %q is not one HA knows (sensor_units.json)", class)
		return problems
	}
	if !hasUnit {
		if !slices.Contains(allowed.Units, nil) {
			problem("device_class %s needs a unit", class)
		}
	} else if !slices.ContainsFunc(allowed.Units, func(u *string) bool { return u != nil && *u == unit }) {
		problem("unit %q is not valid with device_class %s (HA rejects the config)", unit, class)
	}
	if len(allowed.StateClasses) == 0 {
		if hasStateClass {
			problem("device_class %s takes no state_class, got %q", class, stateClass)
		}
	} else if hasStateClass && !slices.Contains(allowed.StateClasses, stateClass) {
		problem("state_class %q impossible with device_class %s", stateClass, class)
	}
	if class == "enum" {
		if list, _ := options.([]any); len(list) == 0 {
			problem("enum without options")
		}
		if hasUnit || hasStateClass || hasPrecision {
			problem("enum with unit, state_class or precision")
		}
	} else if hasOptions {
		problem("options on device_class %s", class)
	}
	return problems
}

// TestSensorProblemsCatchesBadConfigs guards the checker itself: a checker that
// passes everything would make TestSensorComponentsFollowHA worthless.
func TestSensorProblemsCatchesBadConfigs(t *testing.T) {
	rules := loadHASensorRules(t)
	good := func() map[string]any {
		return map[string]any{"p": "sensor", "unique_id": "u", "state_topic": "s", "value_template": "v",
			"name": "n", "default_entity_id": "sensor.u", "device_class": "energy",
			"unit_of_measurement": "kWh", "state_class": "total_increasing"}
	}
	if problems := sensorProblems(rules, good()); problems != nil {
		t.Fatalf("good component flagged: %v", problems)
	}
	bad := []struct {
		name   string
		mutate func(map[string]any)
	}{
		{"energy measurement", func(c map[string]any) { c["state_class"] = "measurement" }},
		{"wrong unit case", func(c map[string]any) { c["unit_of_measurement"] = "KWh" }},
		{"empty unit", func(c map[string]any) { c["unit_of_measurement"] = "" }},
		{"unknown class", func(c map[string]any) { c["device_class"] = "energy_import" }},
		{"VAr alias", func(c map[string]any) {
			c["device_class"], c["unit_of_measurement"], c["state_class"] = "reactive_power", "VAr", "measurement"
		}},
		{"pf with empty unit", func(c map[string]any) {
			c["device_class"], c["unit_of_measurement"], c["state_class"] = "power_factor", "", "measurement"
		}},
		{"voltage without unit", func(c map[string]any) {
			c["device_class"], c["state_class"] = "voltage", "measurement"
			delete(c, "unit_of_measurement")
		}},
		{"enum with state class", func(c map[string]any) {
			c["device_class"], c["options"] = "enum", []any{"a"}
			delete(c, "unit_of_measurement")
		}},
		{"enum without options", func(c map[string]any) {
			c["device_class"] = "enum"
			delete(c, "unit_of_measurement")
			delete(c, "state_class")
		}},
		{"options on energy", func(c map[string]any) { c["options"] = []any{"a"} }},
		{"config category", func(c map[string]any) { c["entity_category"] = "config" }},
		{"no unique_id", func(c map[string]any) { delete(c, "unique_id") }},
		{"text with precision", func(c map[string]any) {
			for _, k := range []string{"device_class", "unit_of_measurement", "state_class"} {
				delete(c, k)
			}
			c["suggested_display_precision"] = 0.0
		}},
	}
	for _, tc := range bad {
		c := good()
		tc.mutate(c)
		if sensorProblems(rules, c) == nil {
			t.Errorf("%s: not flagged", tc.name)
		}
	}
}

// TestIDsAreUniqueAndValid checks unique_ids within each device, across the two
// devices and across bridges, and the ids HA parses out of topics.
func TestIDsAreUniqueAndValid(t *testing.T) {
	owner := map[string]string{} // unique_id → device identifier that first used it
	for _, f := range fixtures {
		topics, configs := fixtureConfigs(t, f)
		for _, id := range []string{topics.DeviceID(), topics.BridgeID(), topics.MeterID()} {
			if !haID.MatchString(id) {
				t.Errorf("%+v: id %q outside [a-zA-Z0-9_-]", f, id)
			}
		}
		for _, cfg := range configs {
			// <prefix>/device/<object_id>/config
			objectID := filepath.Base(filepath.Dir(cfg.Topic))
			if !haID.MatchString(objectID) || cfg.Topic != f.prefix+"/device/"+objectID+"/config" {
				t.Errorf("config topic %q", cfg.Topic)
			}
			device := cfg.Device.Identifiers[0]
			for key, c := range cfg.Components {
				if !haID.MatchString(key) {
					t.Errorf("%s: component key %q outside [a-zA-Z0-9_-]", cfg.Topic, key)
				}
				if prev, ok := owner[c.UniqueID]; ok && prev != device {
					t.Errorf("unique_id %q used by %s and %s", c.UniqueID, prev, device)
				}
				owner[c.UniqueID] = device
			}
		}
		// Within one fixture every component must have its own id.
		seen := map[string]bool{}
		for _, cfg := range configs {
			for _, c := range cfg.Components {
				if seen[c.UniqueID] {
					t.Errorf("%+v: unique_id %q twice", f, c.UniqueID)
				}
				seen[c.UniqueID] = true
			}
		}
	}
	// The same meter behind two bridges is the same HA device, so it keeps its ids.
	a := MeterDevice(mustTopics(t, "em340", "homeassistant", "235411W"), testOrigin(t), testIdentity(), meter.Registers(), testExpire)
	b := MeterDevice(mustTopics(t, "other", "ha", "235411W"), testOrigin(t), testIdentity(), meter.Registers(), testExpire)
	if a.Components["power"].UniqueID != b.Components["power"].UniqueID {
		t.Errorf("meter unique_id depends on the base topic: %q vs %q", a.Components["power"].UniqueID, b.Components["power"].UniqueID)
	}
}

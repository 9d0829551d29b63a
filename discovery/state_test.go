package discovery

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/em340-bridge/em340-bridge/meter"
)

func TestStateFormatsToRegisterPrecision(t *testing.T) {
	v := func(key string, x float64) meter.Value { return meter.Value{Register: registerByKey(t, key), Value: x} }
	for _, tc := range []struct {
		name    string
		reading meter.Reading
		want    []string // "key":value members that must appear
		absent  []string // keys that must not appear
	}{
		{"float noise trimmed to the register's decimals",
			meter.Reading{Values: []meter.Value{v("voltage_l1_n", 230.10000000000002), v("current_l1", 1.2345000000000002),
				v("power", -1234.5), v("power_factor", 0.98), v("frequency", 49.98)}},
			[]string{`"voltage_l1_n":230.1`, `"current_l1":1.235`, `"power":-1234.5`, `"power_factor":0.980`, `"frequency":50.0`},
			nil},
		{"fine energy has 3 decimals",
			meter.Reading{Fine: true, Values: []meter.Value{v("energy_import", 12345.678), v("energy_import_partial", 12.3)}},
			[]string{`"energy_import":12345.678`, `"energy_import_partial":12.3`}, nil},
		{"coarse energy has 1 decimal",
			meter.Reading{Values: []meter.Value{v("energy_import", 12345.6), v("energy_export", 0)}},
			[]string{`"energy_import":12345.6`, `"energy_export":0.0`}, nil},
		{"negative zero loses its sign",
			meter.Reading{Values: []meter.Value{v("power_l1", -0.04), v("current_l2", math.Copysign(0, -1))}},
			[]string{`"power_l1":0.0`, `"current_l2":0.000`}, nil},
		{"rejected values are absent, never zero",
			meter.Reading{Values: []meter.Value{v("voltage_l1_n", 230)}},
			[]string{`"voltage_l1_n":230.0`}, []string{"energy_import", "energy_export", "power", "phase_sequence"}},
		{"non-finite values are absent",
			meter.Reading{Values: []meter.Value{v("power", math.NaN()), v("power_l1", math.Inf(1))}},
			nil, []string{"power", "power_l1"}},
		{"enum as option text",
			meter.Reading{Values: []meter.Value{v("phase_sequence", 1)}},
			[]string{`"phase_sequence":"L1-L3-L2"`}, nil},
		{"enum out of range is absent",
			meter.Reading{Values: []meter.Value{v("phase_sequence", 7)}},
			nil, []string{"phase_sequence"}},
	} {
		got := string(State(tc.reading, testIdentity()))
		if !json.Valid([]byte(got)) {
			t.Errorf("%s: invalid JSON %s", tc.name, got)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %s lacks %s", tc.name, got, w)
			}
		}
		var decoded map[string]json.RawMessage
		_ = json.Unmarshal([]byte(got), &decoded)
		for _, key := range tc.absent {
			if _, ok := decoded[key]; ok {
				t.Errorf("%s: %s present in %s", tc.name, key, got)
			}
		}
	}
}

func TestStateIdentityDiagnostics(t *testing.T) {
	id := testIdentity()
	id.MeasuringSystem = 1
	id.WrongConnection = 0b11
	var got map[string]any
	if err := json.Unmarshal(State(meter.Reading{}, id), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{KeyMeasurementMode: "B", KeyMeasuringSystem: "3-phase",
		KeyWiringStatus: "wrong voltage sequence, phase 1 inverted"}
	assertJSONEqual(t, "empty reading", got, want)
}

// TestStateKeysMatchComponents: every key State can write has a component that
// reads it, and it is the component's own key.
func TestStateKeysMatchComponents(t *testing.T) {
	var values []meter.Value
	for _, r := range meter.Registers() {
		values = append(values, meter.Value{Register: r, Value: r.Min})
	}
	var state map[string]json.RawMessage
	if err := json.Unmarshal(State(meter.Reading{Values: values}, testIdentity()), &state); err != nil {
		t.Fatal(err)
	}
	cfg := MeterDevice(mustTopics(t, "em340", "homeassistant", "1"), testOrigin(t), testIdentity(), meter.Registers(), testExpire)
	if len(state) != len(cfg.Components)-1 {
		t.Errorf("state has %d keys, config %d components besides the status", len(state), len(cfg.Components)-1)
	}
	for key := range state {
		if c, ok := cfg.Components[key]; !ok || (c.ValueTemplate != NumberTemplate(key) && c.ValueTemplate != TextTemplate(key)) {
			t.Errorf("state key %q has no component reading it", key)
		}
	}
}

func TestStateKeepsRegisterOrderAndFirstDuplicate(t *testing.T) {
	r := meter.Reading{Values: []meter.Value{
		{Register: registerByKey(t, "voltage_l2_n"), Value: 231},
		{Register: registerByKey(t, "voltage_l1_n"), Value: 230},
		{Register: registerByKey(t, "voltage_l1_n"), Value: 999},
	}}
	got := string(State(r, testIdentity()))
	want := `{"voltage_l2_n":231.0,"voltage_l1_n":230.0,"measurement_mode":"B","measuring_system":"3-phase + N","wiring_status":"correct"}`
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestStateMessage(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "235411W")
	msg := StateMessage(topics, meter.Reading{}, testIdentity())
	if msg.Topic != "em340/235411W/state" || msg.Retain || msg.QoS != 1 {
		t.Errorf("%+v", msg)
	}
}

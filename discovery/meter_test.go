package discovery

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/em340-bridge/em340-bridge/meter"
)

func TestMeterDeviceGolden(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "235411W")
	cfg := MeterDevice(topics, testOrigin(t), testIdentity(), meter.Registers(), testExpire)
	msg := cfg.Message()
	if msg.Topic != "homeassistant/device/em340_235411W/config" || !msg.Retain || msg.QoS != 1 {
		t.Errorf("message = %q retain=%v qos=%d", msg.Topic, msg.Retain, msg.QoS)
	}

	var got struct {
		Dev              map[string]any            `json:"dev"`
		O                map[string]any            `json:"o"`
		StateTopic       string                    `json:"state_topic"`
		AvailabilityMode string                    `json:"availability_mode"`
		Cmps             map[string]map[string]any `json:"cmps"`
	}
	if err := json.Unmarshal(msg.Payload, &got); err != nil {
		t.Fatal(err)
	}
	wantDev := map[string]any{
		"identifiers": []any{"em340_235411W"}, "name": "EM340 235411W", "manufacturer": "Carlo Gavazzi",
		"model": "EM340", "model_id": "341", "sw_version": "A0", "serial_number": "235411W",
		"via_device": "em340_bridge_em340",
	}
	assertJSONEqual(t, "dev", got.Dev, wantDev)
	assertJSONEqual(t, "o", got.O, map[string]any{"name": "em340-bridge", "sw": "1.2.3",
		"url": "https://github.com/em340-bridge/em340-bridge"})
	if got.StateTopic != "em340/235411W/state" || got.AvailabilityMode != "all" {
		t.Errorf("root state_topic %q, availability_mode %q", got.StateTopic, got.AvailabilityMode)
	}

	if want := len(meter.Registers()) + 4; len(got.Cmps) != want {
		t.Errorf("%d components, want one per register, 3 identity diagnostics and the status = %d", len(got.Cmps), want)
	}
	assertJSONEqual(t, "meter_status", got.Cmps["meter_status"], map[string]any{
		"p": "sensor", "unique_id": "em340_235411W_meter_status", "default_entity_id": "sensor.em340_235411w_meter_status",
		"name": "Status", "entity_category": "diagnostic", "value_template": "{{ value }}",
		"state_topic":  "em340/235411W/status",
		"availability": []any{map[string]any{"topic": "em340/bridge/availability", "payload_available": "online", "payload_not_available": "offline"}},
	})
	assertJSONEqual(t, "voltage_l1_n", got.Cmps["voltage_l1_n"], map[string]any{
		"p": "sensor", "unique_id": "em340_235411W_voltage_l1_n", "default_entity_id": "sensor.em340_235411w_voltage_l1_n",
		"name": "Voltage L1-N", "device_class": "voltage", "unit_of_measurement": "V", "state_class": "measurement",
		"suggested_display_precision": 1.0, "value_template": "{{ value_json.voltage_l1_n | default('') }}",
		"expire_after": 18.0,
	})
	assertJSONEqual(t, "power_factor", got.Cmps["power_factor"], map[string]any{
		"p": "sensor", "unique_id": "em340_235411W_power_factor", "default_entity_id": "sensor.em340_235411w_power_factor",
		"name": "Power factor", "device_class": "power_factor", "state_class": "measurement",
		"suggested_display_precision": 3.0, "value_template": "{{ value_json.power_factor | default('') }}",
		"expire_after": 18.0,
	})
	assertJSONEqual(t, "phase_sequence", got.Cmps["phase_sequence"], map[string]any{
		"p": "sensor", "unique_id": "em340_235411W_phase_sequence", "default_entity_id": "sensor.em340_235411w_phase_sequence",
		"name": "Phase sequence", "device_class": "enum", "options": []any{"L1-L2-L3", "L1-L3-L2"},
		"entity_category": "diagnostic", "value_template": "{{ value_json.phase_sequence | default(this.state) }}",
		"expire_after": 18.0,
	})
	assertJSONEqual(t, "measurement_mode", got.Cmps["measurement_mode"], map[string]any{
		"p": "sensor", "unique_id": "em340_235411W_measurement_mode", "default_entity_id": "sensor.em340_235411w_measurement_mode",
		"name": "Measurement mode", "device_class": "enum", "options": []any{"A", "B"},
		"entity_category": "diagnostic", "value_template": "{{ value_json.measurement_mode | default(this.state) }}",
		"expire_after": 18.0,
	})
	for _, key := range []string{"measuring_system", "wiring_status"} {
		c := got.Cmps[key]
		if c["entity_category"] != "diagnostic" || c["value_template"] != TextTemplate(key) {
			t.Errorf("%s: %v", key, c)
		}
		for _, numeric := range []string{"device_class", "unit_of_measurement", "state_class", "suggested_display_precision"} {
			if _, ok := c[numeric]; ok {
				t.Errorf("%s is a text sensor but has %s", key, numeric)
			}
		}
	}
}

// TestEnergyDashboardSensors: HA's energy dashboard only offers energy +
// total(_increasing) sensors for grid import and export.
func TestEnergyDashboardSensors(t *testing.T) {
	cfg := MeterDevice(mustTopics(t, "em340", "homeassistant", "1"), testOrigin(t), testIdentity(), meter.Registers(), testExpire)
	for _, key := range []string{"energy_import", "energy_export"} {
		c, ok := cfg.Components[key]
		if !ok {
			t.Fatalf("no %s component", key)
		}
		if c.DeviceClass != "energy" || c.Unit != "kWh" || c.StateClass != "total_increasing" {
			t.Errorf("%s: %s / %s / %s, want energy / kWh / total_increasing", key, c.DeviceClass, c.Unit, c.StateClass)
		}
	}
}

// TestMeterAvailabilityNeedsBridgeLinkAndMeter: a meter value is only shown
// while the bridge, the serial link and the meter all say online; the link's
// entry is the bridge's own link topic, known before the meter answers.
func TestMeterAvailabilityNeedsBridgeLinkAndMeter(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "235411W")
	cfg := MeterDevice(topics, testOrigin(t), testIdentity(), meter.Registers(), testExpire)
	d := decodeDevice(t, cfg.Message().Payload)
	want := []string{topics.BridgeAvailability(), topics.Link(), topics.MeterAvailability()}
	for key, c := range d.components {
		if key == KeyMeterStatus {
			// It says why the rest is unavailable: only the bridge gates it.
			if got := availabilityTopics(t, c); !slices.Equal(got, []string{topics.BridgeAvailability()}) || c["state_topic"] != topics.MeterStatus() {
				t.Errorf("%s: availability %v, state_topic %v", key, got, c["state_topic"])
			}
			continue
		}
		if got := availabilityTopics(t, c); !slices.Equal(got, want) {
			t.Errorf("%s: availability %v, want %v", key, got, want)
		}
		if c["availability_mode"] != "all" {
			t.Errorf("%s: availability_mode %v, want all", key, c["availability_mode"])
		}
		if c["state_topic"] != topics.MeterState() {
			t.Errorf("%s: state_topic %v", key, c["state_topic"])
		}
		for _, item := range c["availability"].([]any) {
			m := item.(map[string]any)
			if m["payload_available"] != "online" || m["payload_not_available"] != "offline" {
				t.Errorf("%s: availability payloads %v", key, m)
			}
			tpl, templated := m["value_template"]
			switch {
			case m["topic"] == topics.Link() && tpl != LinkOnlineTemplate:
				t.Errorf("%s: link availability template %v, want %q", key, tpl, LinkOnlineTemplate)
			case m["topic"] != topics.Link() && templated:
				t.Errorf("%s: availability on %v has a template", key, m["topic"])
			}
		}
	}
}

func TestMeterDevicePrecisionFollowsFineEnergy(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "1")
	for _, tc := range []struct {
		fine bool
		key  string
		want int
	}{
		{true, "energy_import", 3},
		{false, "energy_import", 1},
		{true, "energy_import_partial", 1}, // no 3-decimal register
		{true, "power", 1},
		{true, "current_l1", 3},
		{true, "frequency", 1},
	} {
		id := testIdentity()
		id.FineEnergy = tc.fine
		c := MeterDevice(topics, testOrigin(t), id, meter.Registers(), testExpire).Components[tc.key]
		if c.SuggestedDisplayPrecision == nil || *c.SuggestedDisplayPrecision != tc.want {
			t.Errorf("fine=%v %s: precision %v, want %d", tc.fine, tc.key, c.SuggestedDisplayPrecision, tc.want)
		}
	}
}

func TestIdentityKeysDoNotCollideWithRegisters(t *testing.T) {
	for _, r := range meter.Registers() {
		if slices.Contains([]string{KeyMeasurementMode, KeyMeasuringSystem, KeyWiringStatus}, r.Key) {
			t.Errorf("register key %q collides with an identity diagnostic", r.Key)
		}
	}
}

func TestMeterDeviceOmitsUnknownModelCode(t *testing.T) {
	id := testIdentity()
	id.ModelCode = 0
	cfg := MeterDevice(mustTopics(t, "em340", "homeassistant", "1"), testOrigin(t), id, meter.Registers(), testExpire)
	if cfg.Device.ModelID != "" {
		t.Errorf("model_id %q for model code 0", cfg.Device.ModelID)
	}
}

func assertJSONEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

package discovery

import "testing"

func TestTopicsLayout(t *testing.T) {
	topics := mustTopics(t, "em340/", "homeassistant", "235411W")
	for _, tc := range []struct{ name, got, want string }{
		{"DeviceID", topics.DeviceID(), "235411W"},
		{"BridgeID", topics.BridgeID(), "em340_bridge_em340"},
		{"MeterID", topics.MeterID(), "em340_235411W"},
		{"BridgeAvailability", topics.BridgeAvailability(), "em340/bridge/availability"},
		{"Link", topics.Link(), "em340/bridge/link"},
		{"MeterAvailability", topics.MeterAvailability(), "em340/235411W/availability"},
		{"MeterState", topics.MeterState(), "em340/235411W/state"},
		{"BridgeConfig", topics.BridgeConfig(), "homeassistant/device/em340_bridge_em340/config"},
		{"MeterConfig", topics.MeterConfig(), "homeassistant/device/em340_235411W/config"},
		{"HAStatus", topics.HAStatus(), "homeassistant/status"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	nested := mustTopics(t, "home/em340", "ha", "x")
	if got, want := nested.BridgeID(), "em340_bridge_home_em340"; got != want {
		t.Errorf("nested base: BridgeID = %q, want %q", got, want)
	}
	if got, want := nested.MeterState(), "home/em340/x/state"; got != want {
		t.Errorf("nested base: MeterState = %q, want %q", got, want)
	}
}

func TestNewTopicsRejects(t *testing.T) {
	for _, tc := range []struct{ name, base, prefix, deviceID string }{
		{"empty base", "", "homeassistant", "1"},
		{"slash-only base", "/", "homeassistant", "1"},
		{"wildcard base", "em340/+", "homeassistant", "1"},
		{"multi-level wildcard prefix", "em340", "homeassistant/#", "1"},
		{"empty prefix", "em340", "", "1"},
		{"reserved $ base", "$SYS", "homeassistant", "1"},
		{"empty device id", "em340", "homeassistant", ""},
		{"padding-only device id", "em340", "homeassistant", " \x00 "},
		{"device id shadows bridge topics", "em340", "homeassistant", "bridge"},
		{"meter id equals bridge id", "em340", "homeassistant", "bridge_em340"},
	} {
		if _, err := NewTopics(tc.base, tc.prefix, tc.deviceID); err == nil {
			t.Errorf("%s: NewTopics(%q, %q, %q) accepted", tc.name, tc.base, tc.prefix, tc.deviceID)
		}
	}
}

func TestSanitizeID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"235411W", "235411W"},
		{"235411W\x00\x00", "235411W"},
		{"  EM340-a_1 ", "EM340-a_1"},
		{"garage meter #2", "garage_meter__2"},
		{"home/em340", "home_em340"},
		{"zähler", "z_hler"},
		{"", ""},
	} {
		if got := SanitizeID(tc.in); got != tc.want {
			t.Errorf("SanitizeID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEntityObjectID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"em340_235411W_power", "em340_235411w_power"},
		{"em340_garage_meter__2_power", "em340_garage_meter_2_power"},
		{"em340_EM340-a_1_voltage_l1_n", "em340_em340_a_1_voltage_l1_n"},
		{"_x-", "x"},
	} {
		if got := entityObjectID(tc.in); got != tc.want {
			t.Errorf("entityObjectID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

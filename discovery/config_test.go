package discovery

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/em340-bridge/em340-bridge/meter"
)

func TestNewOrigin(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"", true},
		{"https://github.com/em340-bridge/em340-bridge", true},
		{"http://example.org/x", true},
		{"github.com/em340-bridge", false},
		{"ftp://example.org", false},
		{"https://", false},
	} {
		o, err := NewOrigin("v1", tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("NewOrigin(%q): err %v, want ok=%v", tc.url, err, tc.ok)
			continue
		}
		if err == nil && (o.Name != "em340-bridge" || o.SWVersion != "v1" || o.SupportURL != tc.url) {
			t.Errorf("NewOrigin(%q) = %+v", tc.url, o)
		}
	}
	b, _ := json.Marshal(Origin{Name: "em340-bridge"})
	if string(b) != `{"name":"em340-bridge"}` {
		t.Errorf("empty version and URL should be omitted: %s", b)
	}
}

func TestRemoval(t *testing.T) {
	old := mustTopics(t, "em340", "homeassistant", "old-serial")
	msg := Removal(old.MeterConfig())
	if msg.Topic != "homeassistant/device/em340_old-serial/config" || len(msg.Payload) != 0 || msg.Payload == nil ||
		!msg.Retain || msg.QoS != 1 {
		t.Errorf("%+v", msg)
	}
}

func TestAvailabilityMessages(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "235411W")
	for _, tc := range []struct {
		msg          Message
		topic, value string
	}{
		{BridgeAvailability(topics, true), "em340/bridge/availability", "online"},
		{BridgeAvailability(topics, false), "em340/bridge/availability", "offline"},
		{MeterAvailability(topics, true), "em340/235411W/availability", "online"},
		{MeterAvailability(topics, false), "em340/235411W/availability", "offline"},
	} {
		if tc.msg.Topic != tc.topic || string(tc.msg.Payload) != tc.value || !tc.msg.Retain || tc.msg.QoS != 1 {
			t.Errorf("%+v, want %s %s retained", tc.msg, tc.topic, tc.value)
		}
	}
}

func TestComponentRemoval(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "1")
	current := MeterDevice(topics, testOrigin(t), testIdentity(), meter.Registers(), testExpire)

	// A previous version of the bridge published two keys this one no longer has.
	previous := current.WithRemovedComponents()
	previous.Components["energy_old_a"] = Component{Platform: "sensor", UniqueID: "a"}
	previous.Components["energy_old_b"] = Component{Platform: "sensor", UniqueID: "b"}
	stale, err := StaleComponents(previous.Message().Payload, current)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stale, []string{"energy_old_a", "energy_old_b"}) {
		t.Fatalf("stale = %v", stale)
	}

	removal := current.WithRemovedComponents(stale...)
	var got struct {
		Cmps map[string]map[string]any `json:"cmps"`
	}
	if err := json.Unmarshal(removal.Message().Payload, &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range stale {
		assertJSONEqual(t, key, got.Cmps[key], map[string]any{"p": "sensor"})
	}
	if _, ok := current.Components["energy_old_a"]; ok {
		t.Error("WithRemovedComponents modified the original")
	}
	if len(got.Cmps) != len(current.Components)+2 {
		t.Errorf("removal config has %d components, want the current ones plus 2", len(got.Cmps))
	}

	if stale, err := StaleComponents(nil, current); err != nil || stale != nil {
		t.Errorf("no previous config: %v, %v", stale, err)
	}
	if _, err := StaleComponents([]byte("{"), current); err == nil {
		t.Error("garbage previous config accepted")
	}
}

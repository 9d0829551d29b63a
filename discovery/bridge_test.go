package discovery

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestBridgeDeviceGolden(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "235411W")
	msg := BridgeDevice(topics, testOrigin(t)).Message()
	if msg.Topic != "homeassistant/device/em340_bridge_em340/config" || !msg.Retain {
		t.Errorf("message %q retain=%v", msg.Topic, msg.Retain)
	}
	var got struct {
		Dev        map[string]any            `json:"dev"`
		O          map[string]any            `json:"o"`
		StateTopic string                    `json:"state_topic"`
		Cmps       map[string]map[string]any `json:"cmps"`
	}
	if err := json.Unmarshal(msg.Payload, &got); err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, "dev", got.Dev, map[string]any{"identifiers": []any{"em340_bridge_em340"},
		"name": "EM340 bridge", "manufacturer": "em340-bridge", "sw_version": "1.2.3"})
	if got.O["name"] != "em340-bridge" || got.O["sw"] != "1.2.3" {
		t.Errorf("o = %v", got.O)
	}
	if got.StateTopic != "em340/bridge/link" {
		t.Errorf("state_topic %q", got.StateTopic)
	}
	assertJSONEqual(t, "link_state", got.Cmps[KeyLinkState], map[string]any{
		"p": "sensor", "unique_id": "em340_bridge_em340_link_state", "default_entity_id": "sensor.em340_bridge_em340_link_state",
		"name": "Link state", "device_class": "enum", "options": []any{"online", "reconnecting", "offline"},
		"entity_category": "diagnostic", "value_template": "{{ value_json.state }}",
	})
	for _, tc := range []struct{ key, template, class, unit, stateClass string }{
		{KeyLinkCause, "{{ value_json.cause[:255] }}", "", "", ""},
		{KeyReconnects, "{{ value_json.reconnects }}", "", "", "total_increasing"},
		{KeyLastOutage, "{{ value_json.last_outage_s }}", "duration", "s", "measurement"},
		{KeySerialDevice, "{{ value_json.device }}", "", "", ""},
	} {
		c := got.Cmps[tc.key]
		str := func(k string) string { s, _ := c[k].(string); return s }
		if str("value_template") != tc.template || str("device_class") != tc.class ||
			str("unit_of_measurement") != tc.unit || str("state_class") != tc.stateClass ||
			str("entity_category") != "diagnostic" {
			t.Errorf("%s: %v", tc.key, c)
		}
	}
}

// TestLinkStateAvailableWhileBridgeIs: the link-state entity must say "offline"
// when the link is down, so it may not depend on the meter availability topic.
func TestLinkStateAvailableWhileBridgeIs(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "235411W")
	d := decodeDevice(t, BridgeDevice(topics, testOrigin(t)).Message().Payload)
	for key, c := range d.components {
		if got := availabilityTopics(t, c); !slices.Equal(got, []string{topics.BridgeAvailability()}) {
			t.Errorf("%s: availability %v, want only %s", key, got, topics.BridgeAvailability())
		}
		if c["state_topic"] != topics.Link() {
			t.Errorf("%s: state_topic %v", key, c["state_topic"])
		}
	}
}

// TestLinkTemplatesReadLinkPayload ties the bridge components' templates to the
// fields LinkPayload writes, so renaming one side breaks the test.
func TestLinkTemplatesReadLinkPayload(t *testing.T) {
	var payload map[string]any
	if err := json.Unmarshal(LinkPayload(Link{State: LinkOnline}), &payload); err != nil {
		t.Fatal(err)
	}
	cfg := BridgeDevice(mustTopics(t, "em340", "homeassistant", "1"), testOrigin(t))
	for key, c := range cfg.Components {
		found := false
		for field := range payload {
			if c.ValueTemplate == valueTemplate(field) || c.ValueTemplate == "{{ value_json."+field+"[:255] }}" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: template %q reads no field of the link payload %v", key, c.ValueTemplate, payload)
		}
	}
	if opts := cfg.Components[KeyLinkState].Options; !slices.Equal(opts, []string{string(LinkOnline), string(LinkReconnecting), string(LinkOffline)}) {
		t.Errorf("link state options %v", opts)
	}
}

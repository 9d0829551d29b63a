package discovery

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
)

// testExpire is the freshness bound the tests configure: 17.5 s rounds up to 18.
const testExpire = 17500 * time.Millisecond

// sharedOptions are the root options of a device config that components
// inherit unless they set their own (HA's SHARED_OPTIONS).
var sharedOptions = []string{"availability", "availability_mode", "availability_topic",
	"availability_template", "payload_available", "payload_not_available", "state_topic", "command_topic"}

// decodedDevice is a device config as HA receives it: generic JSON, so tests see
// which keys are present on the wire, not just Go zero values.
type decodedDevice struct {
	root       map[string]any
	components map[string]map[string]any // with the root's shared options merged in
}

func decodeDevice(t *testing.T, payload []byte) decodedDevice {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(payload, &root); err != nil {
		t.Fatalf("device config is not JSON: %v\n%s", err, payload)
	}
	cmps, ok := root["cmps"].(map[string]any)
	if !ok {
		t.Fatalf("device config has no cmps object: %s", payload)
	}
	d := decodedDevice{root: root, components: map[string]map[string]any{}}
	for key, raw := range cmps {
		c, ok := raw.(map[string]any)
		if !ok {
			t.Fatalf("component %q is not an object", key)
		}
		effective := map[string]any{}
		for _, opt := range sharedOptions {
			if v, ok := root[opt]; ok {
				effective[opt] = v
			}
		}
		for k, v := range c {
			effective[k] = v
		}
		d.components[key] = effective
	}
	return d
}

// availabilityTopics lists the topics of an effective availability option.
func availabilityTopics(t *testing.T, c map[string]any) []string {
	t.Helper()
	if topic, ok := c["availability_topic"].(string); ok {
		return []string{topic}
	}
	list, _ := c["availability"].([]any)
	var topics []string
	for _, item := range list {
		m, _ := item.(map[string]any)
		topic, _ := m["topic"].(string)
		topics = append(topics, topic)
	}
	return topics
}

func mustTopics(t *testing.T, base, prefix, deviceID string) Topics {
	t.Helper()
	topics, err := NewTopics(base, prefix, deviceID)
	if err != nil {
		t.Fatalf("NewTopics(%q, %q, %q): %v", base, prefix, deviceID, err)
	}
	return topics
}

func testOrigin(t *testing.T) Origin {
	t.Helper()
	o, err := NewOrigin("1.2.3", "https://github.com/em340-bridge/em340-bridge")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func testIdentity() meter.Identity {
	return meter.Identity{ModelCode: meter.ModelEM340, Serial: "235411W", Firmware: "A0",
		MeasurementMode: meter.MeasurementModeB, MeasuringSystem: 0, FineEnergy: true}
}

func registerByKey(t *testing.T, key string) meter.Register {
	t.Helper()
	for _, r := range meter.Registers() {
		if r.Key == key {
			return r
		}
	}
	t.Fatalf("register %q not in the table", key)
	return meter.Register{}
}

package hass

import (
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/meter"
)

// bridgeMessages feeds HA what the bridge would publish for one meter.
type bridgeMessages struct {
	t      *testing.T
	h      *HA
	topics discovery.Topics
	origin discovery.Origin
}

func newBridgeMessages(t *testing.T) *bridgeMessages {
	topics, err := discovery.NewTopics("em340", "homeassistant", "235411W")
	if err != nil {
		t.Fatal(err)
	}
	origin, err := discovery.NewOrigin("test", "")
	if err != nil {
		t.Fatal(err)
	}
	return &bridgeMessages{t: t, h: New("homeassistant"), topics: topics, origin: origin}
}

func (b *bridgeMessages) send(m discovery.Message) Change {
	b.t.Helper()
	c, err := b.h.Apply(Message{Topic: m.Topic, Payload: string(m.Payload), Retain: m.Retain, At: time.Now()})
	if err != nil {
		b.t.Fatalf("HA would warn: %v", err)
	}
	return c
}

func (b *bridgeMessages) meterConfig(firmware string) discovery.Message {
	id := meter.Identity{ModelCode: meter.ModelEM340, Serial: "235411W", Firmware: firmware, FineEnergy: true}
	return discovery.MeterDevice(b.topics, b.origin, id, meter.Registers(), 0).Message()
}

func register(t *testing.T, key string) meter.Register {
	for _, r := range meter.Registers() {
		if r.Key == key {
			return r
		}
	}
	t.Fatalf("no register %q", key)
	return meter.Register{}
}

// TestChanges: discovery, an unchanged and a changed config, availability in
// mode "all" over the bridge, the link and the meter, the values HA keeps and
// shows, and removal, each reported as the Change it is.
func TestChanges(t *testing.T) {
	b := newBridgeMessages(t)
	c := b.send(b.meterConfig("B0"))
	m := c.Discovered
	if m == nil || m.Config.Device.Name != "EM340 235411W" || m.Config.Device.SerialNumber != "235411W" || m.Config.Device.SWVersion != "B0" {
		t.Fatalf("not discovered: %+v", c)
	}
	if c := b.send(b.meterConfig("B0")); c.Discovered != nil || c.Updated != nil {
		t.Errorf("the same config again is no change: %+v", c)
	}
	if c := b.send(b.meterConfig("B1")); c.Updated != m {
		t.Errorf("a changed config is an update: %+v", c)
	}
	if b.h.Find("energy_import") != m || b.h.Find("no_such_key") != nil {
		t.Error("Find")
	}
	importID := b.topics.MeterID() + "_energy_import"
	if got := b.h.Shown(importID, time.Now()); got != Unavailable {
		t.Errorf("before any availability: %q, want unavailable", got)
	}

	reading := meter.Reading{Fine: true, Values: []meter.Value{
		{Register: register(t, "energy_import"), Value: 12345.6784},
		{Register: register(t, "phase_sequence"), Value: 1},
	}}
	id := meter.Identity{ModelCode: meter.ModelEM340, Serial: "235411W"}
	if c := b.send(discovery.StateMessage(b.topics, reading, id)); c.State != m || m.LastState.IsZero() {
		t.Errorf("state not taken: %+v", c)
	}
	// Mode "all": the meter needs the bridge, the link and itself online.
	if c := b.send(discovery.MeterAvailability(b.topics, true)); len(c.Availability) != 0 {
		t.Errorf("available with the bridge unheard of: %+v", c.Availability)
	}
	if c := b.send(discovery.LinkMessage(b.topics, discovery.Link{State: discovery.LinkOnline})); len(c.Availability) != 0 {
		t.Errorf("available with the bridge unheard of: %+v", c.Availability)
	}
	if c := b.send(discovery.BridgeAvailability(b.topics, true)); len(c.Availability) != 1 || c.Availability[0] != m {
		t.Errorf("availability change not reported: %+v", c.Availability)
	}
	now := time.Now()
	for key, want := range map[string]string{"energy_import": "12345.678 kWh", "phase_sequence": "L1-L3-L2",
		"energy_export": Unknown, "measurement_mode": "A"} {
		if got := b.h.Shown(b.topics.MeterID()+"_"+key, now); got != want {
			t.Errorf("%s shown as %q, want %q", key, got, want)
		}
	}
	if got := b.h.Value(importID); got != "12345.678" {
		t.Errorf("native value %q", got)
	}
	if c := b.send(discovery.LinkMessage(b.topics, discovery.Link{State: discovery.LinkReconnecting})); len(c.Availability) != 1 {
		t.Errorf("link down: %+v", c.Availability)
	}
	if got, v := b.h.Shown(importID, time.Now()), b.h.Value(importID); got != Unavailable || v != "12345.678" {
		t.Errorf("link down: shown %q, value %q; want unavailable, the value kept", got, v)
	}
	if c := b.send(discovery.Removal(b.topics.MeterConfig())); c.Removed != "EM340 235411W" || b.h.Find("energy_import") != nil {
		t.Errorf("removal: %+v", c)
	}
}

// TestLatestAvailability: without availability_mode, the topic that spoke
// last decides.
func TestLatestAvailability(t *testing.T) {
	h := New("homeassistant")
	cfg := `{"dev":{"identifiers":["m"]},"o":{"name":"x"},"state_topic":"s",
	  "availability":[{"topic":"a","payload_available":"online","payload_not_available":"offline"},
	                  {"topic":"b","payload_available":"online","payload_not_available":"offline"}],
	  "cmps":{"e":{"p":"sensor","unique_id":"m_e","value_template":"{{ value_json.e }}"}}}`
	steps := []struct {
		topic, payload string
		want           bool
	}{
		{"homeassistant/device/m/config", cfg, false},
		{"b", "online", true},
		{"a", "offline", false},
		{"b", "online", true},
		{"b", "offline", false},
		{"a", "online", true},
	}
	for i, st := range steps {
		if _, err := h.Apply(Message{Topic: st.topic, Payload: st.payload}); err != nil {
			t.Fatal(err)
		}
		d := h.Find("e")
		if got := h.Available(d); got != st.want {
			t.Errorf("step %d (%s=%s): available %v, want %v", i, st.topic, st.payload, got, st.want)
		}
	}
}

// TestRetainedStateOnDiscovery: a retained state published before its
// device's config reaches the new entities, as the broker answers HA's
// subscription to their state topic with it.
func TestRetainedStateOnDiscovery(t *testing.T) {
	b := newBridgeMessages(t)
	b.send(discovery.BridgeAvailability(b.topics, true))
	b.send(discovery.LinkMessage(b.topics, discovery.Link{State: discovery.LinkReconnecting, Cause: "starting"}))
	c := b.send(discovery.BridgeDevice(b.topics, b.origin).Message())
	if c.Discovered == nil || c.State != c.Discovered {
		t.Fatalf("discovery with a retained state: %+v", c)
	}
	if got := b.h.Shown(b.topics.BridgeID()+"_"+discovery.KeyLinkState, time.Now()); got != "reconnecting" {
		t.Errorf("link state %q, want the retained reconnecting", got)
	}
}

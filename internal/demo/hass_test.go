package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/meter"
)

// hassRig feeds HA's view the messages the bridge would publish.
type hassRig struct {
	t      *testing.T
	h      *hass
	topics discovery.Topics
}

func newHassRig(t *testing.T) *hassRig {
	topics, err := discovery.NewTopics("em340", "homeassistant", meterSerial)
	if err != nil {
		t.Fatal(err)
	}
	return &hassRig{t: t, h: newHass("homeassistant"), topics: topics}
}

func (r *hassRig) send(m discovery.Message) changes {
	return r.h.apply(message{topic: m.Topic, payload: m.Payload, at: time.Now()})
}

func (r *hassRig) meterConfig() discovery.Message {
	origin, err := discovery.NewOrigin("test", "")
	if err != nil {
		r.t.Fatal(err)
	}
	id := meter.Identity{ModelCode: meter.ModelEM340, Serial: meterSerial, Firmware: "B0", FineEnergy: true}
	return discovery.MeterDevice(r.topics, origin, id, meter.Registers(), 0).Message()
}

func TestHassDiscoveryAvailabilityAndValues(t *testing.T) {
	r := newHassRig(t)
	c := r.send(r.meterConfig())
	if c.discovered == nil || c.discovered.config.Device.Name != "EM340 "+meterSerial {
		t.Fatalf("not discovered: %+v", c)
	}
	m := c.discovered
	if c := r.send(r.meterConfig()); c.discovered != nil || c.updated != nil {
		t.Errorf("the same config again is no change: %+v", c)
	}
	if got := r.h.value(m, "energy_import"); got != "unavailable" {
		t.Errorf("before any availability: %q, want unavailable", got)
	}

	reading := meter.Reading{Fine: true, Values: []meter.Value{
		{Register: register(t, "energy_import"), Value: 12345.678},
		{Register: register(t, "phase_sequence"), Value: 1},
	}}
	id := meter.Identity{ModelCode: meter.ModelEM340, Serial: meterSerial}
	if c := r.send(discovery.StateMessage(r.topics, reading, id)); c.state != m {
		t.Errorf("state not taken: %+v", c)
	}
	// Mode "all": the meter needs the bridge, the link and itself online.
	if c := r.send(discovery.MeterAvailability(r.topics, true)); len(c.avail) != 0 {
		t.Errorf("available with the bridge unheard of: %+v", c.avail)
	}
	if c := r.send(discovery.LinkMessage(r.topics, discovery.Link{State: discovery.LinkOnline})); len(c.avail) != 0 {
		t.Errorf("available with the bridge unheard of: %+v", c.avail)
	}
	if c := r.send(discovery.BridgeAvailability(r.topics, true)); len(c.avail) != 1 || c.avail[0] != m {
		t.Errorf("availability change not reported: %+v", c.avail)
	}
	for key, want := range map[string]string{"energy_import": "12345.678 kWh", "phase_sequence": "L1-L3-L2",
		"energy_export": "unknown", "measurement_mode": "A"} {
		if got := r.h.value(m, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if line := valuesLine(m); !strings.Contains(line, "import 12345.678 kWh") || strings.Contains(line, "export") {
		t.Errorf("values line %q", line)
	}
	if c := r.send(discovery.LinkMessage(r.topics, discovery.Link{State: discovery.LinkReconnecting})); len(c.avail) != 1 || r.h.value(m, "energy_import") != "unavailable" {
		t.Errorf("link down: %+v, %q", c.avail, r.h.value(m, "energy_import"))
	}
	if c := r.send(discovery.Removal(r.topics.MeterConfig())); c.removed != m.config.Device.Name || r.h.find(keyImport) != nil {
		t.Errorf("removal: %+v", c)
	}
}

func TestHassLinkAsTheBridgeDeviceShowsIt(t *testing.T) {
	r := newHassRig(t)
	origin, _ := discovery.NewOrigin("test", "")
	r.send(discovery.BridgeAvailability(r.topics, true))
	c := r.send(discovery.BridgeDevice(r.topics, origin).Message())
	b := c.discovered
	if b == nil || len(c.avail) != 1 {
		t.Fatalf("bridge device: %+v", c)
	}
	r.send(discovery.LinkMessage(r.topics, discovery.Link{State: discovery.LinkReconnecting, Cause: "adapter missing"}))
	if got := linkSummary(r.h, b); got != "reconnecting (adapter missing)" {
		t.Errorf("link %q", got)
	}
	r.send(discovery.LinkMessage(r.topics, discovery.Link{State: discovery.LinkOnline, Reconnects: 1, LastOutage: 3476 * time.Millisecond}))
	if got := linkSummary(r.h, b); got != "online (reconnects 1, last outage 3.5 s)" {
		t.Errorf("link %q", got)
	}
	r.send(discovery.BridgeAvailability(r.topics, false))
	if got := linkSummary(r.h, b); got != "unavailable" {
		t.Errorf("link %q after the bridge went offline", got)
	}
	table := deviceTable(b, 80)
	if !strings.Contains(table[0], `"EM340 bridge"`) || !strings.Contains(strings.Join(table, "\n"), "diagnostic  Last outage (s), Link cause, Link state") {
		t.Errorf("table:\n%s", strings.Join(table, "\n"))
	}
}

func TestTemplateField(t *testing.T) {
	for in, want := range map[string]string{"{{ value_json.power }}": "power", "{{ value_json.cause[:255] }}": "cause",
		"{{ value }}": "", "{{ value_json.x": "x"} {
		if got := templateField(in); got != want {
			t.Errorf("templateField(%q) = %q, want %q", in, got, want)
		}
	}
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

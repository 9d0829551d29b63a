package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter"
)

// haRig feeds HA's view the messages the bridge would publish.
type haRig struct {
	t      *testing.T
	h      *hass.HA
	topics discovery.Topics
	origin discovery.Origin
}

func newHARig(t *testing.T) *haRig {
	topics, err := discovery.NewTopics("em340", "homeassistant", meterSerial)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := discovery.NewOrigin("test", "")
	if err != nil {
		t.Fatal(err)
	}
	return &haRig{t: t, h: hass.New("homeassistant"), topics: topics, origin: origin}
}

func (r *haRig) send(m discovery.Message) hass.Change {
	r.t.Helper()
	c, err := r.h.Apply(hass.Message{Topic: m.Topic, Payload: string(m.Payload), Retain: m.Retain, At: time.Now()})
	if err != nil {
		r.t.Fatalf("HA would warn: %v", err)
	}
	return c
}

// The plain reading line shows the values HA took from the last state, at
// their display precision, even before the meter is available; a value the
// state never carried is left out.
func TestValuesLine(t *testing.T) {
	r := newHARig(t)
	id := meter.Identity{ModelCode: meter.ModelEM340, Serial: meterSerial, Firmware: "B0", FineEnergy: true}
	m := r.send(discovery.MeterDevice(r.topics, r.origin, id, meter.Registers(), 0).Message()).Discovered
	if m == nil {
		t.Fatal("meter not discovered")
	}
	reading := meter.Reading{Fine: true}
	for _, reg := range meter.Registers() {
		if v, ok := map[string]float64{"voltage_l1_n": 230.5, "frequency": 50, "energy_import": 12345.7, "phase_sequence": 0}[reg.Key]; ok {
			reading.Values = append(reading.Values, meter.Value{Register: reg, Value: v})
		}
	}
	r.send(discovery.StateMessage(r.topics, reading, id))
	if got, want := valuesLine(r.h, m), "reading: L1 230.5 V, 50.0 Hz, import 12345.700 kWh"; got != want {
		t.Errorf("values line %q, want %q", got, want)
	}
}

func TestLinkSummaryAndBridgeTable(t *testing.T) {
	r := newHARig(t)
	r.send(discovery.BridgeAvailability(r.topics, true))
	c := r.send(discovery.BridgeDevice(r.topics, r.origin).Message())
	b := c.Discovered
	if b == nil || len(c.Availability) != 1 {
		t.Fatalf("bridge device: %+v", c)
	}
	r.send(discovery.LinkMessage(r.topics, discovery.Link{State: discovery.LinkReconnecting, Cause: "adapter missing"}))
	if got := linkSummary(r.h, b, time.Now()); got != "reconnecting (adapter missing)" {
		t.Errorf("link %q", got)
	}
	r.send(discovery.LinkMessage(r.topics, discovery.Link{State: discovery.LinkOnline, Reconnects: 1, LastOutage: 3476 * time.Millisecond}))
	if got := linkSummary(r.h, b, time.Now()); got != "online (reconnects 1, last outage 3.5 s)" {
		t.Errorf("link %q", got)
	}
	r.send(discovery.BridgeAvailability(r.topics, false))
	if got := linkSummary(r.h, b, time.Now()); got != "unavailable" {
		t.Errorf("link %q after the bridge went offline", got)
	}
	table := deviceTable(b, 80)
	if !strings.Contains(table[0], `"EM340 bridge"`) || !strings.Contains(strings.Join(table, "\n"), "diagnostic  Last outage (s), Link cause, Link state") {
		t.Errorf("table:\n%s", strings.Join(table, "\n"))
	}
}

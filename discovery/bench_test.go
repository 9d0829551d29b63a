package discovery_test

import (
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/meter"
)

// fullReading is a snapshot in which every register passed validation.
func fullReading() (meter.Reading, meter.Identity) {
	r := meter.Reading{Time: time.Now(), Fine: true}
	for _, reg := range meter.Registers() {
		r.Values = append(r.Values, meter.Value{Register: reg, Value: (reg.Min + reg.Max) / 2})
	}
	id := meter.Identity{ModelCode: meter.ModelEM340, Serial: "235411W", Firmware: "B2", ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, MaxWords: meter.MaxReadWords, FineEnergy: true}
	return r, id
}

// BenchmarkState builds the state payload of a whole snapshot, as the bridge
// does at every poll.
func BenchmarkState(b *testing.B) {
	r, id := fullReading()
	var payload []byte
	b.ReportAllocs()
	for b.Loop() {
		payload = discovery.State(r, id)
	}
	b.ReportMetric(float64(len(payload)), "payload-bytes/op")
}

// BenchmarkMeterConfig builds the meter's device discovery message, as the
// bridge does at every (re)connect and HA birth.
func BenchmarkMeterConfig(b *testing.B) {
	_, id := fullReading()
	topics, err := discovery.NewTopics("em340", "homeassistant", id.Serial)
	if err != nil {
		b.Fatal(err)
	}
	origin, err := discovery.NewOrigin("bench", "")
	if err != nil {
		b.Fatal(err)
	}
	var msg discovery.Message
	b.ReportAllocs()
	for b.Loop() {
		msg = discovery.MeterDevice(topics, origin, id, meter.Registers(), time.Minute).Message()
	}
	b.ReportMetric(float64(len(msg.Payload)), "payload-bytes/op")
}

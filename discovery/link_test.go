package discovery

import (
	"encoding/json"
	"testing"
	"time"
)

func TestLinkPayload(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name string
		link Link
		want string
	}{
		{"reconnecting after an outage",
			Link{State: LinkReconnecting, Cause: "no response", Since: since, Reconnects: 3,
				LastOutage: 12*time.Second + 345678*time.Microsecond, Device: "/dev/ttyUSB0"},
			`{"state":"reconnecting","cause":"no response","since":"2026-01-02T03:04:05+01:00","reconnects":3,"last_outage_s":12.346,"device":"/dev/ttyUSB0"}`},
		{"first connect: no outage yet, no since",
			Link{State: LinkOnline, Device: "/dev/ttyUSB0"},
			`{"state":"online","cause":"","reconnects":0,"last_outage_s":null,"device":"/dev/ttyUSB0"}`},
		{"tenth of a second without float noise",
			Link{State: LinkOffline, Cause: `adapter "gone"`, LastOutage: 100 * time.Millisecond},
			`{"state":"offline","cause":"adapter \"gone\"","reconnects":0,"last_outage_s":0.100,"device":""}`},
	} {
		got := LinkPayload(tc.link)
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: invalid JSON", tc.name)
		}
	}
}

func TestLinkMessage(t *testing.T) {
	topics := mustTopics(t, "em340", "homeassistant", "1")
	msg := LinkMessage(topics, Link{State: LinkOnline})
	if msg.Topic != "em340/bridge/link" || !msg.Retain || msg.QoS != 1 {
		t.Errorf("%+v", msg)
	}
}

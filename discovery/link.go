package discovery

import (
	"encoding/json"
	"strconv"
	"time"
)

// LinkState is the serial link's state as HA's link-state enum shows it.
type LinkState string

const (
	LinkOnline       LinkState = "online"       // the meter answers
	LinkReconnecting LinkState = "reconnecting" // lost, retrying with backoff
	LinkOffline      LinkState = "offline"      // lost for longer than EM340_OFFLINE_AFTER; still retrying
)

// linkStateOptions are the enum options, in the order HA lists them.
func linkStateOptions() []string {
	return []string{string(LinkOnline), string(LinkReconnecting), string(LinkOffline)}
}

// Link is the serial link's status as the bridge publishes it on the link topic.
// The link package does not import discovery: the bridge copies its status here.
type Link struct {
	State      LinkState
	Cause      string        // why the link is in State, e.g. "no response"; "" when online
	Since      time.Time     // when State was entered; zero = not known (omitted)
	Reconnects int           // reconnects since the bridge started
	LastOutage time.Duration // length of the last completed outage; 0 = none yet
	Device     string        // serial device in use, e.g. "/dev/ttyUSB0"
}

// Fields of the link payload, read by the bridge device's value templates.
const (
	linkFieldState      = "state"
	linkFieldCause      = "cause"
	linkFieldReconnects = "reconnects"
	linkFieldLastOutage = "last_outage_s"
	linkFieldDevice     = "device"
)

// linkPayload is the wire form of Link; its tags must match the linkField constants.
type linkPayload struct {
	State      LinkState `json:"state"`
	Cause      string    `json:"cause"`
	Since      string    `json:"since,omitempty"`
	Reconnects int       `json:"reconnects"`
	// null until an outage has ended: HA's template renders it as "None", which
	// sets the sensor to unknown, where 0 would claim a zero-length outage.
	LastOutageS json.RawMessage `json:"last_outage_s"`
	Device      string          `json:"device"`
}

// LinkPayload is the JSON object published on the link topic, e.g.
// {"state":"reconnecting","cause":"no response","since":"2026-01-02T03:04:05Z",
// "reconnects":3,"last_outage_s":12.5,"device":"/dev/ttyUSB0"}.
func LinkPayload(l Link) []byte {
	p := linkPayload{State: l.State, Cause: l.Cause, Reconnects: l.Reconnects, Device: l.Device,
		LastOutageS: json.RawMessage("null")}
	if !l.Since.IsZero() {
		p.Since = l.Since.Format(time.RFC3339)
	}
	if l.LastOutage > 0 {
		// Milliseconds are plenty, and a fixed format avoids float noise.
		p.LastOutageS = json.RawMessage(strconv.FormatFloat(l.LastOutage.Seconds(), 'f', 3, 64))
	}
	return mustMarshal(p)
}

// LinkMessage is the link status for the link topic. Retained, so HA shows the
// link state after its own restart; it is replaced on every change.
func LinkMessage(t Topics, l Link) Message {
	return Message{Topic: t.Link(), Payload: LinkPayload(l), Retain: true, QoS: discoveryQoS}
}

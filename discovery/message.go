package discovery

import "encoding/json"

// discoveryQoS is the QoS of every message here: HA discovery and availability
// must not be lost, and state snapshots are cheap enough to deliver once.
const discoveryQoS = 1

// Message is one MQTT publication. Retain and QoS are decided here so that
// every publisher of a topic treats it the same way.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
	QoS     byte
}

// Removal is the retained empty payload that deletes a discovery config (and the
// HA device once nothing references it), e.g. the old meter config topic after
// the device id changed. Retained, so the old retained config leaves the broker.
func Removal(configTopic string) Message {
	return Message{Topic: configTopic, Payload: []byte{}, Retain: true, QoS: discoveryQoS}
}

// BridgeAvailability is the retained "online"/"offline" for the bridge; the
// offline message is also the bridge's MQTT will.
func BridgeAvailability(t Topics, online bool) Message {
	return availability(t.BridgeAvailability(), online)
}

// MeterAvailability is the retained "online"/"offline" for the meter link.
func MeterAvailability(t Topics, online bool) Message {
	return availability(t.MeterAvailability(), online)
}

// MeterStatusMessage is the meter's status text, retained so that HA shows it
// after its own restart; cut to the 255 characters HA takes for a state.
func MeterStatusMessage(t Topics, status string) Message {
	if r := []rune(status); len(r) > haMaxStateLength {
		status = string(r[:haMaxStateLength])
	}
	return Message{Topic: t.MeterStatus(), Payload: []byte(status), Retain: true, QoS: discoveryQoS}
}

// availability messages are retained: HA treats a topic as unavailable until
// its first message, so after an HA restart the retained value is what it sees.
func availability(topic string, online bool) Message {
	payload := PayloadOffline
	if online {
		payload = PayloadOnline
	}
	return Message{Topic: topic, Payload: []byte(payload), Retain: true, QoS: discoveryQoS}
}

// mustMarshal encodes the payload types of this package. They hold only strings,
// integers, booleans and slices and maps of those, which encoding/json always
// encodes, so an error is a programming error.
func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("discovery: encoding a payload: " + err.Error())
	}
	return b
}

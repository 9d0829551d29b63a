package discovery

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Payloads of every availability topic. They are HA's defaults, spelled out in
// the configs anyway so that a change of default cannot strand the entities.
const (
	PayloadOnline  = "online"
	PayloadOffline = "offline"
)

// bridgeLevel is the topic level under the base topic that holds the bridge's own
// topics; a meter device id may therefore not be "bridge".
const bridgeLevel = "bridge"

// Topics is the one place where the bridge's MQTT topics and HA identifiers are
// derived. Build it with NewTopics.
type Topics struct {
	base     string // e.g. "em340" or "home/em340", no trailing slash
	prefix   string // HA discovery prefix, e.g. "homeassistant"
	deviceID string // meter device id, already sanitised
}

// NewTopics checks the base topic and discovery prefix and sanitises the meter's
// device id (the EM340_DEVICE_ID override or Identity.Serial) with SanitizeID.
func NewTopics(baseTopic, discoveryPrefix, deviceID string) (Topics, error) {
	base, err := topicRoot("base topic", baseTopic)
	if err != nil {
		return Topics{}, err
	}
	prefix, err := topicRoot("discovery prefix", discoveryPrefix)
	if err != nil {
		return Topics{}, err
	}
	id := SanitizeID(deviceID)
	if id == "" {
		return Topics{}, fmt.Errorf("discovery: device id %q is empty after sanitising", deviceID)
	}
	t := Topics{base: base, prefix: prefix, deviceID: id}
	// Either clash would make the meter overwrite the bridge's topics or merge
	// the two HA devices into one.
	if id == bridgeLevel || t.MeterID() == t.BridgeID() {
		return Topics{}, fmt.Errorf("discovery: device id %q clashes with the bridge's own topics", deviceID)
	}
	return t, nil
}

// topicRoot accepts a publishable topic prefix: no wildcards, no NUL, not empty.
func topicRoot(what, topic string) (string, error) {
	topic = strings.TrimRight(strings.TrimSpace(topic), "/")
	switch {
	case topic == "":
		return "", fmt.Errorf("discovery: %s is empty", what)
	case strings.ContainsAny(topic, "+#\x00"):
		return "", fmt.Errorf("discovery: %s %q contains a wildcard or NUL", what, topic)
	case strings.HasPrefix(topic, "$"):
		return "", errors.New("discovery: " + what + " may not start with $ (reserved by brokers)")
	}
	return topic, nil
}

// SanitizeID keeps only what HA allows in discovery topic ids, [a-zA-Z0-9_-]:
// surrounding spaces and NULs (padding of the meter's serial registers) are
// dropped, every other character becomes "_".
func SanitizeID(s string) string {
	s = strings.TrimFunc(s, func(r rune) bool { return r == 0 || unicode.IsSpace(r) })
	return strings.Map(func(r rune) rune {
		if validIDRune(r) {
			return r
		}
		return '_'
	}, s)
}

func validIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// entityObjectID turns an id into what HA accepts after the domain of an
// entity_id: lowercase [a-z0-9_], no leading, trailing or doubled "_". HA would
// slugify it the same way; doing it here means the payload says what HA uses.
func entityObjectID(s string) string {
	var b strings.Builder
	pendingUnderscore := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if pendingUnderscore && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingUnderscore = false
			b.WriteRune(r)
			continue
		}
		pendingUnderscore = true
	}
	return b.String()
}

// DeviceID is the sanitised meter device id.
func (t Topics) DeviceID() string { return t.deviceID }

// BridgeID is the bridge's HA device identifier and discovery object id,
// em340_bridge_<base topic sanitised>: unique per bridge on a shared broker.
func (t Topics) BridgeID() string { return "em340_bridge_" + SanitizeID(t.base) }

// MeterID is the meter's HA device identifier and discovery object id,
// em340_<device id>. It does not depend on the base topic, so the meter keeps
// its entities when the bridge is reconfigured.
func (t Topics) MeterID() string { return "em340_" + t.deviceID }

// BridgeAvailability carries "online"/"offline", retained; "offline" is the LWT.
func (t Topics) BridgeAvailability() string { return t.base + "/" + bridgeLevel + "/availability" }

// Link carries the serial link's state as JSON (see Link), retained.
func (t Topics) Link() string { return t.base + "/" + bridgeLevel + "/link" }

// MeterAvailability carries "online"/"offline" for the meter, retained.
func (t Topics) MeterAvailability() string { return t.base + "/" + t.deviceID + "/availability" }

// MeterStatus carries, retained, what the meter is doing in a user's words
// (online, not answering, …) as plain text.
func (t Topics) MeterStatus() string { return t.base + "/" + t.deviceID + "/status" }

// MeterState carries one JSON object per snapshot (see State).
func (t Topics) MeterState() string { return t.base + "/" + t.deviceID + "/state" }

// BridgeConfig is the bridge device's discovery config topic.
func (t Topics) BridgeConfig() string { return t.deviceConfig(t.BridgeID()) }

// MeterConfig is the meter device's discovery config topic.
func (t Topics) MeterConfig() string { return t.deviceConfig(t.MeterID()) }

// HAStatus is where HA announces its birth ("online") and will ("offline"); on
// "online" the bridge resends discovery, availability and state.
func (t Topics) HAStatus() string { return t.prefix + "/status" }

func (t Topics) deviceConfig(objectID string) string {
	return t.prefix + "/device/" + objectID + "/config"
}

package discovery

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
)

// OriginName is how HA's log names the software behind the discovery messages;
// the bridge also recognises its own retained configs by it.
const OriginName = "em340-bridge"

// HA platform and option values used by both devices.
const (
	platformSensor      = "sensor"
	categoryDiagnostic  = "diagnostic"
	deviceClassEnum     = "enum"
	availabilityModeAll = "all"
)

// Origin tells HA which software published a device config; mandatory in
// device-based discovery.
type Origin struct {
	Name       string `json:"name"`
	SWVersion  string `json:"sw,omitempty"`
	SupportURL string `json:"url,omitempty"`
}

// NewOrigin describes this bridge at the given version. supportURL may be empty;
// otherwise it must be an absolute http(s) URL, because HA rejects the whole
// device config when the origin's support URL is invalid.
func NewOrigin(version, supportURL string) (Origin, error) {
	if supportURL != "" {
		u, err := url.Parse(supportURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Origin{}, fmt.Errorf("discovery: support URL %q is not an absolute http(s) URL", supportURL)
		}
	}
	return Origin{Name: OriginName, SWVersion: version, SupportURL: supportURL}, nil
}

// Device is the HA device block ("dev").
type Device struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name,omitempty"`
	Manufacturer string   `json:"manufacturer,omitempty"`
	Model        string   `json:"model,omitempty"`
	ModelID      string   `json:"model_id,omitempty"`
	SWVersion    string   `json:"sw_version,omitempty"`
	SerialNumber string   `json:"serial_number,omitempty"`
	ViaDevice    string   `json:"via_device,omitempty"`
}

// Availability is one entry of an availability list. Payloads are plain
// online/offline; ValueTemplate, when set, turns the topic's payload into one
// of them first (the link topic carries JSON).
type Availability struct {
	Topic               string `json:"topic"`
	PayloadAvailable    string `json:"payload_available"`
	PayloadNotAvailable string `json:"payload_not_available"`
	ValueTemplate       string `json:"value_template,omitempty"`
}

func availableOn(topic string) Availability {
	return Availability{Topic: topic, PayloadAvailable: PayloadOnline, PayloadNotAvailable: PayloadOffline}
}

// LinkOnlineTemplate reads the link topic's JSON as an availability payload:
// online only while the serial link is online.
const LinkOnlineTemplate = "{{ 'online' if value_json.state == 'online' else 'offline' }}"

// Component is one entity of a device config ("cmps" entry). Every field but
// Platform is omitted when empty, which is also how a component is removed
// (WithRemovedComponents).
type Component struct {
	Platform        string `json:"p"`
	UniqueID        string `json:"unique_id,omitempty"`
	DefaultEntityID string `json:"default_entity_id,omitempty"`
	Name            string `json:"name,omitempty"`
	DeviceClass     string `json:"device_class,omitempty"`
	Unit            string `json:"unit_of_measurement,omitempty"`
	StateClass      string `json:"state_class,omitempty"`
	// A pointer because 0 decimals is a real choice (W, counts), distinct from
	// "not numeric, no precision" (enum and text sensors, where HA rejects it).
	SuggestedDisplayPrecision *int     `json:"suggested_display_precision,omitempty"`
	Options                   []string `json:"options,omitempty"`
	EntityCategory            string   `json:"entity_category,omitempty"`
	ValueTemplate             string   `json:"value_template,omitempty"`
	// ExpireAfter (seconds) makes HA show the entity unavailable when no state
	// message arrived for that long: a frozen line never looks current.
	ExpireAfter int `json:"expire_after,omitempty"`
	// StateTopic and Availability override the device's shared ones for a
	// component that reads elsewhere or must stay available when the rest
	// is not (a meter's status explains why its readings are unavailable).
	StateTopic   string         `json:"state_topic,omitempty"`
	Availability []Availability `json:"availability,omitempty"`
}

// DeviceConfig is one device-based discovery payload: the device, the origin,
// the options its components share, and the components by stable key.
type DeviceConfig struct {
	Topic string `json:"-"` // <prefix>/device/<object_id>/config

	Device Device `json:"dev"`
	Origin Origin `json:"o"`
	// Shared by every component, which inherit them from the root.
	StateTopic       string               `json:"state_topic,omitempty"`
	Availability     []Availability       `json:"availability,omitempty"`
	AvailabilityMode string               `json:"availability_mode,omitempty"`
	Components       map[string]Component `json:"cmps"`
}

// Message is the retained discovery message. Retained so that HA finds the
// config after its own restart; the bridge still resends it on every connect
// and on HA's birth message.
func (c DeviceConfig) Message() Message {
	return Message{Topic: c.Topic, Payload: mustMarshal(c), Retain: true, QoS: discoveryQoS}
}

// WithRemovedComponents returns a copy of c in which each key is reduced to its
// platform alone, which is how HA is told to drop that entity from the device.
// Publish it once, then the config without those keys.
func (c DeviceConfig) WithRemovedComponents(keys ...string) DeviceConfig {
	out := c
	out.Components = make(map[string]Component, len(c.Components)+len(keys))
	for k, v := range c.Components {
		out.Components[k] = v
	}
	for _, k := range keys {
		platform := platformSensor
		if old, ok := c.Components[k]; ok {
			platform = old.Platform
		}
		out.Components[k] = Component{Platform: platform}
	}
	return out
}

// StaleComponents lists, sorted, the component keys of a previously published
// (e.g. retained) config payload that current no longer has: the keys to pass to
// WithRemovedComponents. An empty payload (no previous config) has none.
func StaleComponents(previous []byte, current DeviceConfig) ([]string, error) {
	if len(previous) == 0 {
		return nil, nil
	}
	var old struct {
		Components map[string]json.RawMessage `json:"cmps"`
	}
	if err := json.Unmarshal(previous, &old); err != nil {
		return nil, fmt.Errorf("discovery: previous device config: %w", err)
	}
	var stale []string
	for k := range old.Components {
		if _, ok := current.Components[k]; !ok {
			stale = append(stale, k)
		}
	}
	slices.Sort(stale)
	return stale, nil
}

// entityIDs gives a component's unique_id and default_entity_id from its
// device's identifier and its key: stable across restarts, unique per broker.
func entityIDs(deviceIdentifier, key string) (uniqueID, defaultEntityID string) {
	uniqueID = deviceIdentifier + "_" + key
	return uniqueID, platformSensor + "." + entityObjectID(uniqueID)
}

// valueTemplate reads one field of a JSON payload that always carries it (the
// link payload).
func valueTemplate(key string) string { return "{{ value_json." + key + " }}" }

// NumberTemplate reads a numeric field that a state message may lack (a value
// rejected by validation): the empty string it renders then is what HA's
// numeric sensors ignore without a warning, keeping the last good value.
func NumberTemplate(key string) string { return "{{ value_json." + key + " | default('') }}" }

// TextTemplate reads a text or enum field that a state message may lack: the
// entity keeps its current state (an empty string would be an invalid option).
func TextTemplate(key string) string { return "{{ value_json." + key + " | default(this.state) }}" }

// PlainTemplate takes a plain-text payload as it is.
const PlainTemplate = "{{ value }}"

func precision(decimals int) *int { return &decimals }

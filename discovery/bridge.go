package discovery

import "strconv"

// Component keys of the bridge device. They are discovery ids: keep them stable.
const (
	KeyLinkState    = "link_state"
	KeyLinkCause    = "link_cause"
	KeyReconnects   = "reconnects"
	KeyLastOutage   = "last_outage"
	KeySerialDevice = "serial_device"
)

// haMaxStateLength is the longest state HA accepts; a longer text state is an
// error in HA, so free text such as the link cause is cut in its template.
const haMaxStateLength = 255

// BridgeDevice is the discovery config of the bridge itself: the serial link's
// health as diagnostic sensors reading the link topic.
//
// Its only availability is the bridge's: the link-state entity must read
// "offline" when the meter link is down, not turn "unavailable" (DISCOVERY.md §10).
func BridgeDevice(t Topics, origin Origin) DeviceConfig {
	id := t.BridgeID()
	diagnostic := func(key, name, field string) Component {
		uniqueID, entityID := entityIDs(id, key)
		return Component{Platform: platformSensor, UniqueID: uniqueID, DefaultEntityID: entityID, Name: name,
			EntityCategory: categoryDiagnostic, ValueTemplate: valueTemplate(field)}
	}

	state := diagnostic(KeyLinkState, "Link state", linkFieldState)
	state.DeviceClass = deviceClassEnum
	state.Options = linkStateOptions()

	cause := diagnostic(KeyLinkCause, "Link cause", linkFieldCause)
	cause.ValueTemplate = "{{ value_json." + linkFieldCause + "[:" + strconv.Itoa(haMaxStateLength) + "] }}"

	// Counts reconnects since the bridge started, so it drops to 0 when the
	// bridge restarts: that is what total_increasing means (a reset, not a
	// decrease). No device class fits a count; without one every state class is
	// allowed, and no unit is needed.
	reconnects := diagnostic(KeyReconnects, "Reconnects", linkFieldReconnects)
	reconnects.StateClass = "total_increasing"
	reconnects.SuggestedDisplayPrecision = precision(0)

	outage := diagnostic(KeyLastOutage, "Last outage", linkFieldLastOutage)
	outage.DeviceClass = "duration"
	outage.Unit = "s"
	outage.StateClass = "measurement"
	outage.SuggestedDisplayPrecision = precision(1)

	device := diagnostic(KeySerialDevice, "Serial device", linkFieldDevice)

	return DeviceConfig{
		Topic: t.BridgeConfig(),
		Device: Device{
			Identifiers:  []string{id},
			Name:         "EM340 bridge",
			Manufacturer: OriginName,
			SWVersion:    origin.SWVersion,
		},
		Origin:       origin,
		StateTopic:   t.Link(),
		Availability: []Availability{availableOn(t.BridgeAvailability())},
		Components: map[string]Component{
			KeyLinkState:    state,
			KeyLinkCause:    cause,
			KeyReconnects:   reconnects,
			KeyLastOutage:   outage,
			KeySerialDevice: device,
		},
	}
}

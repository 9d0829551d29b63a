package discovery

import (
	"slices"
	"strconv"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
)

// Keys of the meter's configuration diagnostics, which come from meter.Identity
// rather than the register table; State publishes them next to the readings.
const (
	KeyMeasurementMode = "measurement_mode"
	KeyMeasuringSystem = "measuring_system"
	KeyWiringStatus    = "wiring_status"
	// KeyMeterStatus is the meter's status as the bridge sees it (MeterStatusMessage).
	KeyMeterStatus = "meter_status"
)

const manufacturerCarloGavazzi = "Carlo Gavazzi"

// MeterDevice is the discovery config of one meter: one sensor per register of
// registers (the bridge passes meter.Registers()), keyed by Register.Key, plus
// the identity diagnostics.
//
// Every component is available only while the bridge, the serial link and the
// meter are all online (mode "all"), so a dead bridge, link or meter shows as
// unavailable instead of freezing the last value. The link's entry reads the
// bridge's link topic, which does not depend on the meter's id: after a restart
// with the meter unreachable, the previous run's entities are unavailable from
// the bridge's first message on, before the meter's own topics are known.
// expireAfter (rounded up to whole seconds; 0 = none) is the freshness bound: with
// no state message for that long, HA shows the entities unavailable.
func MeterDevice(t Topics, origin Origin, id meter.Identity, registers []meter.Register, expireAfter time.Duration) DeviceConfig {
	meterID := t.MeterID()
	expire := int((expireAfter + time.Second - 1) / time.Second)
	components := make(map[string]Component, len(registers)+3)
	newComponent := func(key, name string) Component {
		uniqueID, entityID := entityIDs(meterID, key)
		return Component{Platform: platformSensor, UniqueID: uniqueID, DefaultEntityID: entityID, Name: name,
			ValueTemplate: TextTemplate(key), ExpireAfter: expire}
	}

	for _, r := range registers {
		c := newComponent(r.Key, r.Name)
		c.DeviceClass = r.DeviceClass
		c.Unit = r.Unit
		c.StateClass = r.StateClass
		if len(r.Options) > 0 {
			// HA rejects a unit, a state class or a precision on an enum.
			c.Options = slices.Clone(r.Options)
			c.Unit, c.StateClass = "", ""
		} else {
			c.SuggestedDisplayPrecision = precision(r.Precision(id.FineEnergy))
			c.ValueTemplate = NumberTemplate(r.Key)
		}
		if r.Diagnostic {
			c.EntityCategory = categoryDiagnostic
		}
		components[r.Key] = c
	}

	mode := newComponent(KeyMeasurementMode, "Measurement mode")
	mode.DeviceClass = deviceClassEnum
	mode.Options = []string{"A", "B"}
	mode.EntityCategory = categoryDiagnostic
	components[KeyMeasurementMode] = mode

	// Plain text rather than an enum: MeasuringSystemName can say "unknown (n)",
	// which an enum would drop.
	system := newComponent(KeyMeasuringSystem, "Measuring system")
	system.EntityCategory = categoryDiagnostic
	components[KeyMeasuringSystem] = system

	wiring := newComponent(KeyWiringStatus, "Wiring status")
	wiring.EntityCategory = categoryDiagnostic
	components[KeyWiringStatus] = wiring

	// The one entity of the meter that stays available while the bridge is:
	// it says why the others are not. Plain text on a topic of its own.
	status := newComponent(KeyMeterStatus, "Status")
	status.EntityCategory = categoryDiagnostic
	status.ValueTemplate, status.ExpireAfter = PlainTemplate, 0
	status.StateTopic = t.MeterStatus()
	status.Availability = []Availability{availableOn(t.BridgeAvailability())}
	components[KeyMeterStatus] = status

	var modelID string
	if id.ModelCode != 0 {
		modelID = strconv.Itoa(int(id.ModelCode))
	}
	return DeviceConfig{
		Topic: t.MeterConfig(),
		Device: Device{
			Identifiers:  []string{meterID},
			Name:         id.Model() + " " + t.DeviceID(),
			Manufacturer: manufacturerCarloGavazzi,
			Model:        id.Model(),
			ModelID:      modelID,
			SWVersion:    id.Firmware,
			SerialNumber: id.Serial,
			ViaDevice:    t.BridgeID(),
		},
		Origin:     origin,
		StateTopic: t.MeterState(),
		Availability: []Availability{
			availableOn(t.BridgeAvailability()),
			linkOnline(t.Link()),
			availableOn(t.MeterAvailability()),
		},
		AvailabilityMode: availabilityModeAll,
		Components:       components,
	}
}

func linkOnline(linkTopic string) Availability {
	a := availableOn(linkTopic)
	a.ValueTemplate = LinkOnlineTemplate
	return a
}

package discovery

import (
	"slices"
	"strconv"

	"github.com/em340-bridge/em340-bridge/meter"
)

// Keys of the meter's configuration diagnostics, which come from meter.Identity
// rather than the register table; State publishes them next to the readings.
const (
	KeyMeasurementMode = "measurement_mode"
	KeyMeasuringSystem = "measuring_system"
	KeyWiringStatus    = "wiring_status"
)

const manufacturerCarloGavazzi = "Carlo Gavazzi"

// MeterDevice is the discovery config of one meter: one sensor per register of
// registers (the bridge passes meter.Registers()), keyed by Register.Key, plus
// the identity diagnostics.
//
// Every component is available only while both the bridge and the meter link
// are online (mode "all"), so a dead link or bridge shows as unavailable instead
// of freezing the last value; availability and state topic sit at the root and
// every component inherits them.
func MeterDevice(t Topics, origin Origin, id meter.Identity, registers []meter.Register) DeviceConfig {
	meterID := t.MeterID()
	components := make(map[string]Component, len(registers)+3)
	newComponent := func(key, name string) Component {
		uniqueID, entityID := entityIDs(meterID, key)
		return Component{Platform: platformSensor, UniqueID: uniqueID, DefaultEntityID: entityID, Name: name,
			ValueTemplate: valueTemplate(key)}
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
			availableOn(t.MeterAvailability()),
		},
		AvailabilityMode: availabilityModeAll,
		Components:       components,
	}
}

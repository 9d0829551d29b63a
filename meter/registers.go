// Package meter knows the Carlo Gavazzi EM300/ET300 family (EM340 first): its register
// table, how to read a snapshot in the fewest Modbus requests, and how to decode and validate it.
package meter

import "math"

// Format is how a value is laid out in the meter's 16-bit registers.
type Format uint8

const (
	Int16 Format = iota + 1
	UInt16
	Int32 // least significant word first (most significant first on model 340)
	UInt32
)

// Words is the number of registers a value of this format occupies.
func (f Format) Words() uint16 {
	if f == Int32 || f == UInt32 {
		return 2
	}
	return 1
}

// Quantity is the physical kind of a value; discovery maps it to Home Assistant.
type Quantity string

const (
	Voltage        Quantity = "voltage"
	Current        Quantity = "current"
	ActivePower    Quantity = "active_power"
	ApparentPower  Quantity = "apparent_power"
	ReactivePower  Quantity = "reactive_power"
	PowerFactor    Quantity = "power_factor"
	Frequency      Quantity = "frequency"
	ActiveEnergy   Quantity = "active_energy"
	ReactiveEnergy Quantity = "reactive_energy"
	PhaseSequence  Quantity = "phase_sequence"
)

// Register declares one value the meter reports. The table below is the single
// source for decoding, block planning, discovery and the simulator.
type Register struct {
	Key         string   // stable identifier: JSON key in the state payload and unique_id suffix
	Name        string   // what a person reads in Home Assistant
	Addr        uint16   // on-the-wire register address
	Format      Format   // layout in registers
	Divisor     float64  // value = raw / Divisor, in Unit
	Unit        string   // Home Assistant unit, exact spelling; "" for none
	Quantity    Quantity // physical kind
	DeviceClass string   // Home Assistant sensor device class
	StateClass  string   // Home Assistant state class; "" for none
	Min, Max    float64  // physical range after scaling; values outside are rejected
	Total       bool     // an energy counter that never decreases on a healthy meter
	Partial     bool     // a Total the user may reset on the meter (register 4000h); see Validator
	FineAddr    uint16   // 3-decimal pair (integer, then thousandths) from table 2.5; 0 = none
	Options     []string // enum values, indexed by the raw value
	Diagnostic  bool     // configuration-like value rather than a measurement
	Phases      Phases   // the phases the value needs; a meter wired for fewer does not have it
	Export      bool     // counts exported energy: measurement mode B only (reads 0 in mode A)
}

// Phases is a set of the meter's phases.
type Phases uint8

// The phases a value may need.
const (
	L1 Phases = 1 << iota
	L2
	L3
	allPhases = L1 | L2 | L3
)

// Precision is the number of decimals the register resolves.
func (r Register) Precision(fine bool) int {
	if fine && r.FineAddr != 0 {
		return 3
	}
	if r.Divisor <= 1 {
		return 0
	}
	return int(math.Round(math.Log10(r.Divisor)))
}

// Ranges generous enough for any EM340 installation (direct connection, 65 A,
// up to 480 V L-L) yet tight enough to catch a garbled frame.
const (
	maxPhaseVoltage  = 500
	maxLineVoltage   = 866
	maxCurrent       = 100
	maxPhasePower    = 50_000
	maxSystemPower   = 150_000
	maxEnergy        = 100_000_000 // kWh or kvarh
	minFrequency     = 0           // reads 0 with no voltage present
	maxFrequency     = 70
	voltageDivisor   = 10
	currentDivisor   = 1000
	powerDivisor     = 10
	pfDivisor        = 1000
	frequencyDivisor = 10
	energyDivisor    = 10
)

func voltage(key, name string, addr uint16, max float64, ph Phases) Register {
	return Register{Key: key, Name: name, Addr: addr, Format: Int32, Divisor: voltageDivisor, Unit: "V",
		Quantity: Voltage, DeviceClass: "voltage", StateClass: "measurement", Min: 0, Max: max, Phases: ph}
}

func current(key, name string, addr uint16, ph Phases) Register {
	return Register{Key: key, Name: name, Addr: addr, Format: Int32, Divisor: currentDivisor, Unit: "A",
		Quantity: Current, DeviceClass: "current", StateClass: "measurement", Min: -maxCurrent, Max: maxCurrent, Phases: ph}
}

func power(q Quantity, key, name string, addr uint16, max float64, ph Phases) Register {
	unit, class := "W", "power"
	switch q {
	case ApparentPower:
		unit, class = "VA", "apparent_power"
	case ReactivePower:
		unit, class = "var", "reactive_power"
	}
	return Register{Key: key, Name: name, Addr: addr, Format: Int32, Divisor: powerDivisor, Unit: unit,
		Quantity: q, DeviceClass: class, StateClass: "measurement", Min: -max, Max: max, Phases: ph}
}

func powerFactor(key, name string, addr uint16, ph Phases) Register {
	return Register{Key: key, Name: name, Addr: addr, Format: Int16, Divisor: pfDivisor,
		Quantity: PowerFactor, DeviceClass: "power_factor", StateClass: "measurement", Min: -1, Max: 1, Phases: ph}
}

// resettable: register 4000h (or the keypad) resets the partial meters and
// the tariff meters (REGISTERS.md, settings table), not the lifetime totals.
func resettable(key string) bool {
	switch key {
	case "energy_import_partial", "reactive_energy_import_partial", "energy_import_tariff_1", "energy_import_tariff_2":
		return true
	}
	return false
}

func energy(q Quantity, key, name string, addr, fine uint16, ph Phases) Register {
	unit, class := "kWh", "energy"
	if q == ReactiveEnergy {
		unit, class = "kvarh", "reactive_energy"
	}
	return Register{Key: key, Name: name, Addr: addr, Format: Int32, Divisor: energyDivisor, Unit: unit,
		Quantity: q, DeviceClass: class, StateClass: "total_increasing", Min: 0, Max: maxEnergy,
		Total: true, FineAddr: fine, Partial: resettable(key), Phases: ph}
}

// exported marks an energy counter of exported energy (kWh(−), kvarh(−)).
func exported(r Register) Register {
	r.Export = true
	return r
}

// Registers returns the EM340's meaningful values of 0000h–0051h in address order.
// Values the EM340 documents as "not available, reads 0" are left out. Phases
// says which phases a value needs: a line-to-line voltage both of its phases,
// the phase sequence all three ("3-phase only"); system values none.
func Registers() []Register {
	const l12, l23, l31 = L1 | L2, L2 | L3, L3 | L1
	return []Register{
		voltage("voltage_l1_n", "Voltage L1-N", 0x0000, maxPhaseVoltage, L1),
		voltage("voltage_l2_n", "Voltage L2-N", 0x0002, maxPhaseVoltage, L2),
		voltage("voltage_l3_n", "Voltage L3-N", 0x0004, maxPhaseVoltage, L3),
		voltage("voltage_l1_l2", "Voltage L1-L2", 0x0006, maxLineVoltage, l12),
		voltage("voltage_l2_l3", "Voltage L2-L3", 0x0008, maxLineVoltage, l23),
		voltage("voltage_l3_l1", "Voltage L3-L1", 0x000A, maxLineVoltage, l31),
		current("current_l1", "Current L1", 0x000C, L1),
		current("current_l2", "Current L2", 0x000E, L2),
		current("current_l3", "Current L3", 0x0010, L3),
		power(ActivePower, "power_l1", "Power L1", 0x0012, maxPhasePower, L1),
		power(ActivePower, "power_l2", "Power L2", 0x0014, maxPhasePower, L2),
		power(ActivePower, "power_l3", "Power L3", 0x0016, maxPhasePower, L3),
		power(ApparentPower, "apparent_power_l1", "Apparent power L1", 0x0018, maxPhasePower, L1),
		power(ApparentPower, "apparent_power_l2", "Apparent power L2", 0x001A, maxPhasePower, L2),
		power(ApparentPower, "apparent_power_l3", "Apparent power L3", 0x001C, maxPhasePower, L3),
		power(ReactivePower, "reactive_power_l1", "Reactive power L1", 0x001E, maxPhasePower, L1),
		power(ReactivePower, "reactive_power_l2", "Reactive power L2", 0x0020, maxPhasePower, L2),
		power(ReactivePower, "reactive_power_l3", "Reactive power L3", 0x0022, maxPhasePower, L3),
		voltage("voltage_ln", "Voltage L-N", 0x0024, maxPhaseVoltage, 0),
		voltage("voltage_ll", "Voltage L-L", 0x0026, maxLineVoltage, l12),
		power(ActivePower, "power", "Power", 0x0028, maxSystemPower, 0),
		power(ApparentPower, "apparent_power", "Apparent power", 0x002A, maxSystemPower, 0),
		power(ReactivePower, "reactive_power", "Reactive power", 0x002C, maxSystemPower, 0),
		powerFactor("power_factor_l1", "Power factor L1", 0x002E, L1),
		powerFactor("power_factor_l2", "Power factor L2", 0x002F, L2),
		powerFactor("power_factor_l3", "Power factor L3", 0x0030, L3),
		powerFactor("power_factor", "Power factor", 0x0031, 0),
		{Key: "phase_sequence", Name: "Phase sequence", Addr: 0x0032, Format: Int16, Divisor: 1,
			Quantity: PhaseSequence, DeviceClass: "enum", Min: 0, Max: 1,
			Options: []string{"L1-L2-L3", "L1-L3-L2"}, Diagnostic: true, Phases: allPhases},
		{Key: "frequency", Name: "Frequency", Addr: 0x0033, Format: Int16, Divisor: frequencyDivisor, Unit: "Hz",
			Quantity: Frequency, DeviceClass: "frequency", StateClass: "measurement", Min: minFrequency, Max: maxFrequency},
		energy(ActiveEnergy, "energy_import", "Energy import", 0x0034, 0x0400, 0),
		energy(ReactiveEnergy, "reactive_energy_import", "Reactive energy import", 0x0036, 0x0404, 0),
		power(ActivePower, "power_demand", "Power demand", 0x0038, maxSystemPower, 0),
		power(ActivePower, "power_demand_peak", "Power demand peak", 0x003A, maxSystemPower, 0),
		energy(ActiveEnergy, "energy_import_partial", "Energy import partial", 0x003C, 0, 0),
		energy(ReactiveEnergy, "reactive_energy_import_partial", "Reactive energy import partial", 0x003E, 0, 0),
		energy(ActiveEnergy, "energy_import_l1", "Energy import L1", 0x0040, 0, L1),
		energy(ActiveEnergy, "energy_import_l2", "Energy import L2", 0x0042, 0, L2),
		energy(ActiveEnergy, "energy_import_l3", "Energy import L3", 0x0044, 0, L3),
		energy(ActiveEnergy, "energy_import_tariff_1", "Energy import tariff 1", 0x0046, 0, 0),
		energy(ActiveEnergy, "energy_import_tariff_2", "Energy import tariff 2", 0x0048, 0, 0),
		exported(energy(ActiveEnergy, "energy_export", "Energy export", 0x004E, 0x0408, 0)),
		exported(energy(ReactiveEnergy, "reactive_energy_export", "Reactive energy export", 0x0050, 0x040C, 0)),
	}
}

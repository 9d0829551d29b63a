package meter

import "fmt"

// Identity is what the meter says about itself at connect, and what its
// snapshots taught: MaxWords and FineEnergy are settled by the first Read
// after a meter's first Connect (see Meter.Revision).
type Identity struct {
	ModelCode       uint16  // 000Bh, e.g. 341
	Serial          string  // 5000h–5006h, e.g. "235411W"
	Firmware        string  // 0302h/0303h as version letter and revision digit, e.g. "A0"
	ProductionYear  int     // 5010h; 0 when the meter predates the register
	MeasurementMode uint16  // 1103h: MeasurementModeA or MeasurementModeB
	MeasuringSystem uint16  // 1002h: 0 = 3-phase + N, 1 = 3-phase, 2 = 2-phase + N, 3 = 1-phase
	CTRatio         float64 // 1003h: current transformer ratio; 1 when the meter does not report one
	VTRatio         float64 // 1005h: voltage transformer ratio; 1 when the meter does not report one
	WrongConnection uint16  // 1105h bit field; 0 = wiring correct
	MaxWords        uint16  // largest read: MaxReadWords (2004h reads 50) until the meter refuses it (exception 03)
	FineEnergy      bool    // table 2.5 (3-decimal totals): assumed at a first Connect, false once it answers exception 02
}

// Model names the model code the way Carlo Gavazzi does.
func (id Identity) Model() string { return ModelOf(id.ModelCode).Name }

// MSWFirst reports whether 32-bit values come most significant word first.
func (id Identity) MSWFirst() bool { return ModelOf(id.ModelCode).MSWFirst }

// phases are the phases the measuring system wires; an unknown system is
// read as the EM340's three.
func (id Identity) phases() Phases {
	switch id.MeasuringSystem {
	case 2: // 2-phase + N
		return L1 | L2
	case 3: // 1-phase (EM330)
		return L1
	}
	return allPhases
}

// scale is what the meter's transformers multiply a quantity by: the range a
// value of a CT- or VT-connected meter may take grows with them.
// (The document's ratios are 1..1000; an Identity without them scales by 1.)
func (id Identity) scale(q Quantity) float64 {
	ct, vt := max(id.CTRatio, 1), max(id.VTRatio, 1)
	switch q {
	case Voltage:
		return vt
	case Current:
		return ct
	case ActivePower, ApparentPower, ReactivePower, ActiveEnergy, ReactiveEnergy:
		return ct * vt
	}
	return 1
}

// MeasurementModeName is "A" or "B".
func (id Identity) MeasurementModeName() string {
	if id.MeasurementMode == MeasurementModeB {
		return "B"
	}
	return "A"
}

// MeasuringSystemName describes the wiring the meter is configured for.
func (id Identity) MeasuringSystemName() string {
	switch id.MeasuringSystem {
	case 0:
		return "3-phase + N"
	case 1:
		return "3-phase"
	case 2:
		return "2-phase + N"
	case 3:
		return "1-phase"
	}
	return fmt.Sprintf("unknown (%d)", id.MeasuringSystem)
}

// WiringStatus explains the wrong-connection bits in words; "correct" when none is set.
func (id Identity) WiringStatus() string {
	if id.WrongConnection == WrongConnectionNone {
		return "correct"
	}
	names := []string{"wrong voltage sequence", "phase 1 inverted", "phase 2 inverted", "phase 3 inverted",
		"L1/L2 swapped", "L1/L3 swapped", "L2/L3 swapped", "all three swapped"}
	out := ""
	for bit, name := range names {
		if id.WrongConnection&(1<<bit) != 0 {
			if out != "" {
				out += ", "
			}
			out += name
		}
	}
	return out
}

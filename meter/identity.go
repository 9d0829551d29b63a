package meter

import "fmt"

// Identity is what the meter says about itself at connect.
type Identity struct {
	ModelCode       uint16 // 000Bh, e.g. 341
	Serial          string // 5000h–5006h, e.g. "235411W"
	Firmware        string // 0302h/0303h as version letter and revision digit, e.g. "A0"
	ProductionYear  int    // 5010h; 0 when the meter predates the register
	MeasurementMode uint16 // 1103h: MeasurementModeA or MeasurementModeB
	MeasuringSystem uint16 // 1002h: 0 = 3-phase + N, 1 = 3-phase, 2 = 2-phase + N
	WrongConnection uint16 // 1105h bit field; 0 = wiring correct
	MaxWords        uint16 // largest read the meter accepts (2004h, else MaxReadWords)
	FineEnergy      bool   // table 2.5 (3-decimal totals) answered
}

// Model names the model code the way Carlo Gavazzi does.
func (id Identity) Model() string {
	switch id.ModelCode {
	case ModelEM340:
		return "EM340"
	case ModelEM340Sample:
		return "EM340 (engineering sample)"
	case 346:
		return "EM341"
	case 345:
		return "ET340"
	case 331, 332:
		return "EM330"
	case 355:
		return "EM331"
	case 335, 336:
		return "ET330"
	}
	return fmt.Sprintf("unknown model %d", id.ModelCode)
}

// MSWFirst reports whether 32-bit values come most significant word first.
func (id Identity) MSWFirst() bool { return id.ModelCode == ModelEM340Sample }

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

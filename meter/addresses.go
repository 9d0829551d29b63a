package meter

// On-the-wire addresses and limits from the EM340 protocol document
// (../shared/em340/REGISTERS.md). The simulator serves exactly these.
const (
	AddrModelCode         uint16 = 0x000B // single-word read only
	AddrFirmwareVersion   uint16 = 0x0302 // 0 = "A", 1 = "B", ...
	AddrFirmwareRevision  uint16 = 0x0303 // 0 = "0", ...
	AddrFineEnergy        uint16 = 0x0400 // table 2.5, 3-decimal energy totals
	FineEnergyWords       uint16 = 16
	AddrMeasuringSystem   uint16 = 0x1002
	AddrCTRatio           uint16 = 0x1003 // UINT32, ratio*10 (10..10000)
	AddrVTRatio           uint16 = 0x1005 // UINT32, ratio*10 (10..10000)
	AddrMeasurementMode   uint16 = 0x1103
	AddrWrongConnection   uint16 = 0x1105
	AddrMaxWords          uint16 = 0x2004 // reads 50 (MaxReadWords); not read, see readIdentity
	AddrSerialNumber      uint16 = 0x5000
	SerialNumberWords     uint16 = 7
	AddrProductionYear    uint16 = 0x5010
	MaxReadWords          uint16 = 50 // documented largest read
	ModelEM340            uint16 = 341
	ModelEM340Sample      uint16 = 340 // engineering sample: most significant word first
	OverflowSentinel      uint32 = 0x7FFFFFFF
	MeasurementModeA      uint16 = 0 // easy connection: I, P and kWh always positive
	MeasurementModeB      uint16 = 1 // bidirectional: signed I and P, export counted
	WrongConnectionNone   uint16 = 0
	instantaneousAreaEnd  uint16 = 0x009A // table 2.4 is readable 0000h–0099h
	groupedByPhaseStart   uint16 = 0x00F6 // table 2.6 repeats the values by phase
	groupedByPhaseAreaEnd uint16 = 0x01B6
)

// Area is a half-open range of addresses [Start, End) that the meter answers as
// one block: a read that stays inside one area never meets exception 02.
type Area struct{ Start, End uint16 }

// ReadableAreas lists the contiguous areas of the register map that a block read
// may span, including the "not available, reads 0" gaps inside them.
func ReadableAreas() []Area {
	return []Area{
		{0x0000, instantaneousAreaEnd},
		{groupedByPhaseStart, groupedByPhaseAreaEnd},
		{AddrFineEnergy, AddrFineEnergy + FineEnergyWords},
	}
}

package emsim

import (
	"math"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
)

// The memory map: values at the addresses of meter.Registers() (and their
// 3-decimal pairs), the readable areas of meter.ReadableAreas() with "not
// available" gaps reading 0, and single words for settings and identity.
// Table 2.6 (00F6h–01B5h) is readable and reads all zeros: the simulator does
// not mirror the values grouped by phase.

// Settings and command registers that meter has no constant for.
const (
	addrPassword     uint16 = 0x1000
	addrCTRatio      uint16 = 0x1003 // UINT32, ratio*10
	addrVTRatio      uint16 = 0x1005 // UINT32, ratio*10
	addrDemandTime   uint16 = 0x1010 // UINT32, minutes
	addrDisplayMode  uint16 = 0x1100
	addrTariffEnable uint16 = 0x1101
	addrHomePage     uint16 = 0x1102
	addrWiringHelp   uint16 = 0x1104
	addrTariffSource uint16 = 0x1200
	addrTariffNumber uint16 = 0x1201
	addrSlaveAddress uint16 = 0x2000
	addrBaudCode     uint16 = 0x2001
	addrParity       uint16 = 0x2002
	addrStopBits     uint16 = 0x2003
	addrResetPartial uint16 = 0x4000 // write 1: partial and tariff counters, demand peak
	addrResetTotals  uint16 = 0x4001 // write 1: energy totals
)

type cellKind uint8

const (
	cellValue     cellKind = iota // the register's value at Addr
	cellFineWhole                 // 3-decimal total: whole units, INT32 at FineAddr
	cellFineMilli                 // 3-decimal total: thousandths, INT32 at FineAddr+2
)

// cell is one register address that holds (part of) a value of the table.
type cell struct {
	reg  int      // index into memoryMap.regs
	kind cellKind //
	word uint16   // 0 for the value's lower address
}

// memoryMap is built once from the register table and never changes.
type memoryMap struct {
	regs  []meter.Register
	index map[string]int // by Key
	cells map[uint16]cell
	areas []meter.Area
}

func newMemoryMap(regs []meter.Register) *memoryMap {
	m := &memoryMap{regs: regs, index: map[string]int{}, cells: map[uint16]cell{}, areas: meter.ReadableAreas()}
	for i, r := range regs {
		m.index[r.Key] = i
		for w := range r.Format.Words() {
			m.cells[r.Addr+w] = cell{reg: i, kind: cellValue, word: w}
		}
		if r.FineAddr != 0 {
			for w := range uint16(2) {
				m.cells[r.FineAddr+w] = cell{reg: i, kind: cellFineWhole, word: w}
				m.cells[r.FineAddr+2+w] = cell{reg: i, kind: cellFineMilli, word: w}
			}
		}
	}
	return m
}

// initialWords are the settings and identity registers, as served.
func initialWords(o Options) map[uint16]uint16 {
	w := map[uint16]uint16{
		addrPassword:               0,
		meter.AddrMeasuringSystem:  o.MeasuringSystem,
		addrDisplayMode:            0,
		addrTariffEnable:           0,
		addrHomePage:               0,
		meter.AddrMeasurementMode:  o.MeasurementMode,
		addrWiringHelp:             0,
		meter.AddrWrongConnection:  o.WrongConnection,
		addrTariffSource:           0,
		addrTariffNumber:           1,
		addrSlaveAddress:           uint16(o.Address),
		addrBaudCode:               baudCode(o.Baud),
		addrParity:                 1,
		addrStopBits:               1,
		meter.AddrMaxWords:         o.MaxWords,
		meter.AddrFirmwareVersion:  o.FirmwareVersion,
		meter.AddrFirmwareRevision: o.FirmwareRevision,
	}
	msw := o.ModelCode == meter.ModelEM340Sample
	for addr, v := range map[uint16]uint32{addrCTRatio: ratioWords(o.CTRatio), addrVTRatio: ratioWords(o.VTRatio), addrDemandTime: 15} {
		pair := encodeRaw(meter.UInt32, int64(v), msw)
		w[addr], w[addr+1] = pair[0], pair[1]
	}
	putSerial(w, o.Serial)
	if o.ProductionYear > 0 {
		w[meter.AddrProductionYear] = o.ProductionYear
	}
	return w
}

// putSerial writes one ASCII character into the low byte of each serial
// number word; a shorter serial leaves the remaining words 0.
func putSerial(w map[uint16]uint16, serial string) {
	for i := range meter.SerialNumberWords {
		var c uint16
		if int(i) < len(serial) {
			c = uint16(serial[i])
		}
		w[meter.AddrSerialNumber+i] = c
	}
}

// baudRate is the line speed of a 2001h code (1 = 9600 … 5 = 115200); 0 if none.
func baudRate(code uint16) int {
	switch code {
	case 1:
		return 9600
	case 2:
		return 19200
	case 3:
		return 38400
	case 4:
		return 57600
	case 5:
		return 115200
	}
	return 0
}

// baudCode is the 2001h code of a line speed; 1 (9600) for a speed without one.
func baudCode(baud int) uint16 {
	for code := uint16(1); code <= 5; code++ {
		if baudRate(code) == baud {
			return code
		}
	}
	return 1
}

// writeRule is what a function-06 write to one address may set.
type writeRule struct {
	min, max uint32
	pair     uint16 // first address of a 32-bit setting, checked as a whole; 0 for 16-bit
}

// writeRuleFor is the rule for addr on a meter of this model code.
func writeRuleFor(addr, model uint16) (writeRule, bool) {
	switch addr {
	case addrPassword:
		return writeRule{0, 9999, 0}, true
	case meter.AddrMeasuringSystem:
		return writeRule{0, uint32(highestSystem(model)), 0}, true
	case addrDisplayMode, addrTariffEnable, meter.AddrMeasurementMode, addrWiringHelp, addrTariffSource:
		return writeRule{0, 1, 0}, true
	case addrHomePage:
		return writeRule{0, 19, 0}, true
	case addrTariffNumber:
		return writeRule{1, 2, 0}, true
	case addrSlaveAddress:
		return writeRule{1, 247, 0}, true
	case addrBaudCode:
		return writeRule{1, 5, 0}, true
	case addrParity:
		return writeRule{1, 2, 0}, true
	case addrStopBits:
		return writeRule{0, 2, 0}, true
	case addrResetPartial, addrResetTotals:
		return writeRule{1, 1, 0}, true
	case addrCTRatio, addrCTRatio + 1:
		return writeRule{10, 10000, addrCTRatio}, true
	case addrVTRatio, addrVTRatio + 1:
		return writeRule{10, 10000, addrVTRatio}, true
	case addrDemandTime, addrDemandTime + 1:
		return writeRule{1, 30, addrDemandTime}, true
	}
	return writeRule{}, false // read-only (e.g. 1105h, 2004h, values) or undefined
}

// The functions below run with s.mu held.

// readable reports whether a read may include addr.
func (s *Sim) readable(addr uint16) bool {
	if s.absent[addr] {
		return false
	}
	for _, a := range s.mem.areas {
		if addr >= a.Start && addr < a.End {
			return a.Start != meter.AddrFineEnergy || s.opts.FineEnergy
		}
	}
	_, ok := s.words[addr]
	return ok
}

// read serves function 03/04: the words, or an exception code, and the
// outcome of the faults that spoiled them (OutcomeReply for none).
func (s *Sim) read(addr, qty uint16, now time.Time) ([]uint16, byte, Outcome) {
	if qty == 0 || qty > s.opts.MaxWords {
		return nil, exIllegalValue, OutcomeReply
	}
	if int(addr)+int(qty) > 0x10000 {
		return nil, exIllegalAddress, OutcomeReply
	}
	for a := range qty {
		if !s.readable(addr+a) && (!modelCodeRead(addr, int(qty)) || s.absent[addr]) {
			return nil, exIllegalAddress, OutcomeReply
		}
	}
	outcome := OutcomeReply
	from, count := int(addr), int(qty)
	if s.faults.shifted > 0 {
		s.faults.shifted--
		from += s.faults.shiftWords
		outcome = OutcomeShifted
	}
	if s.faults.wrongLength > 0 {
		s.faults.wrongLength--
		count = min(max(count+s.faults.lengthDelta, 0), 125)
		outcome = OutcomeWrongLength
	}
	start := uint16(from) // a shift past either end wraps, as an address counter would

	var totals *float64 // non-nil: every total in the reply reads this
	if s.hasTotal(start, count) {
		switch {
		case s.faults.bootZeroes > 0:
			s.faults.bootZeroes--
			totals = new(float64)
		case s.faults.lowTotals > 0:
			s.faults.lowTotals--
			totals = new(s.faults.lowValue)
		}
	}
	if totals != nil && outcome == OutcomeReply {
		outcome = OutcomeLowEnergy
		if *totals == 0 {
			outcome = OutcomeZeroEnergy
		}
	}

	s.model.refresh(now, s.conditions())
	if modelCodeRead(start, count) {
		return []uint16{s.opts.ModelCode}, 0, outcome
	}
	out := make([]uint16, count)
	for i := range count {
		a := start + uint16(i)
		if c, ok := s.mem.cells[a]; ok {
			out[i] = s.cellWords(c, totals)[c.word]
		} else {
			out[i] = s.words[a] // 0 in the "not available" gaps
		}
	}
	return out, 0, outcome
}

// hasTotal reports whether count registers from start hold (part of) an energy total.
func (s *Sim) hasTotal(start uint16, count int) bool {
	for i := range count {
		if c, ok := s.mem.cells[start+uint16(i)]; ok && s.mem.regs[c.reg].Total {
			return true
		}
	}
	return false
}

// cellWords are the words of the value a cell belongs to, faults applied:
// with totals non-nil every energy total reads *totals.
func (s *Sim) cellWords(c cell, totals *float64) []uint16 {
	r := s.mem.regs[c.reg]
	f := r.Format
	if c.kind != cellValue {
		f = meter.Int32
	}
	if s.faults.sentinel[r.Key] {
		return encodeRaw(f, sentinelRaw(f), s.mswFirst)
	}
	v := s.model.out[r.Key]
	if totals != nil && r.Total {
		v = *totals
	}
	raw := rawOf(r, c.kind, v)
	if !fits(f, raw) { // the meter shows "EEE"
		raw = sentinelRaw(f)
	}
	return encodeRaw(f, raw, s.mswFirst)
}

// raw is the integer the meter serves for a register's current value:
// counters truncate (a meter never shows energy it has not yet counted),
// measurements round.
func (s *Sim) raw(r meter.Register, kind cellKind) int64 {
	return rawOf(r, kind, s.model.out[r.Key])
}

// rawOf is the integer a cell of r serves for the value v.
func rawOf(r meter.Register, kind cellKind, v float64) int64 {
	if !r.Total && kind == cellValue {
		return int64(math.Round(v * r.Divisor))
	}
	milli := int64(math.Floor(v*1000 + 1e-4)) // tolerance for float error only
	switch kind {
	case cellFineWhole:
		return milli / 1000
	case cellFineMilli:
		return milli % 1000
	}
	return int64(math.Floor(float64(milli) * r.Divisor / 1000))
}

func sentinelRaw(f meter.Format) int64 {
	if f.Words() == 1 {
		return 0x7FFF
	}
	return int64(meter.OverflowSentinel)
}

func fits(f meter.Format, raw int64) bool {
	switch f {
	case meter.Int16:
		return raw >= math.MinInt16 && raw < math.MaxInt16
	case meter.UInt16:
		return raw >= 0 && raw <= math.MaxUint16
	case meter.UInt32:
		return raw >= 0 && raw <= math.MaxUint32 && raw != int64(meter.OverflowSentinel)
	}
	return raw >= math.MinInt32 && raw < math.MaxInt32
}

// encodeRaw lays an integer out in registers. Written here rather than taken
// from package meter so that tests of meter's decoder against the simulator
// compare two independent implementations.
func encodeRaw(f meter.Format, raw int64, mswFirst bool) []uint16 {
	if f.Words() == 1 {
		return []uint16{uint16(raw)}
	}
	u := uint32(raw)
	lo, hi := uint16(u), uint16(u>>16)
	if mswFirst {
		return []uint16{hi, lo}
	}
	return []uint16{lo, hi}
}

// word32 combines a 32-bit setting from its two words.
func (s *Sim) word32(addr uint16) uint32 {
	lo, hi := s.words[addr], s.words[addr+1]
	if s.mswFirst {
		lo, hi = hi, lo
	}
	return uint32(hi)<<16 | uint32(lo)
}

// write serves function 06; 0 means accepted.
func (s *Sim) write(addr, v uint16) byte {
	rule, ok := writeRuleFor(addr, s.opts.ModelCode)
	if !ok || s.absent[addr] {
		return exIllegalAddress
	}
	value := uint32(v)
	if rule.pair != 0 {
		old := s.words[addr]
		s.words[addr] = v
		value = s.word32(rule.pair)
		s.words[addr] = old
	}
	if value < rule.min || value > rule.max {
		return exIllegalValue
	}
	s.setWord(addr, v)
	return 0
}

// setWord stores a settings word (or runs a command) with its side effects.
func (s *Sim) setWord(addr, v uint16) {
	switch addr {
	case addrResetPartial:
		s.model.resetPartial()
		return
	case addrResetTotals:
		s.model.resetTotals()
		return
	case addrBaudCode:
		if b := baudRate(v); b > 0 {
			s.baud = b
		}
	}
	s.words[addr] = v
	s.model.dirty = true // mode or tariff may have changed
}

// conditions are the settings the physics depends on.
func (s *Sim) conditions() conditions {
	c := conditions{mode: s.words[meter.AddrMeasurementMode], tariff: 1, demandMinutes: float64(s.word32(addrDemandTime)),
		phases: phasesOf(s.words[meter.AddrMeasuringSystem])}
	if s.words[addrTariffEnable] == 1 && s.words[addrTariffSource] == 1 && s.words[addrTariffNumber] == 2 {
		c.tariff = 2
	}
	return c
}

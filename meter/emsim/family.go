package emsim

import (
	"math"

	"github.com/em340-bridge/em340-bridge/meter"
)

// The EM300/ET300 family: one protocol document covers them all, told apart
// by the model code at 000Bh (REGISTERS.md, identity table). What differs in
// the simulator: the word order of model 340, and the 1-phase measuring
// system, which only the EM330 offers. Anything else a model lacks is a test's
// choice: Options.Absent.

// The EM330's model codes.
const (
	modelEM330  uint16 = 331
	modelEM330b uint16 = 332
)

// Measuring systems (1002h).
const (
	system3PhaseN  uint16 = 0
	system3Phase   uint16 = 1
	system2PhaseN  uint16 = 2
	system1Phase   uint16 = 3 // EM330 only
	lastSystem     uint16 = system2PhaseN
	lastSystemEM33 uint16 = system1Phase
)

// highestSystem is the largest measuring system the model accepts: 3
// (1-phase) on the EM330 (model codes 331 and 332; the facts name no other),
// 2 elsewhere.
func highestSystem(model uint16) uint16 {
	if model == modelEM330 || model == modelEM330b {
		return lastSystemEM33
	}
	return lastSystem
}

// phasesOf is how many phases a measuring system measures.
func phasesOf(system uint16) int {
	switch system {
	case system2PhaseN:
		return 2
	case system1Phase:
		return 1
	}
	return 3
}

// ratioWords is a CT or VT ratio as 1003h/1005h serve it: ratio×10; 0 means 1.
func ratioWords(ratio float64) uint32 {
	if ratio <= 0 {
		ratio = 1
	}
	return uint32(math.Round(ratio * 10))
}

// absentSet is every address Options.Absent takes out: a listed address
// inside a value of the table takes out all of the value's words (both of a
// 32-bit value, all four of a 3-decimal total), one inside a 32-bit setting
// both of its words; any other listed address is taken out alone.
func absentSet(addrs []uint16, m *memoryMap) map[uint16]bool {
	out := map[uint16]bool{}
	for _, a := range addrs {
		first, n := a, uint16(1)
		if c, ok := m.cells[a]; ok {
			r := m.regs[c.reg]
			first, n = r.Addr, r.Format.Words()
			if c.kind != cellValue {
				first, n = r.FineAddr, 4
			}
		} else if rule, ok := writeRuleFor(a, 0); ok && rule.pair != 0 {
			first, n = rule.pair, 2
		}
		for i := range n {
			out[first+i] = true
		}
	}
	return out
}

// unmeasured zeroes what the measuring system does not measure, after
// everything else (a value held with Set included): in 2-phase + N the L3
// values and the line-to-line voltages with L3 in them; in 1-phase the L2
// and L3 values and every line-to-line voltage, the system's included; and
// the phase sequence in any system that is not 3-phase.
//
// This is an assumption of ours: the protocol document says which systems
// exist, not what a meter reads for a phase it does not measure. Zero is what
// a meter with nothing connected there reads.
func (m *model) unmeasured(c conditions) {
	if c.phases >= 3 {
		return
	}
	for i, k := range m.phases {
		if i >= c.phases {
			for _, key := range []string{k.voltage, k.current, k.power, k.apparent, k.reactive, k.pf, k.imp} {
				m.out[key] = 0
			}
		}
		if i >= c.phases || (i+1)%3 >= c.phases { // line i runs from phase i to phase i+1
			m.out[k.line] = 0
		}
	}
	if c.phases == 1 {
		m.out[keyVoltageLL] = 0
	}
	m.out[keyPhaseSequence] = 0
}

// modelCodeRead reports whether a read is the single-word read of 000Bh that
// the model code answers (in a block, 000Bh is a word of V L3-L1).
func modelCodeRead(addr uint16, count int) bool {
	return addr == meter.AddrModelCode && count == 1
}

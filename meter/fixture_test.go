package meter

import (
	"context"
	"fmt"

	"github.com/simonvetter/modbus"
)

// fixture is a register-level image of a meter for unit tests of decoding,
// planning and validation, laid out from the protocol document
// (REGISTERS.md): an address missing from mem answers exception 02, a read
// larger than maxWords exception 03. The simulator tests cover the real
// serial stack.
type fixture struct {
	mem      map[uint16]uint16
	single   map[uint16]uint16 // answers to single-word reads that differ from the block view (000Bh)
	maxWords uint16
	fail     error // when set, every read fails with it (a line that stopped answering)
	requests []Block
	refused  int // reads answered with an exception
}

// newFixture lays out a meter with the given values (by key), model code and
// whether the 3-decimal totals exist.
func newFixture(model uint16, fine bool, values map[string]float64) *fixture {
	f := &fixture{mem: map[uint16]uint16{}, maxWords: MaxReadWords}
	for a := uint16(0); a < 0x9A; a++ {
		f.mem[a] = 0
	}
	msw := model == ModelEM340Sample
	for _, r := range Registers() {
		v := values[r.Key]
		for i, w := range Encode(r, v, msw) {
			f.mem[r.Addr+uint16(i)] = w
		}
		if fine && r.FineAddr != 0 {
			for a := r.FineAddr; a < r.FineAddr+4; a++ {
				f.mem[a] = 0
			}
			for i, w := range EncodeFine(v, msw) {
				f.mem[r.FineAddr+uint16(i)] = w
			}
		}
	}
	f.single = map[uint16]uint16{AddrModelCode: model}
	for i, c := range "235411W" {
		f.mem[AddrSerialNumber+uint16(i)] = uint16(c)
	}
	f.mem[AddrFirmwareVersion], f.mem[AddrFirmwareVersion+1] = 1, 3
	f.mem[AddrProductionYear] = 2021
	f.mem[AddrMeasuringSystem] = 0
	f.setRatios(1, 1, msw)
	f.mem[AddrMeasurementMode], f.mem[AddrMeasurementMode+1], f.mem[AddrWrongConnection] = MeasurementModeB, 0, 0
	f.mem[AddrMaxWords] = MaxReadWords
	return f
}

func (f *fixture) ReadRegisters(_ context.Context, addr, n uint16) ([]uint16, error) {
	f.requests = append(f.requests, Block{addr, n})
	if f.fail != nil {
		return nil, f.fail
	}
	if n == 0 || n > f.maxWords {
		f.refused++
		return nil, fmt.Errorf("fixture: %w", modbus.ErrIllegalDataValue)
	}
	if n == 1 {
		if w, ok := f.single[addr]; ok {
			return []uint16{w}, nil
		}
	}
	out := make([]uint16, n)
	for i := range out {
		w, ok := f.mem[addr+uint16(i)]
		if !ok {
			f.refused++
			return nil, fmt.Errorf("fixture: %04Xh: %w", addr+uint16(i), modbus.ErrIllegalDataAddress)
		}
		out[i] = w
	}
	return out, nil
}

func (f *fixture) set(r Register, v float64, msw bool) {
	for i, w := range Encode(r, v, msw) {
		f.mem[r.Addr+uint16(i)] = w
	}
}

func (f *fixture) setFine(r Register, v float64, msw bool) {
	for i, w := range EncodeFine(v, msw) {
		f.mem[r.FineAddr+uint16(i)] = w
	}
}

// setRatios sets the CT and VT ratios (1003h, 1005h: UINT32, ratio*10).
func (f *fixture) setRatios(ct, vt float64, msw bool) {
	put(f, AddrCTRatio, encodeRaw(UInt32, int64(ct*10), msw))
	put(f, AddrVTRatio, encodeRaw(UInt32, int64(vt*10), msw))
}

// lack makes the meter answer exception 02 for the registers of keys.
func (f *fixture) lack(keys ...string) {
	for _, k := range keys {
		r := register(k)
		for a := r.Addr; a < r.Addr+r.Format.Words(); a++ {
			delete(f.mem, a)
		}
	}
}

// count runs do and returns how many requests and refused requests it made.
func (f *fixture) count(do func()) (requests, refused int) {
	n, x := len(f.requests), f.refused
	do()
	return len(f.requests) - n, f.refused - x
}

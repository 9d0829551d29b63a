package meter

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// Fuzz targets of the meter package. FuzzDecode covers the decoding layer
// (words → value); FuzzMeterRead covers decoding plus validation end to end
// through Meter.Connect and Meter.Read with a Reader that serves fuzzed words.
// The RTU framing layer below them is fuzzed in emsim (the simulator's
// parser) — the client's own parser belongs to simonvetter/modbus.

// wordsOf turns bytes into big-endian words, as a reply's data carries them.
func wordsOf(b []byte) []uint16 {
	w := make([]uint16, len(b)/2)
	for i := range w {
		w[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return w
}

func isSentinel(lo, hi uint16, msw bool) bool {
	if msw {
		lo, hi = hi, lo
	}
	return uint32(hi)<<16|uint32(lo) == OverflowSentinel
}

// Any words give a value or an error, never a panic; the sentinel is never a
// value; a value read back through Encode gives the same words.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x08, 0xFC, 0x00, 0x00}, uint8(0), false)
	f.Add([]byte{0xFF, 0xFF, 0x7F, 0xFF}, uint8(0), false)
	f.Add([]byte{0x7F, 0xFF, 0xFF, 0xFF}, uint8(28), true)
	f.Add([]byte{0x30, 0x39, 0x00, 0x00, 0x02, 0xA6, 0x00, 0x00}, uint8(28), false)
	f.Add([]byte{0x30, 0x39, 0x00, 0x00, 0x03, 0xE8, 0x00, 0x00}, uint8(28), false)
	f.Add([]byte{0xFC}, uint8(23), false)
	f.Add([]byte{}, uint8(1), true)
	regs := Registers()
	f.Fuzz(func(t *testing.T, data []byte, index uint8, msw bool) {
		r := regs[int(index)%len(regs)]
		words := wordsOf(data)
		v, err := Decode(r, words, msw)
		switch {
		case err != nil:
			if len(words) >= int(r.Format.Words()) && !errors.Is(err, ErrOverflow) {
				t.Fatalf("%s %04X: unexpected error %v", r.Key, words, err)
			}
		case math.IsNaN(v) || math.IsInf(v, 0):
			t.Fatalf("%s %04X: %v", r.Key, words, v)
		case r.Format.Words() == 2 && isSentinel(words[0], words[1], msw):
			t.Fatalf("%s: the sentinel decoded to %v", r.Key, v)
		default:
			n := r.Format.Words()
			back := Encode(r, v, msw)
			for i := range n {
				if back[i] != words[i] {
					t.Fatalf("%s %04X → %v → %04X", r.Key, words[:n], v, back)
				}
			}
		}
		fv, err := DecodeFine(r, words, msw)
		if err != nil {
			return
		}
		if len(words) < 4 || isSentinel(words[0], words[1], msw) || isSentinel(words[2], words[3], msw) {
			t.Fatalf("%s %04X: 3-decimal value %v from a sentinel or short read", r.Key, words, fv)
		}
		if math.IsNaN(fv) || math.IsInf(fv, 0) {
			t.Fatalf("%s %04X: %v", r.Key, words, fv)
		}
		whole, _ := rawValue(Int32, words[:2], msw)
		if milli := math.Round((fv - float64(whole)) * 1000); milli < 0 || milli > 999 {
			t.Fatalf("%s %04X: %v has thousandths %v", r.Key, words, fv, milli)
		}
	})
}

// totalsModel is what the fuzz test knows of the energy totals: the last
// value published for each, and how many snapshots since served a lower one.
type totalsModel struct {
	published map[string]float64
	lower     map[string]int
}

// FuzzMeterRead serves snapshots whose registers the fuzzer mutates (sentinel,
// zero, a rise, a fall or any raw word) and checks every published Reading:
// no value from a sentinel, nothing outside its range, no negative current or
// power in mode A, no lifetime energy total below the last published one or
// zero, and a partial counter lower only after it was served lower in at least
// ConfirmAfter snapshots — the documented reset rule. A snapshot may be
// dropped whole (all zero, garbled), never fail otherwise.
func FuzzMeterRead(f *testing.F) {
	f.Add([]byte{28, 0, 0, 0, 0, 0, 0, 0, 28, 1, 0, 0, 0, 0, 0, 0}, uint8(1), true, false, false)
	f.Add([]byte{28, 3, 9, 0, 0, 0, 0, 0, 28, 3, 9, 0, 0, 0, 0, 0, 28, 3, 9, 0, 0, 0, 0, 0}, uint8(1), true, false, false)
	f.Add([]byte{28, 1, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0}, uint8(0), false, true, false)
	f.Add([]byte{20, 3, 200, 0, 6, 4, 0xFF, 0x7F, 21, 4, 0xFF, 0xFF, 5}, uint8(2), true, false, true)
	f.Add([]byte{40, 2, 50, 0, 5, 40, 3, 1, 0, 5, 40, 3, 1, 0, 5, 40, 3, 1, 0, 5, 40, 3, 1, 0, 5}, uint8(1), false, false, false)
	regs := Registers()
	f.Fuzz(func(t *testing.T, ops []byte, resetSel uint8, fine, msw, modeA bool) {
		ctx := context.Background()
		model := ModelEM340
		if msw {
			model = ModelEM340Sample
		}
		values := typicalValues()
		fx := newFixture(model, fine, values)
		mode := MeasurementModeB
		if modeA {
			mode = MeasurementModeA
			fx.mem[AddrMeasurementMode] = mode
			for _, r := range regs { // a meter in mode A serves no negative power
				if values[r.Key] < 0 && r.Min < 0 {
					values[r.Key] = -values[r.Key]
					fx.set(r, values[r.Key], msw)
				}
			}
		}
		resetAfter := 2 + int(resetSel%4) // at least 2: one glitch alone never passes
		m := New(Options{ConfirmAfter: resetAfter})
		if _, err := m.Connect(ctx, fx); err != nil {
			t.Fatal(err)
		}
		tm := totalsModel{published: map[string]float64{}, lower: map[string]int{}}
		for snapshots := 0; len(ops) > 0 && snapshots < 64; snapshots++ {
			ops = mutate(fx, regs, values, ops, fine, msw)
			served := servedValues(fx, regs, fine, msw)
			reading, err := m.Read(ctx, fx)
			if err != nil {
				if !errors.Is(err, ErrAllZero) && !errors.Is(err, ErrGarbledSnapshot) {
					t.Fatalf("snapshot %d: %v", snapshots, err)
				}
				continue
			}
			checkReading(t, reading, served, &tm, mode, resetAfter)
		}
	})
}

// mutate applies ops up to the next "take a snapshot" op (kind 5) and
// returns the rest. An op is a register index, a kind and two argument bytes.
func mutate(fx *fixture, regs []Register, values map[string]float64, ops []byte, fine, msw bool) []byte {
	for len(ops) >= 2 {
		r := regs[int(ops[0])%len(regs)]
		kind := ops[1] % 6
		var a, b byte
		if len(ops) >= 4 {
			a, b = ops[2], ops[3]
		}
		ops = ops[min(4, len(ops)):]
		if kind == 5 {
			return ops
		}
		v := values[r.Key]
		switch kind {
		case 0: // the overflow sentinel on the value (and its 3-decimal pair)
			if r.Format.Words() == 2 {
				put(fx, r.Addr, encodeRaw(Int32, int64(OverflowSentinel), msw))
			}
			if fine && r.FineAddr != 0 {
				put(fx, r.FineAddr+uint16(a%2)*2, encodeRaw(Int32, int64(OverflowSentinel), msw))
			}
			continue
		case 1:
			v = 0
		case 2:
			v += float64(a) / 100
		case 3:
			v -= float64(a)/10 + 0.1
		case 4: // any word anywhere in the value
			addr := r.Addr + uint16(b)%r.Format.Words()
			if fine && r.FineAddr != 0 {
				addr = r.FineAddr + uint16(b)%4
			}
			fx.mem[addr] = uint16(a)<<8 | uint16(b)
			continue
		}
		values[r.Key] = v
		fx.set(r, v, msw)
		if fine && r.FineAddr != 0 {
			put(fx, r.FineAddr, []uint16{0, 0, 0, 0})
			fx.setFine(r, v, msw)
		}
	}
	return nil
}

func put(fx *fixture, addr uint16, words []uint16) {
	for i, w := range words {
		fx.mem[addr+uint16(i)] = w
	}
}

// servedValue is what the registers a published value comes from hold now,
// and whether they hold a value at all (not a sentinel).
type servedValue struct {
	value float64
	ok    bool
}

func servedValues(fx *fixture, regs []Register, fine, msw bool) map[string]servedValue {
	out := map[string]servedValue{}
	for _, r := range regs {
		var v float64
		var err error
		if fine && r.FineAddr != 0 {
			w := []uint16{fx.mem[r.FineAddr], fx.mem[r.FineAddr+1], fx.mem[r.FineAddr+2], fx.mem[r.FineAddr+3]}
			v, err = DecodeFine(r, w, msw)
		} else {
			w := []uint16{fx.mem[r.Addr], fx.mem[r.Addr+1]}
			v, err = Decode(r, w[:r.Format.Words()], msw)
		}
		out[r.Key] = servedValue{v, err == nil}
	}
	return out
}

func checkReading(t *testing.T, reading Reading, served map[string]servedValue, tm *totalsModel, mode uint16, resetAfter int) {
	t.Helper()
	for key, s := range served { // count the snapshots that served a lower total
		if last, seen := tm.published[key]; seen && s.ok && s.value < last {
			tm.lower[key]++
		}
	}
	for _, v := range reading.Values {
		r, s := v.Register, served[v.Register.Key]
		switch {
		case !s.ok:
			t.Fatalf("%s = %v published from a sentinel or undecodable registers", r.Key, v.Value)
		case v.Value != s.value:
			t.Fatalf("%s = %v published, registers hold %v", r.Key, v.Value, s.value)
		case v.Value < r.Min || v.Value > r.Max:
			t.Fatalf("%s = %v outside %v..%v", r.Key, v.Value, r.Min, r.Max)
		case mode == MeasurementModeA && v.Value < 0 && (r.Quantity == Current || r.Quantity == ActivePower):
			t.Fatalf("%s = %v in mode A", r.Key, v.Value)
		}
		if !r.Total {
			continue
		}
		if !r.Partial && v.Value == 0 {
			t.Fatalf("%s = 0 published", r.Key)
		}
		if last, seen := tm.published[r.Key]; seen && v.Value < last && (!r.Partial || tm.lower[r.Key] < resetAfter) {
			t.Fatalf("%s fell from %v to %v after %d lower snapshots (reset needs %d)", r.Key, last, v.Value, tm.lower[r.Key], resetAfter)
		}
		tm.published[r.Key], tm.lower[r.Key] = v.Value, 0
	}
}

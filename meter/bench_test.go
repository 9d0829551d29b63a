package meter_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/em340-bridge/em340-bridge/meter"
)

// registerMap is a meter in memory: the words a current EM340 serves (mode B,
// 3-decimal totals), every value in the middle of its range. Reads of words
// it does not hold answer 0, as the meter's "not available" gaps do.
type registerMap struct {
	words    map[uint16]uint16
	requests int
}

func newRegisterMap() *registerMap {
	m := &registerMap{words: map[uint16]uint16{
		meter.AddrModelCode:        meter.ModelEM340,
		meter.AddrFirmwareVersion:  1,
		meter.AddrProductionYear:   2021,
		meter.AddrMeasurementMode:  meter.MeasurementModeB,
		meter.AddrMaxWords:         meter.MaxReadWords,
		meter.AddrWrongConnection:  meter.WrongConnectionNone,
		meter.AddrMeasuringSystem:  0,
		meter.AddrFirmwareRevision: 2,
	}}
	for i, c := range "235411W" {
		m.words[meter.AddrSerialNumber+uint16(i)] = uint16(c)
	}
	for _, r := range meter.Registers() {
		v := (r.Min + r.Max) / 2
		if len(r.Options) > 0 || r.Total {
			v = math.Max(r.Min, 1)
		}
		m.put(r.Addr, meter.Encode(r, v, false))
		if r.FineAddr != 0 {
			m.put(r.FineAddr, meter.EncodeFine(v, false))
		}
	}
	return m
}

func (m *registerMap) put(addr uint16, words []uint16) {
	for i, w := range words {
		m.words[addr+uint16(i)] = w
	}
}

func (m *registerMap) ReadRegisters(_ context.Context, addr, quantity uint16) ([]uint16, error) {
	m.requests++
	out := make([]uint16, quantity)
	for i := range out {
		out[i] = m.words[addr+uint16(i)]
	}
	return out, nil
}

// BenchmarkDecode decodes every value of a snapshot from its words: one op is
// the whole register table.
func BenchmarkDecode(b *testing.B) {
	regs := meter.Registers()
	words := make([][]uint16, len(regs))
	for i, r := range regs {
		words[i] = meter.Encode(r, (r.Min+r.Max)/2, false)
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, r := range regs {
			if _, err := meter.Decode(r, words[i], false); err != nil {
				b.Fatalf("%s: %v", r.Key, err)
			}
		}
	}
	b.ReportMetric(float64(len(regs)), "values/op")
}

// BenchmarkPlan plans the fewest reads of the register table; reads/op is
// how many requests a snapshot then takes.
func BenchmarkPlan(b *testing.B) {
	for _, fine := range []bool{false, true} {
		b.Run(fmt.Sprintf("fine=%v", fine), func(b *testing.B) {
			b.ReportAllocs()
			var plan []meter.Block
			for b.Loop() {
				var err error
				if plan, err = meter.Plan(meter.Registers(), fine, meter.MaxReadWords); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(plan)), "reads/op")
		})
	}
}

// BenchmarkRead takes a whole snapshot from a meter in memory: the planned
// reads, decoding and validation, without the line.
func BenchmarkRead(b *testing.B) {
	ctx := context.Background()
	regs := newRegisterMap()
	m := meter.New(meter.Options{})
	if _, err := m.Connect(ctx, regs); err != nil {
		b.Fatal(err)
	}
	for range 2 { // the totals are confirmed by a second agreeing read
		if _, err := m.Read(ctx, regs); err != nil {
			b.Fatal(err)
		}
	}
	if r, err := m.Read(ctx, regs); err != nil || len(r.Values) != len(meter.Registers()) || m.Rejected() != 0 {
		b.Fatalf("%d of %d values, %d rejected, %v", len(r.Values), len(meter.Registers()), m.Rejected(), err)
	}
	regs.requests = 0
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := m.Read(ctx, regs); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(regs.requests)/float64(n), "requests/op")
}

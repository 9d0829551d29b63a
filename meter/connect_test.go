package meter

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// The identity reads of a first connect, in order: what the register map
// allows no fewer of (see readIdentity).
var identityReads = []Block{
	{AddrModelCode, 1}, {AddrSerialNumber, SerialNumberWords}, {AddrFirmwareVersion, 2},
	{AddrMeasuringSystem, 5}, {AddrMeasurementMode, 3}, {AddrProductionYear, 1},
}

// restoreTotals gives m accepted totals a minute old and just below what f
// serves, as the bridge's state file does, so the first snapshot publishes them.
func restoreTotals(m *Meter, vals map[string]float64) {
	totals := map[string]Accepted{}
	for _, r := range Registers() {
		if r.Total && vals[r.Key] > 0 {
			totals[r.Key] = Accepted{Value: vals[r.Key] - 0.1, At: time.Now().Add(-time.Minute)}
		}
	}
	m.Restore(totals)
}

// TestFirstConnectAndSnapshot: a first connect reads the identity in 6
// requests (8 before: 2004h and the 3-decimal probe are gone) and the first
// snapshot reads table 2.5 with the rest; what the meter refuses there settles
// FineEnergy and MaxWords without a request more than the refusal, and the
// first snapshot is complete either way.
func TestFirstConnectAndSnapshot(t *testing.T) {
	tests := []struct {
		name       string
		model      uint16
		fine       bool
		maxWords   uint16
		lack       []uint16 // addresses that answer exception 02
		connect    []Block
		snapshot   []Block // the first snapshot's requests, refused ones included
		next       []Block // the plan from then on
		wantEnergy float64
	}{
		{name: "EM340 with table 2.5", model: ModelEM340, fine: true, maxWords: 50, connect: identityReads,
			snapshot:   []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}},
			next:       []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}},
			wantEnergy: 12345.678},
		{name: "older EM340: table 2.5 refused in the snapshot, no 5010h", model: ModelEM340, maxWords: 50,
			lack: []uint16{AddrProductionYear}, connect: identityReads,
			snapshot:   []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}},
			next:       []Block{{0x00, 50}, {0x32, 32}},
			wantEnergy: 12345.7},
		{name: "engineering sample, MSW first", model: ModelEM340Sample, fine: true, maxWords: 50, connect: identityReads,
			snapshot:   []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}},
			next:       []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}},
			wantEnergy: 12345.678},
		{name: "a meter that refuses 50-register reads", model: ModelEM340, fine: true, maxWords: 20, connect: identityReads,
			snapshot:   []Block{{0x00, 50}, {0x00, 20}, {0x14, 20}, {0x28, 20}, {0x3C, 20}, {0x50, 2}, {0x400, 16}},
			next:       []Block{{0x00, 20}, {0x14, 20}, {0x28, 20}, {0x3C, 20}, {0x50, 2}, {0x400, 16}},
			wantEnergy: 12345.678},
		{name: "a meter without CT/VT ratios reads 1002h alone", model: ModelEM340, fine: true, maxWords: 50,
			lack:       []uint16{AddrCTRatio, AddrCTRatio + 1, AddrVTRatio, AddrVTRatio + 1},
			connect:    slices.Insert(slices.Clone(identityReads), 4, Block{AddrMeasuringSystem, 1}),
			snapshot:   []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}},
			next:       []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}},
			wantEnergy: 12345.678},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			vals := typicalValues()
			f := newFixture(tt.model, tt.fine, vals)
			f.maxWords = tt.maxWords
			for _, a := range tt.lack {
				delete(f.mem, a)
			}
			m := New(Options{})
			restoreTotals(m, vals)
			id, err := m.Connect(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.requests, tt.connect) {
				t.Errorf("connect read %v, want %v", f.requests, tt.connect)
			}
			want := Identity{ModelCode: tt.model, Serial: "235411W", Firmware: "B3", ProductionYear: 2021,
				MeasurementMode: MeasurementModeB, CTRatio: 1, VTRatio: 1, MaxWords: 50, FineEnergy: true}
			if slices.Contains(tt.lack, AddrProductionYear) {
				want.ProductionYear = 0
			}
			if id != want {
				t.Errorf("identity at connect %+v, want %+v (FineEnergy assumed until the snapshot)", id, want)
			}
			rev := m.Revision()
			f.requests = nil
			reading, err := m.Read(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.requests, tt.snapshot) {
				t.Errorf("first snapshot read %v, want %v", f.requests, tt.snapshot)
			}
			id = m.Identity()
			if id.FineEnergy != tt.fine || id.MaxWords != tt.maxWords || reading.Fine != tt.fine {
				t.Errorf("after the first snapshot: FineEnergy %v (reading %v), MaxWords %d; want %v, %d",
					id.FineEnergy, reading.Fine, id.MaxWords, tt.fine, tt.maxWords)
			}
			if learnt := !tt.fine || tt.maxWords != 50; (m.Revision() != rev) != learnt {
				t.Errorf("revision %d → %d; the snapshot learnt something: %v", rev, m.Revision(), learnt)
			}
			if len(reading.Values) != len(Registers()) {
				t.Errorf("first snapshot: %d values, want all %d", len(reading.Values), len(Registers()))
			}
			for key, want := range map[string]float64{"voltage_l1_n": 230.4, "voltage_ll": 399.1, "current_l3": 4.321,
				"power": -1234.5, "power_factor_l2": -0.872, "frequency": 50.1, "energy_import": tt.wantEnergy,
				"energy_export": tt.wantEnergy, "energy_import_l1": 12345.7} {
				if got, ok := reading.Get(key); !ok || got != want {
					t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
				}
			}
			if !slices.Equal(m.Plan(), tt.next) {
				t.Errorf("plan %v, want %v", m.Plan(), tt.next)
			}
			f.requests = nil
			if _, err := m.Read(ctx, f); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.requests, tt.next) {
				t.Errorf("next snapshot read %v, want %v", f.requests, tt.next)
			}
		})
	}
}

// TestReconnectProvesTheSerialOnly: a reconnect of the same meter costs one
// request (the serial number) before the first snapshot; the rest of the
// identity is read again afterwards by Refresh, which reports a change made on
// the keypad. A different meter takes the full path.
func TestReconnectProvesTheSerialOnly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(ModelEM340, true, typicalValues())
	m := New(Options{})
	connect := func() {
		t.Helper()
		if _, err := m.Connect(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	read := func() {
		t.Helper()
		if _, err := m.Read(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := f.count(func() { connect(); read() }); n != 6+3 {
		t.Errorf("first connect and snapshot: %d requests, want 6 + 3", n)
	}
	if n, _ := f.count(connect); n != 1 {
		t.Errorf("reconnect of the same meter: %d requests before the snapshot, want 1 (the serial)", n)
	}
	if !m.RefreshDue() {
		t.Error("after a fast reconnect the identity must be refreshed")
	}
	if n, _ := f.count(read); n != 3 {
		t.Errorf("snapshot after the reconnect: %d requests, want 3", n)
	}
	f.mem[AddrMeasurementMode] = MeasurementModeA // changed on the keypad meanwhile
	var id Identity
	var changed bool
	var err error
	if n, _ := f.count(func() { id, changed, err = m.Refresh(ctx, f) }); n != 4 {
		t.Errorf("refresh: %d requests, want 4 (serial, firmware, system, mode)", n)
	}
	if err != nil || !changed || id.MeasurementMode != MeasurementModeA || m.RefreshDue() {
		t.Errorf("refresh: %+v changed=%v err=%v due=%v; want mode A, changed", id, changed, err, m.RefreshDue())
	}
	connect()
	if _, changed, _ := m.Refresh(ctx, f); changed {
		t.Error("a refresh that finds the same identity reports a change")
	}

	for i, c := range "999999X" {
		f.mem[AddrSerialNumber+uint16(i)] = uint16(c)
	}
	var err2 error
	if n, _ := f.count(func() { _, err2 = m.Connect(ctx, f) }); n != 1+5 || !errors.Is(err2, ErrWrongMeter) {
		t.Errorf("a different meter: %d requests, err %v; want the serial then the rest of the identity (1 + 5), ErrWrongMeter", n, err2)
	}
	if id := m.Identity(); id.Serial != "999999X" || !id.FineEnergy || m.RefreshDue() {
		t.Errorf("after the full path: %+v, refresh due %v", id, m.RefreshDue())
	}
}

// A meter that refused 50-register reads keeps its smaller reads over a
// reconnect of the same serial; a different meter starts again at 50.
func TestLearntBlockSizeFollowsTheSerial(t *testing.T) {
	ctx := context.Background()
	f := newFixture(ModelEM340, true, typicalValues())
	f.maxWords = 20
	m := New(Options{})
	for range 2 {
		if _, err := m.Connect(ctx, f); err != nil {
			t.Fatal(err)
		}
		if _, refused := f.count(func() { _, _ = m.Read(ctx, f) }); m.Identity().MaxWords != 20 || refused > 1 {
			t.Fatalf("max words %d, %d refused reads", m.Identity().MaxWords, refused)
		}
	}
	if _, refused := f.count(func() { _, _ = m.Read(ctx, f) }); refused != 0 {
		t.Errorf("after a reconnect of the same meter %d reads were refused", refused)
	}
	f.mem[AddrSerialNumber] = 'X'
	if _, err := m.Connect(ctx, f); !errors.Is(err, ErrWrongMeter) || m.Identity().MaxWords != MaxReadWords {
		t.Errorf("a different meter: %v, max words %d", err, m.Identity().MaxWords)
	}
}

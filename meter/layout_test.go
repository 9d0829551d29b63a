package meter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func keysOf(regs []Register) []string {
	out := make([]string, len(regs))
	for i, r := range regs {
		out[i] = r.Key
	}
	return out
}

func readingKeys(r Reading) []string {
	out := make([]string, len(r.Values))
	for i, v := range r.Values {
		out[i] = v.Register.Key
	}
	return out
}

// allBut is every key of the table but the given ones, in table order.
func allBut(drop ...string) []string {
	var out []string
	for _, r := range Registers() {
		if !slices.Contains(drop, r.Key) {
			out = append(out, r.Key)
		}
	}
	return out
}

// connectAndRead connects m to f and takes two snapshots (the second confirms
// the totals); it returns the second.
func connectAndRead(t *testing.T, m *Meter, f *fixture) Reading {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Connect(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Read(ctx, f); err != nil {
		t.Fatal(err)
	}
	reading, err := m.Read(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return reading
}

// What each measuring system (1002h) has, from the document: 2-phase + N no
// L3 values and only the L1-L2 line voltage, 1-phase (EM330) no L2/L3 values
// and no line-to-line voltage; the phase sequence exists on 3-phase only.
func TestMeasuringSystemDecidesWhatIsPolled(t *testing.T) {
	l3 := []string{"voltage_l3_n", "voltage_l2_l3", "voltage_l3_l1", "current_l3", "power_l3", "apparent_power_l3",
		"reactive_power_l3", "power_factor_l3", "energy_import_l3", "phase_sequence"}
	l2 := []string{"voltage_l2_n", "current_l2", "power_l2", "apparent_power_l2", "reactive_power_l2",
		"power_factor_l2", "energy_import_l2", "voltage_l1_l2", "voltage_ll"}
	tests := []struct {
		name   string
		model  uint16
		system uint16
		want   []string
	}{
		{"3-phase + N", ModelEM340, 0, allBut()},
		{"3-phase", ModelEM340, 1, allBut()},
		{"2-phase + N", ModelEM340, 2, allBut(l3...)},
		{"1-phase EM330", 331, 3, allBut(append(l3, l2...)...)},
		{"unknown system reads as 3-phase", ModelEM340, 9, allBut()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := typicalValues()
			for _, r := range Registers() {
				if !slices.Contains(tt.want, r.Key) {
					vals[r.Key] = 0 // as a meter wired for fewer phases reads them
				}
			}
			f := newFixture(tt.model, true, vals)
			f.mem[AddrMeasuringSystem] = tt.system
			m := New(Options{})
			reading := connectAndRead(t, m, f)
			if got := keysOf(m.Registers()); !slices.Equal(got, tt.want) {
				t.Errorf("Registers() = %v,\nwant %v", got, tt.want)
			}
			if got := readingKeys(reading); !slices.Equal(got, tt.want) {
				t.Errorf("reading has %v,\nwant %v", got, tt.want)
			}
			if n, refused := f.count(func() { _, _ = m.Read(context.Background(), f) }); n != 3 || refused != 0 {
				t.Errorf("snapshot: %d requests, %d refused; want 3, none", n, refused)
			}
		})
	}
}

// In measurement mode A export reads 0 for good: it is neither polled nor
// described, and comes back when a refresh finds mode B.
func TestModeAHasNoExport(t *testing.T) {
	ctx := context.Background()
	vals := typicalValues()
	vals["energy_export"], vals["reactive_energy_export"] = 0, 0
	vals["power"], vals["power_factor_l2"] = 1234.5, 0.872 // no negative power in mode A
	f := newFixture(ModelEM340, true, vals)
	f.mem[AddrMeasurementMode] = MeasurementModeA
	m := New(Options{})
	reading := connectAndRead(t, m, f)
	noExport := allBut("energy_export", "reactive_energy_export")
	if got := keysOf(m.Registers()); !slices.Equal(got, noExport) {
		t.Errorf("mode A: Registers() = %v", got)
	}
	if got := readingKeys(reading); !slices.Equal(got, noExport) {
		t.Errorf("mode A: reading has %v", got)
	}
	if want := []Block{{0x00, 50}, {0x32, 24}, {0x400, 8}}; !slices.Equal(m.Plan(), want) {
		t.Errorf("mode A plan %v, want %v", m.Plan(), want)
	}
	f.mem[AddrMeasurementMode] = MeasurementModeB // set on the keypad
	f.set(register("energy_export"), 1.5, false)
	f.setFine(register("energy_export"), 1.5, false)
	rev := m.Revision()
	if _, changed, err := m.Refresh(ctx, f); err != nil || !changed || m.Revision() == rev {
		t.Fatalf("refresh: changed %v, err %v, revision %d → %d", changed, err, rev, m.Revision())
	}
	if got := keysOf(m.Registers()); !slices.Equal(got, allBut()) {
		t.Errorf("mode B: Registers() = %v", got)
	}
	if want := []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}}; !slices.Equal(m.Plan(), want) {
		t.Errorf("mode B plan %v, want %v", m.Plan(), want)
	}
}

// A planned block answered with exception 02 holds something the meter lacks:
// the first snapshot finds it by bisection, in few requests, and is still
// complete otherwise; it is dropped from Registers() and the plan, kept over a
// reconnect of the same meter, logged once, and forgotten for another meter.
func TestAbsentRegistersAreFoundAndDropped(t *testing.T) {
	tests := []struct {
		name     string
		lack     []string // keys
		lackAddr []uint16 // addresses between values
		snapshot []Block  // the first snapshot's requests (exact), or
		most     int      // at most this many when snapshot is nil: the plan's 3 and 2·log2(parts of its block) per absent value
		plan     []Block
	}{
		{name: "one value", lack: []string{"power_demand_peak"},
			snapshot: []Block{{0x00, 50}, {0x32, 32}, {0x32, 14}, {0x32, 6}, {0x38, 4}, {0x38, 2}, {0x3C, 4}, {0x40, 18}, {0x400, 16}},
			plan:     []Block{{0x00, 50}, {0x32, 8}, {0x3C, 22}, {0x400, 16}}},
		{name: "addresses a block read through", lackAddr: []uint16{0x4A, 0x4B, 0x4C, 0x4D},
			snapshot: []Block{{0x00, 50}, {0x32, 32}, {0x32, 14}, {0x40, 8}, {0x48, 6}, {0x48, 2}, {0x4E, 4}, {0x400, 16}},
			plan:     []Block{{0x00, 50}, {0x32, 24}, {0x4E, 4}, {0x400, 16}}},
		{name: "a value in each block", lack: []string{"current_l3", "energy_import_l3"}, most: 3 + 2*5 + 2*4, // 27 and 16 parts
			plan: []Block{{0x00, 16}, {0x12, 50}, {0x46, 12}, {0x400, 16}}},
		{name: "two neighbours", lack: []string{"power_demand", "power_demand_peak"}, most: 3 + 2*(2*4),
			plan: []Block{{0x00, 50}, {0x32, 6}, {0x3C, 22}, {0x400, 16}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			vals := typicalValues()
			f := newFixture(ModelEM340, true, vals)
			f.lack(tt.lack...)
			for _, a := range tt.lackAddr {
				delete(f.mem, a)
			}
			var log bytes.Buffer
			m := New(Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
			restoreTotals(m, vals)
			if _, err := m.Connect(ctx, f); err != nil {
				t.Fatal(err)
			}
			rev := m.Revision()
			f.requests = nil
			reading, err := m.Read(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.snapshot != nil && !slices.Equal(f.requests, tt.snapshot):
				t.Errorf("first snapshot read %v,\nwant %v", f.requests, tt.snapshot)
			case tt.snapshot == nil && len(f.requests) > tt.most:
				t.Errorf("first snapshot took %d requests (%v), want at most %d", len(f.requests), f.requests, tt.most)
			}
			want := allBut(tt.lack...)
			if got := readingKeys(reading); !slices.Equal(got, want) {
				t.Errorf("first snapshot has %v,\nwant %v", got, want)
			}
			if got := keysOf(m.Registers()); !slices.Equal(got, want) || (m.Revision() != rev) != (len(tt.lack) > 0) {
				t.Errorf("Registers() = %v (revision %d → %d),\nwant %v", got, rev, m.Revision(), want)
			}
			if !slices.Equal(m.Plan(), tt.plan) {
				t.Errorf("plan %v, want %v", m.Plan(), tt.plan)
			}
			if _, err := m.Connect(ctx, f); err != nil { // the same meter again
				t.Fatal(err)
			}
			for range 2 {
				if n, refused := f.count(func() { _, _ = m.Read(ctx, f) }); n != len(tt.plan) || refused != 0 {
					t.Errorf("later snapshot: %d requests, %d refused; want the plan's %d, none", n, refused, len(tt.plan))
				}
			}
			if n := strings.Count(log.String(), "meter lacks registers"); n != 1 {
				t.Errorf("logged %d times, want once:\n%s", n, log.String())
			}
			for _, k := range tt.lack {
				if !strings.Contains(log.String(), k) {
					t.Errorf("the log does not name %s:\n%s", k, log.String())
				}
			}
			f.mem[AddrSerialNumber] = 'X' // another meter: what it lacks is its own
			if _, err := m.Connect(ctx, f); !errors.Is(err, ErrWrongMeter) {
				t.Fatal(err)
			}
			if got := keysOf(m.Registers()); !slices.Equal(got, allBut()) {
				t.Errorf("another meter starts from the whole table: %v", got)
			}
		})
	}
}

// scaledValues are typicalValues as a meter behind transformers of ratios ct
// and vt reports them.
func scaledValues(ct, vt float64) map[string]float64 {
	vals := typicalValues()
	for _, r := range Registers() {
		switch r.Quantity {
		case Voltage:
			vals[r.Key] *= vt
		case Current:
			vals[r.Key] *= ct
		case ActivePower, ApparentPower, ReactivePower:
			vals[r.Key] *= ct * vt
		}
	}
	return vals
}

// A CT- or VT-connected meter reports values scaled by its ratios (1003h,
// 1005h): the ranges scale with them, so a legitimate 345 A is no garbled
// frame, and the largest rise of a total scales too.
func TestTransformerRatiosScaleTheRanges(t *testing.T) {
	tests := []struct {
		name    string
		model   uint16
		ct, vt  float64 // what the meter reports
		values  map[string]float64
		wantErr error
	}{
		{"EM330 behind 400/5 A transformers", 331, 80, 1, scaledValues(80, 1), nil},
		{"the same values at ratio 1 are a garbled frame", 331, 1, 1, scaledValues(80, 1), ErrGarbledSnapshot},
		{"ET330 behind 100:1 voltage transformers", 335, 1, 100, scaledValues(1, 100), nil},
		{"engineering sample: the ratio in its word order", ModelEM340Sample, 80, 1, scaledValues(80, 1), nil},
		{"both", 355, 40, 10, scaledValues(40, 10), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(tt.model, true, tt.values)
			f.setRatios(tt.ct, tt.vt, tt.model == ModelEM340Sample)
			m := New(Options{})
			id, err := m.Connect(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if id.CTRatio != tt.ct || id.VTRatio != tt.vt {
				t.Fatalf("ratios %v, %v; want %v, %v", id.CTRatio, id.VTRatio, tt.ct, tt.vt)
			}
			reading, err := m.Read(ctx, f)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			for _, key := range []string{"current_l1", "voltage_l1_n", "power_l2", "apparent_power", "reactive_power_l3"} {
				if got, ok := reading.Get(key); !ok || got != roundTo(tt.values[key], register(key).Divisor) {
					t.Errorf("%s = %v (%v), want %v", key, got, ok, tt.values[key])
				}
			}
			for _, r := range m.Registers() {
				if base := register(r.Key); r.Max != base.Max*id.scale(r.Quantity) {
					t.Errorf("%s: max %v, want %v × the ratios", r.Key, r.Max, base.Max)
				}
			}
		})
	}
}

func roundTo(v, divisor float64) float64 { return float64(int64(roundHalfAway(v*divisor))) / divisor }

// The largest rise of a total follows the meter's largest power: 2000 kWh in
// an hour is a glitch on an EM340 (150 kW) and plausible behind 400/5 A
// transformers.
func TestTransformerRatiosScaleTheLargestRise(t *testing.T) {
	for _, tt := range []struct {
		ct     float64
		accept bool
	}{{1, false}, {80, true}} {
		ctx := context.Background()
		vals := scaledValues(1, 1)
		vals["energy_import"] = 12000
		f := newFixture(331, true, vals)
		f.setRatios(tt.ct, 1, false)
		m := New(Options{})
		m.Restore(map[string]Accepted{"energy_import": {Value: 10000, At: time.Now().Add(-time.Hour)}})
		if _, err := m.Connect(ctx, f); err != nil {
			t.Fatal(err)
		}
		reading, err := m.Read(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := reading.Get("energy_import"); ok != tt.accept {
			t.Errorf("CT ratio %v: +2000 kWh in an hour published %v, want %v", tt.ct, ok, tt.accept)
		}
	}
}

package meter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func register(key string) Register {
	for _, r := range Registers() {
		if r.Key == key {
			return r
		}
	}
	panic("no register " + key)
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestValidatorRanges(t *testing.T) {
	tests := []struct {
		key   string
		value float64
		mode  uint16
		err   error
	}{
		{"voltage_l1_n", 230.1, MeasurementModeB, nil},
		{"voltage_l1_n", 0, MeasurementModeB, nil},
		{"voltage_l1_n", 3000, MeasurementModeB, ErrOutOfRange},
		{"voltage_l1_n", -1, MeasurementModeB, ErrOutOfRange},
		{"power_factor", 1.2, MeasurementModeB, ErrOutOfRange},
		{"power_factor", -0.9, MeasurementModeB, nil},
		{"power", -2500, MeasurementModeB, nil},
		{"power", -2500, MeasurementModeA, ErrNegativeInModeA},
		{"current_l2", -3, MeasurementModeA, ErrNegativeInModeA},
		{"frequency", 50.02, MeasurementModeA, nil},
		{"frequency", 150, MeasurementModeA, ErrOutOfRange},
		{"phase_sequence", 2, MeasurementModeA, ErrOutOfRange},
		{"energy_import", -0.1, MeasurementModeA, ErrOutOfRange},
	}
	for _, tt := range tests {
		v := NewValidator(3)
		err := v.Check(register(tt.key), tt.value, tt.mode, t0)
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%s=%v mode %d: err %v, want %v", tt.key, tt.value, tt.mode, err, tt.err)
		}
	}
}

// TestOnlyTheResettableCountersArePartial: 4000h resets the partial and the
// tariff meters (REGISTERS.md); every other total is a lifetime one.
func TestOnlyTheResettableCountersArePartial(t *testing.T) {
	resettable := []string{"energy_import_partial", "reactive_energy_import_partial", "energy_import_tariff_1", "energy_import_tariff_2"}
	for _, r := range Registers() {
		want := slices.Contains(resettable, r.Key)
		if r.Partial != want || (r.Partial && !r.Total) {
			t.Errorf("%s: Partial %v, Total %v", r.Key, r.Partial, r.Total)
		}
	}
}

// step is one read of a total, dt after the one before (10 s if zero).
type step struct {
	dt    time.Duration
	value float64
	err   error
}

// confirmed is how a test starts from an accepted total: two agreeing reads.
func confirmed(value float64) []step {
	return []step{{0, value, ErrUnconfirmed}, {0, value, nil}}
}

func seq(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func repeat(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func runSteps(t *testing.T, v *Validator, r Register, at time.Time, steps []step) time.Time {
	t.Helper()
	for i, s := range steps {
		if s.dt == 0 {
			s.dt = 10 * time.Second
		}
		at = at.Add(s.dt)
		err := v.Check(r, s.value, MeasurementModeB, at)
		if !errors.Is(err, s.err) || (s.err == nil && err != nil) {
			t.Fatalf("step %d (%v after %v): err %v, want %v", i, s.value, s.dt, err, s.err)
		}
	}
	return at
}

func TestValidatorEnergyTotals(t *testing.T) {
	tests := []struct {
		name  string
		key   string // energy_import if empty
		steps []step
	}{
		{"start needs two agreeing reads", "", []step{{0, 500, ErrUnconfirmed}, {0, 500.01, nil}, {0, 500.02, nil}}},
		{"start: reads that disagree start the confirmation over", "", []step{
			{0, 500, ErrUnconfirmed}, {0, 90000, ErrUnconfirmed}, {0, 500.1, ErrUnconfirmed}, {0, 500.1, nil}}},
		{"start: a lower second read does not confirm the first", "", []step{
			{0, 500, ErrUnconfirmed}, {0, 499, ErrUnconfirmed}, {0, 499, nil}}},
		{"start: zero never confirms", "", seq(repeat(5, step{0, 0, ErrUnconfirmed}), confirmed(500))},
		{"rising is accepted", "", seq(confirmed(100), []step{{0, 100, nil}, {0, 100.1, nil}, {0, 101, nil}})},
		{"one zero is rejected, the series goes on", "", seq(confirmed(12345.6), []step{{0, 0, ErrZeroTotal}, {0, 12345.7, nil}})},
		{"a falling read is rejected", "", seq(confirmed(500), []step{{0, 499.9, ErrFallingTotal}, {0, 500, nil}})},
		{"lower then back to normal reverts, never a reset", "", seq(confirmed(500),
			repeat(10, step{0, 300, ErrFallingTotal}), []step{{0, 300.1, ErrFallingTotal}, {0, 500.1, nil}})},
		{"a lifetime total is never reset, whatever agrees", "", seq(confirmed(500),
			repeat(20, step{0, 0, ErrZeroTotal}), []step{{0, 0.1, ErrFallingTotal}, {0, 0.2, ErrFallingTotal}, {0, 0.3, ErrFallingTotal}})},
		{"an impossible jump is rejected until K agreeing reads", "", seq(confirmed(500),
			[]step{{0, 90000, ErrImplausibleJump}, {0, 90000, ErrImplausibleJump}, {0, 90000.1, nil}, {0, 90000.2, nil}})},
		{"a good read between jumps starts the count over", "", seq(confirmed(500), []step{
			{0, 90000, ErrImplausibleJump}, {0, 90000, ErrImplausibleJump}, {0, 500.1, nil},
			{0, 90000, ErrImplausibleJump}, {0, 90000, ErrImplausibleJump}, {0, 90000, nil}})},
		{"high reads that disagree with each other never confirm", "", seq(confirmed(500), []step{
			{0, 90000, ErrImplausibleJump}, {0, 80000, ErrImplausibleJump}, {0, 95000, ErrImplausibleJump},
			{0, 70000, ErrImplausibleJump}, {0, 60000, ErrImplausibleJump}, {0, 500.1, nil}})},
		// 10 min at 150 kW is 25 kWh; the bound allows twice that and 1 kWh.
		{"a jump after a 10-minute outage within physics", "", seq(confirmed(500), []step{{10 * time.Minute, 540, nil}})},
		{"a jump after a 10-minute outage beyond physics", "", seq(confirmed(500), []step{{10 * time.Minute, 600, ErrImplausibleJump}})},
		{"elapsed time counts from the last accepted value, not the last read", "", seq(confirmed(500),
			[]step{{30 * time.Minute, 0, ErrZeroTotal}, {0, 0, ErrZeroTotal}, {0, 600, nil}})},
		{"a confirmed partial reset is accepted", "energy_import_partial", seq(confirmed(500),
			[]step{{0, 0, ErrZeroTotal}, {0, 0, ErrZeroTotal}, {0, 0, nil}, {0, 0.1, nil}})},
		{"a partial reset may rise while it is confirmed", "energy_import_partial", seq(confirmed(500),
			[]step{{0, 0, ErrZeroTotal}, {0, 0.01, ErrFallingTotal}, {0, 0.02, nil}})},
		{"a single partial zero is not a reset", "energy_import_partial", seq(confirmed(500),
			[]step{{0, 0, ErrZeroTotal}, {0, 500.1, nil}, {0, 0, ErrZeroTotal}, {0, 500.1, nil}})},
		{"a partial zero run broken by a good read starts over", "reactive_energy_import_partial", seq(confirmed(500),
			[]step{{0, 0, ErrZeroTotal}, {0, 0, ErrZeroTotal}, {0, 500.1, nil}, {0, 0, ErrZeroTotal}, {0, 0, ErrZeroTotal}, {0, 0, nil}})},
		{"a partial drop to far above zero is never a reset", "energy_import_partial", seq(confirmed(500),
			repeat(10, step{0, 300, ErrFallingTotal}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key
			if key == "" {
				key = "energy_import"
			}
			runSteps(t, NewValidator(3), register(key), t0, tt.steps)
		})
	}
}

func TestGlitchRunsAreNeverAccepted(t *testing.T) {
	const truth = 12345.6
	glitches := []struct {
		name  string
		value float64
		err   error
	}{
		{"zero", 0, ErrZeroTotal},
		{"low", 1234.5, ErrFallingTotal},
		{"slightly low", truth - 0.1, ErrFallingTotal},
	}
	for _, g := range glitches {
		for _, n := range []int{1, 3, 10, 100} {
			t.Run(g.name, func(t *testing.T) {
				v := NewValidator(3)
				// The true total after the run is accepted at once, however long the run was.
				steps := seq(confirmed(truth), repeat(n, step{0, g.value, g.err}), []step{{0, truth + 0.1, nil}})
				runSteps(t, v, register("energy_import"), t0, steps)
				if got := v.Accepted()["energy_import"].Value; got != truth+0.1 {
					t.Fatalf("accepted %v after %d %s reads, want %v", got, n, g.name, truth+0.1)
				}
			})
		}
	}
}

func TestRestoredHistory(t *testing.T) {
	restored := Accepted{Value: 12345.6, At: t0}
	tests := []struct {
		name  string
		steps []step // the first comes an hour after the restored value
	}{
		{"a rise within physics is accepted at once", []step{{time.Hour, 12350, nil}}},
		{"the same value is accepted at once", []step{{time.Hour, 12345.6, nil}}},
		{"never below it", []step{{time.Hour, 12000, ErrFallingTotal}, {0, 12000, ErrFallingTotal}, {0, 12000, ErrFallingTotal}}},
		{"never zero", []step{{time.Hour, 0, ErrZeroTotal}, {0, 0, ErrZeroTotal}, {0, 0, ErrZeroTotal}}},
		// An hour at 150 kW is 150 kWh, the bound 301: a month's outage is not an hour's.
		{"a rise beyond physics needs K agreeing reads", []step{
			{time.Hour, 13345.6, ErrImplausibleJump}, {0, 13345.6, ErrImplausibleJump}, {0, 13345.7, nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewValidator(3)
			v.Restore(map[string]Accepted{"energy_import": restored})
			if got := v.Accepted(); len(got) != 1 || got["energy_import"] != restored {
				t.Fatalf("Accepted after Restore = %v", got)
			}
			at := runSteps(t, v, register("energy_import"), t0, tt.steps)
			last := tt.steps[len(tt.steps)-1]
			want := restored
			if last.err == nil {
				want = Accepted{Value: last.value, At: at}
			}
			if got := v.Accepted()["energy_import"]; got != want {
				t.Fatalf("Accepted = %v, want %v", got, want)
			}
		})
	}
}

func TestValidatorForget(t *testing.T) {
	v := NewValidator(3)
	r := register("energy_import")
	runSteps(t, v, r, t0, confirmed(500))
	v.Forget()
	if len(v.Accepted()) != 0 {
		t.Fatalf("Accepted after Forget = %v", v.Accepted())
	}
	// A new meter's lower total starts a history of its own.
	runSteps(t, v, r, t0.Add(time.Hour), confirmed(20))
}

// connected returns a meter connected to a fixture with typical values whose
// totals are confirmed, and the log it writes (every level).
func connected(t *testing.T, fine bool) (*Meter, *fixture, *bytes.Buffer) {
	t.Helper()
	f := newFixture(ModelEM340, fine, typicalValues())
	var log bytes.Buffer
	m := New(Options{Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	if _, err := m.Connect(ctx, f); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := m.Read(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.Accepted()) == 0 || m.Rejected() != 0 {
		t.Fatalf("after two reads: accepted %v, rejected %d", m.Accepted(), m.Rejected())
	}
	return m, f, &log
}

// setTotal puts v in a total's registers, the 3-decimal pair included.
func (f *fixture) setTotal(r Register, v float64, fine bool) {
	f.set(r, v, false)
	if fine && r.FineAddr != 0 {
		f.setFine(r, v, false)
	}
}

func TestPowerCycleNeverFallsInHomeAssistant(t *testing.T) {
	m, f, _ := connected(t, true)
	ctx := context.Background()
	imp := register("energy_import")
	var published []float64 // what HA records for energy_import
	read := func() {
		t.Helper()
		reading, err := m.Read(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := reading.Get(imp.Key); ok {
			published = append(published, v)
		}
	}
	read() // the true total
	// Power cut: the line is silent (no reads), then the meter wakes with its totals at 0.
	for _, r := range Registers() {
		if r.Total {
			f.setTotal(r, 0, true)
		}
	}
	for range 3 {
		read()
	}
	f.setTotal(imp, 12345.679, true) // the true total is back
	read()
	want := []float64{12345.678, 12345.679}
	if len(published) != len(want) || published[0] != want[0] || published[1] != want[1] {
		t.Fatalf("HA recorded %v, want %v", published, want)
	}
}

func TestGarbledSnapshotIsDroppedWhole(t *testing.T) {
	sentinel := func(f *fixture, key string) {
		r := register(key)
		f.mem[r.Addr], f.mem[r.Addr+1] = 0xFFFF, 0x7FFF
	}
	outOfRange := func(f *fixture, key string) {
		r := register(key)
		f.set(r, r.Max*10, false)
	}
	badThousandths := func(f *fixture, key string) {
		r := register(key)
		f.mem[r.FineAddr+2], f.mem[r.FineAddr+3] = 5000, 0
	}
	type fault struct {
		apply func(*fixture, string)
		key   string
	}
	tests := []struct {
		name    string
		faults  []fault
		garbled bool
		missing []string
	}{
		{"one sentinel drops just that value", []fault{{sentinel, "voltage_l2_n"}}, false, []string{"voltage_l2_n"}},
		{"one value out of range drops just that value", []fault{{outOfRange, "power_l1"}}, false, []string{"power_l1"}},
		{"sentinels on several values are the meter's own", []fault{{sentinel, "current_l1"}, {sentinel, "power_l1"}, {sentinel, "apparent_power_l1"}},
			false, []string{"current_l1", "power_l1", "apparent_power_l1"}},
		{"a sentinel and a value out of range", []fault{{sentinel, "voltage_l1_n"}, {outOfRange, "power_l1"}}, false, []string{"voltage_l1_n", "power_l1"}},
		{"two values out of range", []fault{{outOfRange, "voltage_l1_n"}, {outOfRange, "power_l1"}}, true, nil},
		{"two 3-decimal totals with bad thousandths", []fault{{badThousandths, "energy_import"}, {badThousandths, "energy_export"}}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f, _ := connected(t, true)
			before := m.Accepted()
			imp := register("energy_import")
			f.setTotal(imp, 12345.9, true) // a plausible rise the snapshot carries
			for _, x := range tt.faults {
				x.apply(f, x.key)
			}
			reading, err := m.Read(context.Background(), f)
			if !tt.garbled {
				if err != nil {
					t.Fatal(err)
				}
				for _, key := range tt.missing {
					if v, ok := reading.Get(key); ok {
						t.Errorf("%s = %v published", key, v)
					}
				}
				if len(reading.Values) != len(Registers())-len(tt.missing) || m.Rejected() != uint64(len(tt.missing)) {
					t.Errorf("%d values, %d rejected", len(reading.Values), m.Rejected())
				}
				return
			}
			if !errors.Is(err, ErrGarbledSnapshot) || len(reading.Values) != 0 || m.Rejected() != 1 {
				t.Fatalf("Read = %d values, %v, %d rejected; want ErrGarbledSnapshot", len(reading.Values), err, m.Rejected())
			}
			if after := m.Accepted(); after[imp.Key] != before[imp.Key] {
				t.Errorf("the garbled snapshot moved energy_import from %v to %v", before[imp.Key], after[imp.Key])
			}
		})
	}
}

func TestGarbledSnapshotDoesNotConfirmATotal(t *testing.T) {
	f := newFixture(ModelEM340, false, typicalValues())
	m := New(Options{})
	ctx := context.Background()
	if _, err := m.Connect(ctx, f); err != nil {
		t.Fatal(err)
	}
	v, p := register("voltage_l1_n"), register("power_l1")
	f.set(v, v.Max*10, false)
	f.set(p, p.Max*10, false)
	if _, err := m.Read(ctx, f); !errors.Is(err, ErrGarbledSnapshot) {
		t.Fatalf("err %v, want ErrGarbledSnapshot", err)
	}
	f.set(v, 230, false)
	f.set(p, 1000, false)
	for i, want := range []bool{false, true} { // the garbled one was not the first read
		reading, err := m.Read(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := reading.Get("energy_import"); ok != want {
			t.Fatalf("good read %d: energy_import present %v, want %v", i+1, ok, want)
		}
	}
}

func TestRejectionsAreLoggedOncePerChange(t *testing.T) {
	m, f, log := connected(t, false)
	ctx := context.Background()
	imp := register("energy_import")
	readWith := func(v float64, n int) {
		f.setTotal(imp, v, false)
		for range n {
			if _, err := m.Read(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	log.Reset()
	readWith(0, 5)       // one warning, then debug
	readWith(12000, 3)   // the reason changed: one warning
	readWith(12345.7, 1) // accepted: the run ends
	readWith(0, 2)       // a new run: one warning
	warn, debug := 0, 0
	for line := range strings.Lines(log.String()) {
		if !strings.Contains(line, "key=energy_import ") {
			continue
		}
		switch {
		case strings.Contains(line, "level=WARN"):
			warn++
		case strings.Contains(line, "level=DEBUG"):
			debug++
		}
	}
	if warn != 3 || debug != 7 || m.Rejected() != 10 {
		t.Errorf("%d warnings, %d debug lines, %d rejected; want 3, 7, 10:\n%s", warn, debug, m.Rejected(), log)
	}
}

// TestRandomGlitchesNeverPass feeds random true totals, rising at random
// powers with random outages, interleaved with runs of glitch reads. A glitch
// here is zero, or at least 10 MWh from the truth and not within 10 MWh above
// the glitch before it: a wrong value the physics would allow, or K that agree
// with each other, are indistinguishable from the truth by design.
func TestRandomGlitchesNeverPass(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	const far = 10_000.0 // kWh
	r := register("energy_import")
	round := func(x float64) float64 { return math.Round(x*1000) / 1000 }
	for run := range 300 {
		v := NewValidator(2 + rng.IntN(4))
		at := t0
		truth := round(1e5 + rng.Float64()*1e7)
		var trueSeq, accepted []float64
		prev := math.Inf(-1) // the glitch before, since the last true read
		check := func(value float64, glitch bool) {
			if err := v.Check(r, value, MeasurementModeB, at); err == nil {
				if glitch {
					t.Fatalf("seed %d run %d: glitch %v accepted (truth %v)", seed, run, value, truth)
				}
				accepted = append(accepted, value)
			}
		}
		for range 200 {
			// The truth moves on: up to 100 kW for a poll interval, sometimes an outage of up to 2 h.
			dt := time.Duration(1+rng.IntN(10)) * time.Second
			if rng.IntN(20) == 0 {
				dt = time.Duration(rng.Int64N(int64(2 * time.Hour)))
			}
			at = at.Add(dt)
			truth = round(truth + rng.Float64()*100*dt.Hours())
			if rng.IntN(3) > 0 {
				trueSeq = append(trueSeq, truth)
				check(truth, false)
				prev = math.Inf(-1)
				continue
			}
			for range 1 + rng.IntN(12) {
				agrees := func(g float64) bool { return g >= prev && g < prev+far }
				var g float64
				switch rng.IntN(4) {
				case 0:
					g = 0
				case 1: // low
					for g = round(rng.Float64() * (truth - far)); agrees(g); {
						g = round(rng.Float64() * (truth - far))
					}
				case 2: // high, below the glitch before when it would agree with it
					if g = round(truth + far + 1e6 - float64(rng.IntN(1000))); agrees(g) {
						g = round(prev - 1)
					}
				default:
					for g = round(rng.Float64() * maxEnergy); math.Abs(g-truth) < far || agrees(g); {
						g = round(rng.Float64() * maxEnergy)
					}
				}
				if g != 0 {
					prev = g
				}
				check(g, true)
				at = at.Add(time.Duration(1+rng.IntN(10)) * time.Second)
			}
		}
		for range 2 { // the truth, read twice after whatever came before, is accepted
			at = at.Add(10 * time.Second)
			trueSeq = append(trueSeq, truth)
			check(truth, false)
		}
		if len(accepted) == 0 || accepted[len(accepted)-1] != truth {
			t.Fatalf("seed %d run %d: the true total %v was not accepted at the end", seed, run, truth)
		}
		// Every accepted value is a true one, in order, never falling.
		i := 0
		for j, a := range accepted {
			if j > 0 && a < accepted[j-1] {
				t.Fatalf("seed %d run %d: accepted %v after %v", seed, run, a, accepted[j-1])
			}
			for i < len(trueSeq) && trueSeq[i] != a {
				i++
			}
			if i == len(trueSeq) {
				t.Fatalf("seed %d run %d: accepted %v is not in order among the true values", seed, run, a)
			}
		}
	}
}

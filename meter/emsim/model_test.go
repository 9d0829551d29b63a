package emsim

import (
	"math"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

// sample is one decoded snapshot with the 3-decimal totals.
type sample map[string]float64

func readSample(t *testing.T, c *modbus.ModbusClient) sample {
	t.Helper()
	img := image(t, c)
	fine := mustRead(t, c, meter.AddrFineEnergy, meter.FineEnergyWords)
	out := sample{}
	for _, r := range meter.Registers() {
		out[r.Key] = decodeAt(img, r, false)
		if r.FineAddr != 0 {
			off := r.FineAddr - meter.AddrFineEnergy
			out[r.Key+"/fine"] = decodeFine(fine[off:off+4], false)
		}
	}
	return out
}

// samples reads snapshots for a while from a simulator whose time runs fast
// enough to cover the solar export cycle (20 simulated minutes, 1 s here) more than once.
func samples(t *testing.T, mode uint16, n int) []sample {
	t.Helper()
	_, path := startSim(t, Options{MeasurementMode: mode, TimeScale: 1200, FineEnergy: true})
	c := dial(t, path, testTimeout)
	var out []sample
	for range n {
		out = append(out, readSample(t, c))
		time.Sleep(30 * time.Millisecond)
	}
	return out
}

func TestMeasurementModes(t *testing.T) {
	t.Run("A", func(t *testing.T) {
		t.Parallel()
		ss := samples(t, meter.MeasurementModeA, 30)
		checkMonotonic(t, ss)
		for i, s := range ss {
			for _, r := range meter.Registers() {
				switch r.Quantity {
				case meter.ActivePower, meter.ReactivePower, meter.Current, meter.PowerFactor:
					if s[r.Key] < 0 {
						t.Fatalf("sample %d: %s = %v in mode A", i, r.Key, s[r.Key])
					}
				}
			}
			if s["energy_export"] != 0 || s["energy_export/fine"] != 0 || s["reactive_energy_export/fine"] != 0 {
				t.Fatalf("sample %d: export energy %v in mode A", i, s["energy_export"])
			}
		}
		if ss[len(ss)-1]["energy_import/fine"] <= ss[0]["energy_import/fine"] {
			t.Fatal("import energy did not grow")
		}
	})
	t.Run("B", func(t *testing.T) {
		t.Parallel()
		ss := samples(t, meter.MeasurementModeB, 30)
		checkMonotonic(t, ss)
		negative := 0
		for i, s := range ss {
			if s["power"] >= 0 {
				continue
			}
			negative++
			if s["power_factor"] >= 0 {
				t.Fatalf("sample %d: PF %v with power %v", i, s["power_factor"], s["power"])
			}
			for p := 1; p <= 3; p++ {
				pw, cur := s[keyPhasePower(p-1)], s[keyCurrent(p-1)]
				if pw < -1 && cur >= 0 {
					t.Fatalf("sample %d: L%d power %v but current %v", i, p, pw, cur)
				}
			}
		}
		if negative == 0 || negative == len(ss) {
			t.Fatalf("%d of %d samples with negative power; want some", negative, len(ss))
		}
		first, last := ss[0], ss[len(ss)-1]
		if last["energy_export/fine"] <= first["energy_export/fine"] || last["energy_import/fine"] <= first["energy_import/fine"] {
			t.Fatalf("import %v→%v, export %v→%v: both should grow", first["energy_import/fine"], last["energy_import/fine"],
				first["energy_export/fine"], last["energy_export/fine"])
		}
	})
}

// Export grows exactly while power is negative; import holds still meanwhile.
func TestExportWhileNegative(t *testing.T) {
	s, path := startSim(t, Options{MeasurementMode: meter.MeasurementModeB, TimeScale: 3600, FineEnergy: true})
	c := dial(t, path, testTimeout)
	for key, v := range map[string]float64{"power": -2000, "reactive_power": -300} {
		if err := s.Set(key, v); err != nil {
			t.Fatal(err)
		}
	}
	before := readSample(t, c)
	time.Sleep(300 * time.Millisecond) // ≈ 5 simulated minutes: ≈ 0.17 kWh exported
	after := readSample(t, c)
	if got := after["energy_export/fine"] - before["energy_export/fine"]; got < 0.05 {
		t.Fatalf("export grew by %v kWh", got)
	}
	if after["energy_import/fine"] != before["energy_import/fine"] || after["energy_import_partial"] != before["energy_import_partial"] {
		t.Fatalf("import moved while exporting: %v → %v", before["energy_import/fine"], after["energy_import/fine"])
	}
	if after["reactive_energy_export/fine"] <= before["reactive_energy_export/fine"] {
		t.Fatal("reactive export did not grow with negative reactive power")
	}
	// Held totals stop; released they count on from the held value.
	if err := s.Set("energy_export", 5000); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if v := s.FineValue("energy_export"); v != 5000 {
		t.Fatalf("held export %v", v)
	}
	s.Release("energy_export")
	time.Sleep(150 * time.Millisecond)
	if v := s.FineValue("energy_export"); v <= 5000 {
		t.Fatalf("released export %v did not count on", v)
	}
}

func TestEnergyMonotonic(t *testing.T) {
	_, path := startSim(t, Options{TimeScale: 3600, FineEnergy: true, MeasurementMode: meter.MeasurementModeB})
	c := dial(t, path, testTimeout)
	var ss []sample
	for range 15 {
		ss = append(ss, readSample(t, c))
		time.Sleep(30 * time.Millisecond)
	}
	checkMonotonic(t, ss)
	first, last := ss[0], ss[len(ss)-1]
	for _, key := range []string{"energy_import", "reactive_energy_import", "energy_import_partial", "energy_import_l1", "energy_import_tariff_1"} {
		if last[key] <= first[key] {
			t.Errorf("%s: %v → %v, want growth", key, first[key], last[key])
		}
	}
	if last["energy_import_tariff_2"] != first["energy_import_tariff_2"] {
		t.Error("tariff 2 counted while tariff 1 is active")
	}
	if last["voltage_l1_n"] == first["voltage_l1_n"] && last["power"] == first["power"] {
		t.Error("values do not move")
	}
}

func checkMonotonic(t *testing.T, ss []sample) {
	t.Helper()
	for _, r := range meter.Registers() {
		if !r.Total {
			continue
		}
		for _, key := range []string{r.Key, r.Key + "/fine"} {
			for i := 1; i < len(ss); i++ {
				if ss[i][key] < ss[i-1][key] {
					t.Fatalf("%s fell from %v to %v", key, ss[i-1][key], ss[i][key])
				}
			}
		}
		if r.FineAddr != 0 { // the 0.1 register truncates; the 3-decimal pair is read after it
			for i, s := range ss {
				if s[r.Key] > s[r.Key+"/fine"] || (s[r.Key] == 0) != (s[r.Key+"/fine"] == 0) {
					t.Fatalf("sample %d: %s = %v but 3-decimal %v", i, r.Key, s[r.Key], s[r.Key+"/fine"])
				}
			}
		}
	}
}

// The values agree with each other the way a real network's do, within the
// registers' resolution.
func TestValuesConsistent(t *testing.T) {
	for _, mode := range []uint16{meter.MeasurementModeA, meter.MeasurementModeB} {
		_, path := startSim(t, Options{MeasurementMode: mode, TimeScale: 600})
		c := dial(t, path, testTimeout)
		for i := range 10 {
			img := image(t, c)
			v := map[string]float64{}
			for _, r := range meter.Registers() {
				v[r.Key] = decodeAt(img, r, false)
			}
			near := func(what string, got, want, tol float64) {
				t.Helper()
				if math.Abs(got-want) > tol {
					t.Fatalf("mode %d sample %d: %s = %v, want %v ± %v", mode, i, what, got, want, tol)
				}
			}
			var sumP, sumQ, sumS float64
			for p := range 3 {
				vp, pw, q, s := v[keyPhaseVoltage(p)], v[keyPhasePower(p)], v[keyPhaseReactive(p)], v[keyPhaseApparent(p)]
				near("V "+keyPhaseVoltage(p), vp, 230, 10)
				near(keyPhaseApparent(p), s, math.Hypot(pw, q), 0.2)
				near(keyCurrent(p), math.Abs(v[keyCurrent(p)]), s/vp, 0.002)
				if s > 50 {
					near(keyPhasePF(p), v[keyPhasePF(p)], pw/s, 0.002)
					if pf := math.Abs(v[keyPhasePF(p)]); pf < 0.9 || pf > 0.99 {
						t.Fatalf("%s = %v", keyPhasePF(p), pf)
					}
				}
				a, b := vp, v[keyPhaseVoltage((p+1)%3)]
				near(keyLineVoltage(p), v[keyLineVoltage(p)], math.Sqrt(a*a+b*b+a*b), 0.2)
				sumP, sumQ, sumS = sumP+pw, sumQ+q, sumS+s
			}
			near("power", v["power"], sumP, 0.3)
			near("reactive_power", v["reactive_power"], sumQ, 0.3)
			near("apparent_power", v["apparent_power"], sumS, 0.3)
			near("voltage_ll", v["voltage_ll"], (v["voltage_l1_l2"]+v["voltage_l2_l3"]+v["voltage_l3_l1"])/3, 0.2)
			near("frequency", v["frequency"], 50, 0.2)
			time.Sleep(30 * time.Millisecond)
		}
	}
}

package meter

import (
	"errors"
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
		err := v.Check(register(tt.key), tt.value, tt.mode, time.Now())
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%s=%v mode %d: err %v, want %v", tt.key, tt.value, tt.mode, err, tt.err)
		}
	}
}

func TestValidatorEnergyTotals(t *testing.T) {
	type step struct {
		value float64
		err   error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"rising is accepted", []step{{100, nil}, {100, nil}, {100.1, nil}, {101, nil}}},
		{"one zero glitch is rejected, the series goes on", []step{{12345.6, nil}, {0, ErrZeroTotal}, {12345.7, nil}}},
		{"a falling read is rejected", []step{{500, nil}, {499.9, ErrFallingTotal}, {500, nil}}},
		{"a reset is accepted once it persists", []step{{500, nil}, {0, ErrZeroTotal}, {0, ErrZeroTotal}, {0.1, nil}, {0.2, nil}}},
		{"a lower value that keeps falling never becomes a reset", []step{{500, nil}, {300, ErrFallingTotal}, {200, ErrFallingTotal}, {100, ErrFallingTotal}, {100, ErrFallingTotal}, {100.1, nil}}},
		{"glitches between good reads never accumulate", []step{{500, nil}, {0, ErrZeroTotal}, {500.1, nil}, {0, ErrZeroTotal}, {500.2, nil}, {0, ErrZeroTotal}}},
		{"an impossible jump is rejected", []step{{500, nil}, {90000, ErrImplausibleJump}, {500.1, nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewValidator(3)
			at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i, s := range tt.steps {
				at = at.Add(time.Second)
				err := v.Check(register("energy_import"), s.value, MeasurementModeB, at)
				if !errors.Is(err, s.err) || (s.err == nil && err != nil) {
					t.Fatalf("step %d (%v): err %v, want %v", i, s.value, err, s.err)
				}
			}
		})
	}
}

func TestValidatorAllowsGrowthAfterALongOutage(t *testing.T) {
	v := NewValidator(3)
	at := time.Now()
	r := register("energy_import")
	if err := v.Check(r, 500, MeasurementModeB, at); err != nil {
		t.Fatal(err)
	}
	// 24 h at 20 kW is 480 kWh: plausible, though far more than one poll's worth.
	if err := v.Check(r, 980, MeasurementModeB, at.Add(24*time.Hour)); err != nil {
		t.Fatalf("growth over a day rejected: %v", err)
	}
}

func TestValidatorForget(t *testing.T) {
	v := NewValidator(3)
	r := register("energy_import")
	_ = v.Check(r, 500, MeasurementModeB, time.Now())
	v.Forget()
	if err := v.Check(r, 20, MeasurementModeB, time.Now()); err != nil {
		t.Fatalf("after Forget a new meter's total was rejected: %v", err)
	}
}

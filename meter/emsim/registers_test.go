package emsim

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

// Every value of the table, read through the real serial stack and decoded
// independently, equals what Value says is served; in both word orders and
// both measurement modes, with functions 03 and 04 alike.
func TestDecodedValuesMatchValue(t *testing.T) {
	tests := []struct {
		name  string
		model uint16
		mode  uint16
	}{
		{"EM340 mode A", meter.ModelEM340, meter.MeasurementModeA},
		{"EM340 mode B", meter.ModelEM340, meter.MeasurementModeB},
		{"engineering sample 340", meter.ModelEM340Sample, meter.MeasurementModeB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := startSim(t, Options{ModelCode: tt.model, MeasurementMode: tt.mode, FineEnergy: true, Static: true})
			if tt.mode == meter.MeasurementModeB { // signed values must survive the trip
				for key, v := range map[string]float64{"power_l2": -1234.5, "current_l2": -5.678, "power_factor_l2": -0.934} {
					if err := s.Set(key, v); err != nil {
						t.Fatal(err)
					}
				}
			}
			c := dial(t, path, testTimeout)
			msw := tt.model == meter.ModelEM340Sample
			img := image(t, c)
			for _, r := range meter.Registers() {
				if got, want := decodeAt(img, r, msw), s.Value(r.Key); got != want {
					t.Errorf("%s at %04Xh: decoded %v, Value %v", r.Key, r.Addr, got, want)
				}
			}
			fine := mustRead(t, c, meter.AddrFineEnergy, meter.FineEnergyWords)
			for _, r := range meter.Registers() {
				if r.FineAddr == 0 {
					continue
				}
				off := r.FineAddr - meter.AddrFineEnergy
				if got, want := decodeFine(fine[off:off+4], msw), s.FineValue(r.Key); got != want {
					t.Errorf("%s at %04Xh: decoded %v, FineValue %v", r.Key, r.FineAddr, got, want)
				}
			}
			input, err := c.ReadRegisters(0x0000, 50, modbus.INPUT_REGISTER)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range input {
				if img[uint16(i)] != w {
					t.Fatalf("function 04 differs from 03 at %04Xh: %04X vs %04X", i, w, img[uint16(i)])
				}
			}
		})
	}
}

func TestSetServesExactRegisters(t *testing.T) {
	s, path := startSim(t, Options{MeasurementMode: meter.MeasurementModeB, FineEnergy: true, Static: true})
	c := dial(t, path, testTimeout)
	for key, v := range map[string]float64{"voltage_l1_n": 231.4, "power": -1234.5, "energy_import": 99999.999, "power_factor": 0.5} {
		if err := s.Set(key, v); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustRead(t, c, 0x0000, 2); !slices.Equal(got, []uint16{2314, 0}) {
		t.Errorf("V L1-N words %04X", got)
	}
	if got := mustRead(t, c, register(t, "power").Addr, 2); !slices.Equal(got, []uint16{0xCFC7, 0xFFFF}) { // -12345
		t.Errorf("power words %04X", got)
	}
	if got := mustRead(t, c, register(t, "power_factor").Addr, 1); got[0] != 500 {
		t.Errorf("PF word %d", got[0])
	}
	if got := mustRead(t, c, register(t, "energy_import").Addr, 2); !slices.Equal(got, []uint16{0x423F, 0x000F}) { // 999999
		t.Errorf("energy 0.1 kWh words %04X", got)
	}
	if got := mustRead(t, c, 0x0400, 4); !slices.Equal(got, []uint16{99999 & 0xFFFF, 1, 999, 0}) {
		t.Errorf("fine energy words %04X", got)
	}
	if err := s.Set("no_such_key", 1); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Set unknown key: %v", err)
	}
	if !math.IsNaN(s.Value("no_such_key")) || !math.IsNaN(s.FineValue("voltage_l1_n")) {
		t.Error("Value of an unknown key or FineValue without a pair should be NaN")
	}
}

func TestModelCodeAndWordOrder(t *testing.T) {
	for _, model := range []uint16{meter.ModelEM340, meter.ModelEM340Sample} {
		t.Run(strings.ReplaceAll(meter.Identity{ModelCode: model}.Model(), " ", "_"), func(t *testing.T) {
			s, path := startSim(t, Options{ModelCode: model, Static: true, FineEnergy: true})
			c := dial(t, path, testTimeout)
			if got := mustRead(t, c, meter.AddrModelCode, 1); got[0] != model {
				t.Fatalf("000Bh single read = %d, want %d", got[0], model)
			}
			raw := uint32(math.Round(s.Value("voltage_l3_l1") * 10))
			lo, hi := uint16(raw), uint16(raw>>16)
			want := []uint16{lo, hi} // 000Ah low, 000Bh high
			if model == meter.ModelEM340Sample {
				want = []uint16{hi, lo}
			}
			if got := mustRead(t, c, 0x000A, 2); !slices.Equal(got, want) {
				t.Fatalf("V L3-L1 block %04X, want %04X", got, want)
			}
			if got := mustRead(t, c, 0x000B, 2); got[0] != want[1] {
				t.Fatalf("000Bh inside a block = %04X, want the value's word %04X", got[0], want[1])
			}
			ct := mustRead(t, c, 0x1003, 2) // UINT32 setting follows the word order too
			if decodeRaw(meter.UInt32, ct, model == meter.ModelEM340Sample) != 10 {
				t.Fatalf("CT ratio words %04X", ct)
			}
		})
	}
}

func TestIdentityRegisters(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"defaults: older meter", Options{}},
		{"newer meter", Options{Serial: "190042Y", FirmwareVersion: 1, FirmwareRevision: 3, ProductionYear: 2021,
			MeasurementMode: 1, MeasuringSystem: 2, WrongConnection: 0x12, MaxWords: 20, FineEnergy: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path := startSim(t, tt.opts)
			c := dial(t, path, testTimeout)
			serial := ""
			for _, w := range mustRead(t, c, meter.AddrSerialNumber, meter.SerialNumberWords) {
				if w>>8 != 0 {
					t.Errorf("serial word %04X uses the high byte", w)
				}
				serial += string(rune(w))
			}
			wantSerial := cmp(tt.opts.Serial, "235411W")
			if serial != wantSerial {
				t.Errorf("serial %q, want %q", serial, wantSerial)
			}
			if got := mustRead(t, c, meter.AddrFirmwareVersion, 2); !slices.Equal(got, []uint16{tt.opts.FirmwareVersion, tt.opts.FirmwareRevision}) {
				t.Errorf("firmware %v", got)
			}
			year, err := c.ReadRegisters(meter.AddrProductionYear, 1, modbus.HOLDING_REGISTER)
			switch {
			case tt.opts.ProductionYear == 0 && !errors.Is(err, modbus.ErrIllegalDataAddress):
				t.Errorf("5010h on an older meter: %v %v, want exception 02", year, err)
			case tt.opts.ProductionYear != 0 && (err != nil || year[0] != tt.opts.ProductionYear):
				t.Errorf("5010h: %v %v", year, err)
			}
			if got := mustRead(t, c, meter.AddrMeasurementMode, 3); !slices.Equal(got, []uint16{tt.opts.MeasurementMode, 0, tt.opts.WrongConnection}) {
				t.Errorf("1103h–1105h %v", got)
			}
			if got := mustRead(t, c, meter.AddrMeasuringSystem, 1); got[0] != tt.opts.MeasuringSystem {
				t.Errorf("1002h %v", got)
			}
			maxWords := cmp(tt.opts.MaxWords, meter.MaxReadWords)
			if got := mustRead(t, c, meter.AddrMaxWords, 1); got[0] != maxWords {
				t.Errorf("2004h %v, want %d", got, maxWords)
			}
			if _, err := c.ReadRegisters(0, maxWords, modbus.HOLDING_REGISTER); err != nil {
				t.Errorf("read of %d words: %v", maxWords, err)
			}
			if _, err := c.ReadRegisters(0, maxWords+1, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrIllegalDataValue) {
				t.Errorf("read of %d words: %v, want exception 03", maxWords+1, err)
			}
			_, err = c.ReadRegisters(meter.AddrFineEnergy, meter.FineEnergyWords, modbus.HOLDING_REGISTER)
			if tt.opts.FineEnergy != (err == nil) || (err != nil && !errors.Is(err, modbus.ErrIllegalDataAddress)) {
				t.Errorf("table 2.5 with FineEnergy=%v: %v", tt.opts.FineEnergy, err)
			}
		})
	}
}

func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Which blocks the meter answers and which get exception 02.
func TestReadableAreas(t *testing.T) {
	_, path := startSim(t, Options{Static: true})
	c := dial(t, path, testTimeout)
	tests := []struct {
		addr, qty uint16
		want      error
	}{
		{0x0000, 50, nil},
		{0x0052, 8, nil},                           // not available: reads 0
		{0x0090, 10, nil},                          // up to 0099h
		{0x0098, 4, modbus.ErrIllegalDataAddress},  // runs past 0099h
		{0x00F6, 50, nil},                          // table 2.6
		{0x01B0, 6, nil},                           // up to 01B5h
		{0x01B0, 7, modbus.ErrIllegalDataAddress},  // runs past 01B5h
		{0x0200, 1, modbus.ErrIllegalDataAddress},  // nothing there
		{0x0301, 2, modbus.ErrIllegalDataAddress},  // 0301h undefined
		{0x0400, 16, modbus.ErrIllegalDataAddress}, // no table 2.5 on this meter
		{0x1000, 1, nil},
		{0x1000, 3, modbus.ErrIllegalDataAddress}, // 1001h undefined
		{0x1002, 5, nil},                          // measuring system, CT and VT ratios
		{0x1010, 2, nil},
		{0x1100, 6, nil},
		{0x1100, 7, modbus.ErrIllegalDataAddress},
		{0x1200, 2, nil},
		{0x2000, 5, nil},
		{0x4000, 1, modbus.ErrIllegalDataAddress}, // commands are write-only
		{0x5000, 7, nil},
		{0x5000, 8, modbus.ErrIllegalDataAddress},
		{0xFFFF, 1, modbus.ErrIllegalDataAddress},
	}
	for _, tt := range tests {
		w, err := c.ReadRegisters(tt.addr, tt.qty, modbus.HOLDING_REGISTER)
		if !errors.Is(err, tt.want) || (tt.want == nil && len(w) != int(tt.qty)) {
			t.Errorf("read %04Xh+%d: %d words, %v; want %v", tt.addr, tt.qty, len(w), err, tt.want)
		}
		if tt.addr == 0x0052 || tt.addr == 0x00F6 {
			for i, x := range w {
				if x != 0 {
					t.Errorf("%04Xh reads %04X, want 0", tt.addr+uint16(i), x)
				}
			}
		}
	}
}

// Every register of the table is simulated: none reads 0 by omission, and the
// simulator logs no "not simulated" warning.
func TestEveryRegisterSimulated(t *testing.T) {
	var logged bytes.Buffer
	s := New(Options{MeasurementMode: meter.MeasurementModeB, Static: true,
		Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	for _, r := range meter.Registers() {
		v := s.Value(r.Key)
		if math.IsNaN(v) || (v == 0 && r.Quantity != meter.PhaseSequence) {
			t.Errorf("%s reads %v", r.Key, v)
		}
		if v < r.Min || v > r.Max {
			t.Errorf("%s = %v outside the table's range %v..%v", r.Key, v, r.Min, r.Max)
		}
	}
	if strings.Contains(logged.String(), "not simulated") {
		t.Errorf("log: %s", logged.String())
	}
}

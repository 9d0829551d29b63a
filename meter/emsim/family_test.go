package emsim

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

// familyModel is a line of testdata/family.txt.
type familyModel struct {
	code     uint16
	name     string
	mswFirst bool
	systems  []uint16 // measuring systems the model accepts
}

// snapshotRow is a line of testdata/snapshot.txt.
type snapshotRow struct {
	addr   uint16
	scaled bool    // false: a gap that reads 0
	value  float64 // in the register's unit
	words  []uint16
	zeroIn []uint16 // measuring systems in which it reads 0
}

// fixtureLines returns the fields of each line of a testdata file that is
// not blank or a comment.
func fixtureLines(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, strings.Fields(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func parseUints(t *testing.T, s string, base int) []uint16 {
	t.Helper()
	var out []uint16
	if s == "-" {
		return nil
	}
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(f, base, 16)
		if err != nil {
			t.Fatalf("fixture: %q: %v", s, err)
		}
		out = append(out, uint16(v))
	}
	return out
}

func family(t *testing.T) []familyModel {
	t.Helper()
	var out []familyModel
	for _, f := range fixtureLines(t, "family.txt") {
		out = append(out, familyModel{code: parseUints(t, f[0], 10)[0], name: f[1], mswFirst: f[2] == "msw", systems: parseUints(t, f[3], 10)})
	}
	return out
}

func snapshot(t *testing.T) []snapshotRow {
	t.Helper()
	var out []snapshotRow
	for _, f := range fixtureLines(t, "snapshot.txt") {
		r := snapshotRow{addr: parseUints(t, f[0], 16)[0], scaled: f[2] != "-"}
		n := 2
		if f[1] == "INT16" {
			n = 1
		}
		if r.scaled {
			v, err := strconv.ParseFloat(f[3], 64)
			if err != nil {
				t.Fatal(err)
			}
			r.value = v
		}
		for _, w := range f[4 : 4+n] {
			r.words = append(r.words, parseUints(t, w, 16)...)
		}
		r.zeroIn = parseUints(t, f[4+n], 10)
		out = append(out, r)
	}
	return out
}

// inOrder swaps the words of a 32-bit value for a model that serves the most
// significant word first.
func inOrder(words []uint16, msw bool) []uint16 {
	if msw && len(words) == 2 {
		return []uint16{words[1], words[0]}
	}
	return words
}

// Each model's identity and settings words read as the document lays them
// out, and the measuring systems it accepts are those of its model.
func TestFamilyIdentity(t *testing.T) {
	for _, m := range family(t) {
		t.Run(fmt.Sprint(m.code), func(t *testing.T) {
			_, path := startSim(t, Options{ModelCode: m.code, Serial: "123456A", FirmwareVersion: 1, FirmwareRevision: 2,
				ProductionYear: 2021, MeasuringSystem: 2, CTRatio: 40, VTRatio: 1.5, Static: true})
			c := dial(t, path, testTimeout)
			reads := []struct {
				addr uint16
				want []uint16
			}{
				{0x000B, []uint16{m.code}},
				{0x0302, []uint16{1}},
				{0x0303, []uint16{2}},
				{0x5000, []uint16{'1', '2', '3', '4', '5', '6', 'A'}},
				{0x5010, []uint16{0x07E5}},
				{0x1002, []uint16{2}},
				{0x1003, inOrder([]uint16{0x0190, 0}, m.mswFirst)}, // CT ratio 40 ×10
				{0x1005, inOrder([]uint16{0x000F, 0}, m.mswFirst)}, // VT ratio 1.5 ×10
				{0x2004, []uint16{50}},
			}
			for _, r := range reads {
				if got := mustRead(t, c, r.addr, uint16(len(r.want))); !slices.Equal(got, r.want) {
					t.Errorf("%04Xh: %04X, want %04X", r.addr, got, r.want)
				}
			}
			for system := range uint16(4) {
				err := c.WriteRegister(meter.AddrMeasuringSystem, system)
				if slices.Contains(m.systems, system) != (err == nil) || err != nil && !errors.Is(err, modbus.ErrIllegalDataValue) {
					t.Errorf("write of measuring system %d: %v (accepts %v)", system, err, m.systems)
				}
			}
		})
	}
}

// A full-table read 0000h–0051h of each model, in each measuring system it
// accepts, is the document's layout of the values set: the model's word
// order, and zeros for what the system does not measure. The meters of one
// model sit on one bus, a measuring system each.
func TestFamilySnapshot(t *testing.T) {
	rows := snapshot(t)
	for _, m := range family(t) {
		t.Run(fmt.Sprint(m.code), func(t *testing.T) {
			var sims []*Sim
			for _, system := range m.systems {
				s := New(Options{ModelCode: m.code, Address: byte(system) + 1, MeasuringSystem: system,
					MeasurementMode: meter.MeasurementModeB, Static: true})
				for _, r := range rows {
					if r.scaled {
						if err := s.Set(registerAt(t, r.addr).Key, r.value); err != nil {
							t.Fatal(err)
						}
					}
				}
				sims = append(sims, s)
			}
			b, err := NewBus(sims...)
			if err != nil {
				t.Fatal(err)
			}
			path := t.TempDir() + "/ttyUSB0"
			if err := b.Start(path); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			c := dial(t, path, testTimeout)
			for _, system := range m.systems {
				if err := c.SetUnitId(byte(system) + 1); err != nil {
					t.Fatal(err)
				}
				got := append(mustRead(t, c, 0x0000, 50), mustRead(t, c, 0x0032, 32)...)
				var want []uint16
				for _, r := range rows {
					w := inOrder(r.words, m.mswFirst)
					if slices.Contains(r.zeroIn, system) {
						w = make([]uint16, len(w))
					}
					want = append(want, w...)
				}
				if len(want) != 0x52 {
					t.Fatalf("fixture covers %d registers, want 82", len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("model %d (%s), system %d: %04Xh = %04X, want %04X", m.code, m.name, system, i, got[i], want[i])
					}
				}
			}
		})
	}
}

// Absent addresses answer exception 02, alone or in a block that runs into
// them; a value goes as a whole; what lies beside it reads on.
func TestAbsent(t *testing.T) {
	type read struct {
		addr, qty uint16
		ex        byte // 0: a reply
	}
	tests := []struct {
		name   string
		absent []uint16
		reads  []read
		write  uint16 // an address whose write must answer 02; 0 for none
	}{
		{"a per-phase total", []uint16{0x0042}, []read{
			{0x0042, 2, 2}, {0x0043, 1, 2}, {0x0032, 32, 2}, {0x0040, 2, 0}, {0x0044, 2, 0}, {0x0000, 50, 0}}, 0},
		{"the second word of a value", []uint16{0x0045}, []read{{0x0044, 1, 2}, {0x0044, 2, 2}, {0x0042, 2, 0}}, 0},
		{"a 3-decimal total", []uint16{0x0403}, []read{{0x0400, 4, 2}, {0x0402, 2, 2}, {0x0400, 16, 2}, {0x0404, 4, 0}, {0x0034, 2, 0}}, 0},
		{"the production year", []uint16{0x5010}, []read{{0x5010, 1, 2}, {0x5000, 7, 0}}, 0},
		{"a 32-bit setting", []uint16{0x1004}, []read{{0x1003, 1, 2}, {0x1003, 2, 2}, {0x1005, 2, 0}}, 0x1003},
		{"V L3-L1 and with it the model code", []uint16{0x000A}, []read{{0x000B, 1, 2}, {0x0000, 12, 2}, {0x0000, 10, 0}}, 0},
		{"a setting", []uint16{0x1103}, []read{{0x1103, 1, 2}, {0x1105, 1, 0}}, 0x1103},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path := startSim(t, Options{Static: true, FineEnergy: true, ProductionYear: 2021, Absent: tt.absent})
			p := openRaw(t, path)
			for _, r := range tt.reads {
				p.send(readRequest(r.addr, r.qty))
				got := p.replyFrame()
				switch {
				case r.ex == 0 && got[1] != 0x03:
					t.Errorf("read %04Xh+%d: % X, want a reply", r.addr, r.qty, got)
				case r.ex != 0 && (got[1] != 0x83 || got[2] != r.ex):
					t.Errorf("read %04Xh+%d: % X, want exception %02X", r.addr, r.qty, got, r.ex)
				}
			}
			if tt.write != 0 {
				p.send(frame(0x01, 0x06, byte(tt.write>>8), byte(tt.write), 0x00, 0x01))
				if got := p.replyFrame(); got[1] != 0x86 || got[2] != 0x02 {
					t.Errorf("write %04Xh: % X, want exception 02", tt.write, got)
				}
			}
		})
	}
}

// A 1-phase EM330 reads 0 for L2, L3 and every line-to-line voltage, also
// when the system is switched by a write; the physics keeps the rest
// consistent (system power is L1's).
func TestSinglePhaseEM330(t *testing.T) {
	s, path := startSim(t, Options{ModelCode: 331, Static: true})
	c := dial(t, path, testTimeout)
	if err := c.WriteRegister(meter.AddrMeasuringSystem, 3); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * refreshEvery)
	img := image(t, c)
	for _, key := range []string{"voltage_l2_n", "voltage_l3_n", "voltage_l1_l2", "voltage_l2_l3", "voltage_l3_l1", "voltage_ll",
		"current_l2", "current_l3", "power_l2", "power_l3", "power_factor_l2", "power_factor_l3", "energy_import_l2", "energy_import_l3", "phase_sequence"} {
		if v := decodeAt(img, register(t, key), false); v != 0 {
			t.Errorf("%s = %v in 1-phase, want 0", key, v)
		}
	}
	for _, pair := range [][2]string{{"voltage_ln", "voltage_l1_n"}, {"power", "power_l1"}, {"apparent_power", "apparent_power_l1"}} {
		sys, l1 := decodeAt(img, register(t, pair[0]), false), decodeAt(img, register(t, pair[1]), false)
		if l1 == 0 || sys != l1 {
			t.Errorf("%s = %v, %s = %v: want equal and not 0", pair[0], sys, pair[1], l1)
		}
	}
	if v := s.Value("voltage_l2_n"); v != 0 {
		t.Errorf("Value(voltage_l2_n) = %v", v)
	}
}

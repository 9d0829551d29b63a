package meter

import (
	"regexp"
	"testing"
)

func TestRegisterTableIsConsistent(t *testing.T) {
	keyPattern := regexp.MustCompile(`^[a-z0-9_]+$`)
	keys := map[string]bool{}
	used := map[uint16]string{}
	regs := Registers()
	for i, r := range regs {
		if !keyPattern.MatchString(r.Key) || keys[r.Key] {
			t.Errorf("key %q is not a unique lowercase identifier", r.Key)
		}
		keys[r.Key] = true
		if r.Name == "" || r.Divisor <= 0 || r.Format == 0 || r.Quantity == "" || r.DeviceClass == "" || r.Min >= r.Max {
			t.Errorf("%s: incomplete declaration %+v", r.Key, r)
		}
		if i > 0 && r.Addr <= regs[i-1].Addr {
			t.Errorf("%s: table not in address order", r.Key)
		}
		if r.Addr+r.Format.Words() > 0x52 {
			t.Errorf("%s at %04Xh lies outside the snapshot 0000h–0051h", r.Key, r.Addr)
		}
		for a := r.Addr; a < r.Addr+r.Format.Words(); a++ {
			if other, dup := used[a]; dup {
				t.Errorf("%s overlaps %s at %04Xh", r.Key, other, a)
			}
			used[a] = r.Key
		}
		if r.FineAddr != 0 && (r.FineAddr < AddrFineEnergy || r.FineAddr+4 > AddrFineEnergy+FineEnergyWords) {
			t.Errorf("%s: 3-decimal pair %04Xh outside table 2.5", r.Key, r.FineAddr)
		}
		if r.Total != (r.Quantity == ActiveEnergy || r.Quantity == ReactiveEnergy) {
			t.Errorf("%s: only energy counters are totals", r.Key)
		}
	}
	// Tariffs 3 and 4 (004Ah–004Dh) read 0 on the EM340 and are left out.
	for a := uint16(0x4A); a < 0x4E; a++ {
		if k, ok := used[a]; ok {
			t.Errorf("%s declared at %04Xh, which the EM340 does not provide", k, a)
		}
	}
	if got := len(used); got != 0x52-4 {
		t.Errorf("table covers %d registers of 0000h–0051h, want every one but the 4 unavailable", got)
	}
	for _, k := range []string{"energy_import", "energy_export", "reactive_energy_import", "reactive_energy_export"} {
		if !keys[k] {
			t.Errorf("missing %s", k)
		}
	}
}

func TestPrecision(t *testing.T) {
	byKey := map[string]Register{}
	for _, r := range Registers() {
		byKey[r.Key] = r
	}
	tests := []struct {
		key  string
		fine bool
		want int
	}{
		{"voltage_l1_n", false, 1},
		{"current_l1", false, 3},
		{"power_factor", false, 3},
		{"frequency", false, 1},
		{"phase_sequence", false, 0},
		{"energy_import", false, 1},
		{"energy_import", true, 3},
		{"energy_import_l1", true, 1},
	}
	for _, tt := range tests {
		if got := byKey[tt.key].Precision(tt.fine); got != tt.want {
			t.Errorf("%s fine=%v: precision %d, want %d", tt.key, tt.fine, got, tt.want)
		}
	}
}

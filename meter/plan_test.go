package meter

import (
	"slices"
	"testing"
)

func TestPlan(t *testing.T) {
	all := Registers()
	tests := []struct {
		name     string
		regs     []Register
		fine     bool
		maxWords uint16
		want     []Block
	}{
		{"full snapshot in two reads", all, false, 50, []Block{{0x00, 50}, {0x32, 32}}},
		{"with 3-decimal totals, three", all, true, 50, []Block{{0x00, 50}, {0x32, 32}, {0x400, 16}}},
		{"smaller meter limit", all, false, 20, []Block{{0x00, 20}, {0x14, 20}, {0x28, 20}, {0x3C, 20}, {0x50, 2}}},
		{"a 32-bit value is never split", all, false, 25, []Block{{0x00, 24}, {0x18, 25}, {0x31, 25}, {0x4E, 4}}},
		{"a gap inside an area is read through", []Register{all[0], all[len(all)-1]}, false, 50, []Block{{0x00, 2}, {0x50, 2}}},
		{"a gap within the limit is bridged", []Register{all[0], all[5]}, false, 50, []Block{{0x00, 12}}},
		{"one register", all[:1], false, 50, []Block{{0x00, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(tt.regs, tt.fine, tt.maxWords)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Plan = %v, want %v", got, tt.want)
			}
			covered := map[uint16]bool{}
			for _, b := range got {
				if b.Count > tt.maxWords {
					t.Errorf("block %v exceeds %d", b, tt.maxWords)
				}
				for a := b.Start; a < b.End(); a++ {
					covered[a] = true
				}
			}
			for _, r := range tt.regs {
				for a := r.Addr; a < r.Addr+r.Format.Words(); a++ {
					if !covered[a] {
						t.Errorf("%s not covered", r.Key)
					}
				}
			}
		})
	}
}

func TestPlanNeverCrossesAreas(t *testing.T) {
	regs := []Register{{Key: "a", Addr: 0x0098, Format: Int32}, {Key: "b", Addr: 0x00F6, Format: Int32}}
	got, err := Plan(regs, false, 200)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Plan = %v: a read across 009Ah–00F5h would meet exception 02", got)
	}
}

func TestPlanErrors(t *testing.T) {
	if _, err := Plan(Registers(), false, 0); err == nil {
		t.Error("block size 0 accepted")
	}
	if _, err := Plan(Registers(), false, 1); err == nil {
		t.Error("32-bit values in 1-register reads accepted")
	}
	if _, err := Plan([]Register{{Key: "x", Addr: 0x0200, Format: Int16}}, false, 50); err == nil {
		t.Error("unreadable address accepted")
	}
}

// A meter's own areas leave out what it answered with exception 02: no block
// reads through a hole.
func TestPlanAroundHoles(t *testing.T) {
	tests := []struct {
		name  string
		holes []Area
		want  []Area
	}{
		{"none", nil, ReadableAreas()},
		{"inside an area", []Area{{0x4A, 0x4E}},
			[]Area{{0x00, 0x4A}, {0x4E, 0x9A}, {0xF6, 0x1B6}, {0x400, 0x410}}},
		{"at an area's start, and two that touch", []Area{{0x00, 0x02}, {0x38, 0x3A}, {0x3A, 0x3C}},
			[]Area{{0x02, 0x38}, {0x3C, 0x9A}, {0xF6, 0x1B6}, {0x400, 0x410}}},
		{"a whole area", []Area{{0x400, 0x410}}, []Area{{0x00, 0x9A}, {0xF6, 0x1B6}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := without(ReadableAreas(), tt.holes)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("without = %v, want %v", got, tt.want)
			}
			plan, err := planIn(got, describe(Registers(), Identity{MeasurementMode: MeasurementModeB}, tt.holes), false, 50)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range plan {
				if overlaps(tt.holes, b.Start, b.Count) {
					t.Errorf("block %v reads through a hole", b)
				}
			}
		})
	}
}

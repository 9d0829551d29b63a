package meter

import (
	"errors"
	"testing"
)

func TestDecode(t *testing.T) {
	volt := Register{Key: "v", Format: Int32, Divisor: 10}
	pf := Register{Key: "pf", Format: Int16, Divisor: 1000}
	u16 := Register{Key: "u", Format: UInt16, Divisor: 1}
	u32 := Register{Key: "u32", Format: UInt32, Divisor: 1}
	tests := []struct {
		name  string
		reg   Register
		words []uint16
		msw   bool
		want  float64
		err   error
	}{
		{"INT32 LSW first", volt, []uint16{0x08FC, 0x0000}, false, 230.0, nil},
		{"INT32 spanning words", volt, []uint16{0x0001, 0x0001}, false, 6553.7, nil},
		{"INT32 negative", volt, []uint16{0xFFF6, 0xFFFF}, false, -1.0, nil},
		{"INT32 MSW first (model 340)", volt, []uint16{0x0000, 0x08FC}, true, 230.0, nil},
		{"INT32 MSW first spanning", volt, []uint16{0x0001, 0x0002}, true, 6553.8, nil},
		{"INT16 negative PF", pf, []uint16{0xFC7C}, false, -0.9, nil},
		{"UINT16", u16, []uint16{0xFFFF}, false, 65535, nil},
		{"UINT32", u32, []uint16{0xFFFF, 0xFFFF}, false, 4294967295, nil},
		{"sentinel LSW first", volt, []uint16{0xFFFF, 0x7FFF}, false, 0, ErrOverflow},
		{"sentinel MSW first", volt, []uint16{0x7FFF, 0xFFFF}, true, 0, ErrOverflow},
		{"words the other way are a value", volt, []uint16{0x7FFF, 0xFFFF}, false, -3276.9, nil},
		{"short", volt, []uint16{1}, false, 0, errors.New("short")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.reg, tt.words, tt.msw)
			if tt.err != nil {
				if err == nil || (errors.Is(tt.err, ErrOverflow) && !errors.Is(err, ErrOverflow)) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Decode = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestDecodeFine(t *testing.T) {
	r := Register{Key: "energy_import", Format: Int32, Divisor: 10}
	tests := []struct {
		name  string
		words []uint16
		msw   bool
		want  float64
		err   error
	}{
		{"whole and thousandths", []uint16{0x3039, 0, 0x0237, 0}, false, 12345.567, nil},
		{"MSW first", []uint16{0, 0x3039, 0, 0x0237}, true, 12345.567, nil},
		{"sentinel", []uint16{0xFFFF, 0x7FFF, 0, 0}, false, 0, ErrOverflow},
		{"thousandths out of range", []uint16{1, 0, 1000, 0}, false, 0, ErrOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeFine(r, tt.words, tt.msw)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("DecodeFine = %v, %v; want %v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, r := range Registers() {
		for _, msw := range []bool{false, true} {
			for _, v := range []float64{r.Min, 0, r.Max / 3, r.Max} {
				want := float64(int64(roundHalfAway(v*r.Divisor))) / r.Divisor
				got, err := Decode(r, Encode(r, v, msw), msw)
				if err != nil || got != want {
					t.Errorf("%s msw=%v: %v → %v, %v", r.Key, msw, v, got, err)
				}
			}
			if r.FineAddr != 0 {
				got, err := DecodeFine(r, EncodeFine(98765.432, msw), msw)
				if err != nil || got != 98765.432 {
					t.Errorf("%s fine msw=%v: got %v, %v", r.Key, msw, got, err)
				}
			}
		}
	}
}

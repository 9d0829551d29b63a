package meter

import (
	"errors"
	"fmt"
)

// ErrOverflow is the meter's 7FFFFFFFh sentinel ("EEE" on its display): not a value.
var ErrOverflow = errors.New("overflow sentinel 7FFFFFFFh")

// rawValue assembles a register's integer from its words. 32-bit values come least
// significant word first, except on the engineering sample (model 340).
func rawValue(f Format, words []uint16, mswFirst bool) (int64, error) {
	if len(words) < int(f.Words()) {
		return 0, fmt.Errorf("need %d words, have %d", f.Words(), len(words))
	}
	switch f {
	case Int16:
		return int64(int16(words[0])), nil
	case UInt16:
		return int64(words[0]), nil
	}
	lo, hi := words[0], words[1]
	if mswFirst {
		lo, hi = hi, lo
	}
	u := uint32(hi)<<16 | uint32(lo)
	if u == OverflowSentinel {
		return 0, ErrOverflow
	}
	if f == Int32 {
		return int64(int32(u)), nil
	}
	return int64(u), nil
}

// Decode turns a register's words into its value in the register's unit.
func Decode(r Register, words []uint16, mswFirst bool) (float64, error) {
	raw, err := rawValue(r.Format, words, mswFirst)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", r.Key, err)
	}
	return float64(raw) / r.Divisor, nil
}

// DecodeFine turns a 3-decimal total (table 2.5: an INT32 of whole units, then an
// INT32 of thousandths) into its value.
func DecodeFine(r Register, words []uint16, mswFirst bool) (float64, error) {
	if len(words) < 4 {
		return 0, fmt.Errorf("%s: need 4 words for a 3-decimal total, have %d", r.Key, len(words))
	}
	whole, err := rawValue(Int32, words[:2], mswFirst)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", r.Key, err)
	}
	thousandths, err := rawValue(Int32, words[2:4], mswFirst)
	if err != nil {
		return 0, fmt.Errorf("%s thousandths: %w", r.Key, err)
	}
	if thousandths < 0 || thousandths > 999 {
		return 0, fmt.Errorf("%s: thousandths %d outside 0..999: %w", r.Key, thousandths, ErrOutOfRange)
	}
	return float64(whole) + float64(thousandths)/1000, nil
}

// Encode is the inverse of Decode for the simulator and tests: the words that make
// value read back as itself.
func Encode(r Register, value float64, mswFirst bool) []uint16 {
	raw := int64(roundHalfAway(value * r.Divisor))
	return encodeRaw(r.Format, raw, mswFirst)
}

// EncodeFine is the inverse of DecodeFine.
func EncodeFine(value float64, mswFirst bool) []uint16 {
	milli := int64(roundHalfAway(value * 1000))
	return append(encodeRaw(Int32, milli/1000, mswFirst), encodeRaw(Int32, milli%1000, mswFirst)...)
}

func encodeRaw(f Format, raw int64, mswFirst bool) []uint16 {
	if f.Words() == 1 {
		return []uint16{uint16(raw)}
	}
	u := uint32(raw)
	lo, hi := uint16(u), uint16(u>>16)
	if mswFirst {
		return []uint16{hi, lo}
	}
	return []uint16{lo, hi}
}

func roundHalfAway(x float64) float64 {
	if x < 0 {
		return -roundHalfAway(-x)
	}
	return float64(int64(x + 0.5))
}

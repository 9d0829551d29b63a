package meter

import (
	"context"
	"errors"
	"slices"

	"github.com/simonvetter/modbus"
)

// describe is what one meter has of table: the values its measuring system
// wires and its measurement mode counts, less those it answered with
// exception 02 (holes), with ranges scaled by its transformer ratios.
func describe(table []Register, id Identity, holes []Area) []Register {
	phases := id.phases()
	out := make([]Register, 0, len(table))
	for _, reg := range table {
		switch {
		case reg.Phases&^phases != 0: // a phase the meter is not wired for
			continue
		case reg.Export && id.MeasurementMode == MeasurementModeA: // reads 0 for good in mode A
			continue
		case overlaps(holes, reg.Addr, reg.Format.Words()):
			continue
		}
		f := id.scale(reg.Quantity)
		reg.Min, reg.Max = reg.Min*f, reg.Max*f
		out = append(out, reg)
	}
	return out
}

func overlaps(holes []Area, addr, n uint16) bool {
	for _, h := range holes {
		if addr < h.End && h.Start < addr+n {
			return true
		}
	}
	return false
}

// sameRegisters reports whether two descriptions of a meter agree.
func sameRegisters(a, b []Register) bool {
	return slices.EqualFunc(a, b, func(x, y Register) bool {
		return x.Key == y.Key && x.Min == y.Min && x.Max == y.Max
	})
}

// parts divides b into what a search for absent registers reads whole: each
// value's registers, and each run of addresses between them (which a block
// reads through, and which may be what the meter lacks).
func parts(b Block, regs []Register) []Area {
	var spans []Area
	for _, r := range regs {
		if s := (Area{r.Addr, r.Addr + r.Format.Words()}); s.Start >= b.Start && s.End <= b.End() {
			spans = append(spans, s)
		}
	}
	slices.SortFunc(spans, func(x, y Area) int { return int(x.Start) - int(y.Start) })
	var out []Area
	at := b.Start
	for _, s := range spans {
		if s.Start > at {
			out = append(out, Area{at, s.Start})
		}
		out = append(out, s)
		at = s.End
	}
	if at < b.End() {
		out = append(out, Area{at, b.End()})
	}
	return out
}

// findAbsent finds which of the parts of a block the meter answered with
// exception 02 it lacks, by bisection: a half that answers holds nothing
// absent, and when the left half answers the right one is known to hold what
// the whole lacked without asking (exception 02 is about addresses: one the
// meter does not have, REGISTERS.md). One absent part among n costs about log2(n)
// refused reads; the words of every part that answers go into img, so the
// snapshot needs no read again.
func findAbsent(ctx context.Context, r Reader, ps []Area, img image) ([]Area, error) {
	var absent []Area
	var search func(ps []Area, knownAbsent bool) error
	search = func(ps []Area, knownAbsent bool) error {
		if !knownAbsent {
			b := Block{ps[0].Start, ps[len(ps)-1].End - ps[0].Start}
			words, err := readBlock(ctx, r, b)
			if err == nil {
				img[b] = words
				return nil
			}
			if !errors.Is(err, modbus.ErrIllegalDataAddress) {
				return err
			}
		}
		if len(ps) == 1 {
			absent = append(absent, ps[0])
			return nil
		}
		left, right := ps[:len(ps)/2], ps[len(ps)/2:]
		found := len(absent)
		if err := search(left, false); err != nil {
			return err
		}
		return search(right, len(absent) == found)
	}
	return absent, search(ps, true)
}

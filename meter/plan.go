package meter

import (
	"fmt"
	"slices"
)

// Block is one read request: Count registers from Start.
type Block struct{ Start, Count uint16 }

// End is the first address after the block.
func (b Block) End() uint16 { return b.Start + b.Count }

// span is the registers one value occupies; it must never be split across reads.
type span struct{ start, count uint16 }

// Plan computes the fewest reads of at most maxWords registers that cover every
// register in regs (and their 3-decimal pairs when fine is set). A read may run
// over addresses nobody asked for, but never out of one readable area, since the
// meter answers such a read with exception 02.
func Plan(regs []Register, fine bool, maxWords uint16) ([]Block, error) {
	return planIn(ReadableAreas(), regs, fine, maxWords)
}

// planIn is Plan over the given readable areas: a meter's own, which leave
// out the addresses it answered with exception 02.
func planIn(areas []Area, regs []Register, fine bool, maxWords uint16) ([]Block, error) {
	if maxWords == 0 {
		return nil, fmt.Errorf("plan: block size must be at least 1")
	}
	spans := make([]span, 0, len(regs)+4)
	for _, r := range regs {
		spans = append(spans, span{r.Addr, r.Format.Words()})
		if fine && r.FineAddr != 0 {
			spans = append(spans, span{r.FineAddr, 4})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.start) - int(b.start) })

	var blocks []Block
	for _, s := range spans {
		if s.count > maxWords {
			return nil, fmt.Errorf("plan: a %d-register value at %04Xh does not fit in %d-register reads", s.count, s.start, maxWords)
		}
		area, ok := areaOf(areas, s)
		if !ok {
			return nil, fmt.Errorf("plan: %04Xh+%d lies outside every readable area", s.start, s.count)
		}
		end := s.start + s.count
		if n := len(blocks); n > 0 {
			last := &blocks[n-1]
			if end <= last.End() {
				continue // already covered
			}
			if last.Start >= area.Start && end-last.Start <= maxWords {
				last.Count = end - last.Start
				continue
			}
		}
		blocks = append(blocks, Block{s.start, s.count})
	}
	return blocks, nil
}

func areaOf(areas []Area, s span) (Area, bool) {
	for _, a := range areas {
		if s.start >= a.Start && s.start+s.count <= a.End {
			return a, true
		}
	}
	return Area{}, false
}

// without returns the areas less the holes: the parts a block may still span.
func without(areas, holes []Area) []Area {
	for _, h := range holes {
		var out []Area
		for _, a := range areas {
			if h.End <= a.Start || h.Start >= a.End {
				out = append(out, a)
				continue
			}
			if a.Start < h.Start {
				out = append(out, Area{a.Start, h.Start})
			}
			if h.End < a.End {
				out = append(out, Area{h.End, a.End})
			}
		}
		areas = out
	}
	return areas
}

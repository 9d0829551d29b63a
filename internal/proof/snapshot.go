package proof

import (
	"context"
	"fmt"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// PredecessorBlock and PredecessorPause are how the predecessor reads: blocks
// of at most 20 registers with a 50 ms pause between blocks.
const (
	PredecessorBlock = 20
	PredecessorPause = 50 * time.Millisecond
)

// Strategy is one way of reading a full snapshot through the link.
type Strategy struct {
	Name  string
	Limit time.Duration                                   // computed wire limit of its requests and pauses
	Read  func(ctx context.Context, r meter.Reader) error // one snapshot
}

// SnapshotOptions set up a snapshot measurement.
type SnapshotOptions struct {
	Baud    int
	Latency time.Duration
	Fine    bool // the meter has the 3-decimal totals (built from October 2018 on)
	Runs    int  // snapshots per strategy, interleaved
}

// SnapshotRow is one strategy's result.
type SnapshotRow struct {
	Strategy string
	Requests int // per snapshot, from the simulator's log
	Time     Summary
	Limit    time.Duration
}

// MeasureSnapshots reads o.Runs snapshots each way against one simulated
// meter with wire timing, interleaving the ways so drift hits them alike.
func MeasureSnapshots(ctx context.Context, o SnapshotOptions) ([]SnapshotRow, error) {
	line, err := OpenLine(ctx, emsim.Options{Serial: "235411W", FineEnergy: o.Fine, MeasurementMode: meter.MeasurementModeB,
		WireTiming: true, Baud: o.Baud, Latency: o.Latency}, o.Baud)
	if err != nil {
		return nil, err
	}
	defer line.Close()
	strategies, err := Strategies(line.Meter, o.Fine, o.Baud, o.Latency)
	if err != nil {
		return nil, err
	}
	times := make([][]time.Duration, len(strategies))
	requests := make([]int, len(strategies))
	for run := 0; run < o.Runs; run++ {
		for i, s := range strategies {
			if err := waitCtx(ctx, MeterGap+20*time.Millisecond); err != nil { // an idle line, as between polls
				return nil, err
			}
			line.Sim.ResetRequests()
			start := time.Now()
			err := line.Link.Do(ctx, 1, func(r meter.Reader) error { return s.Read(ctx, r) })
			d := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name, err)
			}
			reqs := line.Sim.Requests()
			for _, q := range reqs {
				if q.Outcome != emsim.OutcomeReply {
					return nil, fmt.Errorf("%s: request %04Xh+%d: %s", s.Name, q.Addr, q.Count, q.Outcome)
				}
			}
			if run > 0 && len(reqs) != requests[i] {
				return nil, fmt.Errorf("%s: %d requests, earlier %d", s.Name, len(reqs), requests[i])
			}
			requests[i] = len(reqs)
			times[i] = append(times[i], d)
		}
	}
	rows := make([]SnapshotRow, len(strategies))
	for i, s := range strategies {
		rows[i] = SnapshotRow{Strategy: s.Name, Requests: requests[i], Time: Summarize(times[i]), Limit: s.Limit}
	}
	return rows, nil
}

// Strategies are the bridge's own snapshot (meter.Meter.Read over its plan),
// the predecessor's and one request per value, over the same registers.
func Strategies(m *meter.Meter, fine bool, baud int, latency time.Duration) ([]Strategy, error) {
	regs := m.Registers()
	ours := Strategy{Name: "em340-bridge (meter.Meter.Read)", Limit: SnapshotLimit(m.Plan(), baud, latency, MeterGap),
		Read: func(ctx context.Context, r meter.Reader) error {
			before := m.Rejected()
			reading, err := m.Read(ctx, r)
			if err == nil && m.Rejected() != before {
				// (A total that reads 0, export in measurement mode A, is
				// withheld, not rejected: it may be missing.)
				err = fmt.Errorf("%d of %d values passed validation", len(reading.Values), len(regs))
			}
			return err
		}}
	blocks, err := meter.Plan(regs, fine, PredecessorBlock)
	if err != nil {
		return nil, err
	}
	pred := Strategy{Name: "predecessor (≤20 registers, 50 ms pause)", Limit: SnapshotLimit(blocks, baud, latency, PredecessorPause),
		Read: func(ctx context.Context, r meter.Reader) error {
			for i, b := range blocks {
				if i > 0 {
					if err := waitCtx(ctx, PredecessorPause); err != nil {
						return err
					}
				}
				if _, err := r.ReadRegisters(ctx, b.Start, b.Count); err != nil {
					return err
				}
			}
			return nil
		}}
	var each []meter.Block
	for _, reg := range regs {
		if fine && reg.FineAddr != 0 {
			each = append(each, meter.Block{Start: reg.FineAddr, Count: 4})
		} else {
			each = append(each, meter.Block{Start: reg.Addr, Count: reg.Format.Words()})
		}
	}
	perValue := Strategy{Name: "one request per value (40 ms gap)", Limit: SnapshotLimit(each, baud, latency, MeterGap),
		Read: func(ctx context.Context, r meter.Reader) error {
			for _, b := range each {
				if _, err := r.ReadRegisters(ctx, b.Start, b.Count); err != nil {
					return err
				}
			}
			return nil
		}}
	return []Strategy{ours, pred, perValue}, nil
}

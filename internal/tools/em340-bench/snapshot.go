package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

func snapshot(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bauds := fs.String("bauds", "9600,19200,38400,115200", "line speeds, comma-separated")
	runs := fs.Int("runs", 20, "snapshots per way and speed")
	latency := fs.Duration("latency", 5*time.Millisecond, "simulated meter answer latency (an assumption)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	type result struct {
		baud int
		fine bool
		rows []snapshotRow
	}
	var results []result
	for _, field := range strings.Split(*bauds, ",") {
		baud, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			return fmt.Errorf("-bauds: %w", err)
		}
		for _, fine := range []bool{false, true} {
			rows, err := measureSnapshots(ctx, snapshotOptions{Baud: baud, Latency: *latency, Fine: fine, Runs: *runs})
			if err != nil {
				return fmt.Errorf("%d baud: %w", baud, err)
			}
			results = append(results, result{baud, fine, rows})
		}
	}
	header()
	fmt.Fprintf(stdout, "Simulator with wire timing (10 bits a byte) and %v answer latency; read through link.Link (40 ms gap) over the pty. "+
		"Limit = Σ per request (8 + 5+2n bytes at 10 bits a byte + %v latency) + the pause between requests (40 ms; the predecessor's 50 ms). "+
		"%d snapshots per row, the three ways interleaved.\n\n", *latency, *latency, *runs)
	fmt.Fprintln(stdout, "| baud | meter | way | requests | median | worst | limit | median / limit | median vs em340-bridge |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|")
	for _, res := range results {
		kind := "0.1 kWh totals"
		if res.fine {
			kind = "3-decimal totals"
		}
		for _, r := range res.rows {
			fmt.Fprintf(stdout, "| %d | %s | %s | %d | %s | %s | %s | %.3f | %.2f× |\n", res.baud, kind, r.Strategy, r.Requests,
				Ms(r.Time.Median), Ms(r.Time.Max), Ms(r.Limit),
				float64(r.Time.Median)/float64(r.Limit), float64(r.Time.Median)/float64(res.rows[0].Time.Median))
		}
	}
	return nil
}

// strategy is one way of reading a full snapshot through the link.
type strategy struct {
	Name  string
	Limit time.Duration                                   // computed wire limit of its requests and pauses
	Read  func(ctx context.Context, r meter.Reader) error // one snapshot
}

type snapshotOptions struct {
	Baud    int
	Latency time.Duration
	Fine    bool // the meter has the 3-decimal totals (built from October 2018 on)
	Runs    int  // snapshots per strategy, interleaved
}

// snapshotRow is one strategy's result.
type snapshotRow struct {
	Strategy string
	Requests int // per snapshot, from the simulator's log
	Time     Summary
	Limit    time.Duration
}

// measureSnapshots reads o.Runs snapshots each way against one simulated
// meter with wire timing, interleaving the ways so drift hits them alike.
func measureSnapshots(ctx context.Context, o snapshotOptions) ([]snapshotRow, error) {
	line, err := bridgetest.OpenLine(ctx, emsim.Options{FineEnergy: o.Fine, MeasurementMode: meter.MeasurementModeB,
		WireTiming: true, Baud: o.Baud, Latency: o.Latency}, o.Baud)
	if err != nil {
		return nil, err
	}
	defer line.Close()
	strategies, err := strategies(line.Meter, o.Fine, o.Baud, o.Latency)
	if err != nil {
		return nil, err
	}
	times := make([][]time.Duration, len(strategies))
	requests := make([]int, len(strategies))
	for run := 0; run < o.Runs; run++ {
		for i, s := range strategies {
			if err := waitCtx(ctx, baseline.MeterGap+20*time.Millisecond); err != nil { // an idle line, as between polls
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
	rows := make([]snapshotRow, len(strategies))
	for i, s := range strategies {
		rows[i] = snapshotRow{Strategy: s.Name, Requests: requests[i], Time: Summarize(times[i]), Limit: s.Limit}
	}
	return rows, nil
}

// strategies are the bridge's own snapshot (meter.Meter.Read over its plan),
// the predecessor's and one request per value, over the same registers.
func strategies(m *meter.Meter, fine bool, baud int, latency time.Duration) ([]strategy, error) {
	regs := m.Registers()
	ours := strategy{Name: "em340-bridge (meter.Meter.Read)", Limit: baseline.Blocks(m.Plan(), baud, latency, baseline.MeterGap),
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
	blocks, err := meter.Plan(regs, fine, baseline.PredecessorBlock)
	if err != nil {
		return nil, err
	}
	pred := strategy{Name: "predecessor (≤20 registers, 50 ms pause)", Limit: baseline.Blocks(blocks, baud, latency, baseline.PredecessorPause),
		Read: func(ctx context.Context, r meter.Reader) error {
			for i, b := range blocks {
				if i > 0 {
					if err := waitCtx(ctx, baseline.PredecessorPause); err != nil {
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
	perValue := strategy{Name: "one request per value (40 ms gap)", Limit: baseline.Blocks(each, baud, latency, baseline.MeterGap),
		Read: func(ctx context.Context, r meter.Reader) error {
			for _, b := range each {
				if _, err := r.ReadRegisters(ctx, b.Start, b.Count); err != nil {
					return err
				}
			}
			return nil
		}}
	return []strategy{ours, pred, perValue}, nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/proof"
)

func snapshot(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bauds := fs.String("bauds", "9600,19200,38400,115200", "line speeds, comma-separated")
	runs := fs.Int("runs", 20, "snapshots per way and speed")
	latency := fs.Duration("latency", 5*time.Millisecond, "simulated meter answer latency")
	if err := fs.Parse(args); err != nil {
		return err
	}
	header()
	fmt.Fprintf(stdout, "Simulator with wire timing (10 bits a byte) and %v answer latency; read through link.Link (40 ms gap) over the pty. "+
		"Limit = Σ per request (8 + 5+2n bytes at 10 bits a byte + %v latency) + the pause between requests (40 ms; the predecessor's 50 ms). "+
		"%d snapshots per row, the three ways interleaved.\n\n", *latency, *latency, *runs)
	fmt.Fprintln(stdout, "| baud | meter | way | requests | median | worst | limit | median / limit | median vs em340-bridge |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|")
	for _, field := range strings.Split(*bauds, ",") {
		baud, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			return fmt.Errorf("-bauds: %w", err)
		}
		for _, fine := range []bool{false, true} {
			rows, err := proof.MeasureSnapshots(ctx, proof.SnapshotOptions{Baud: baud, Latency: *latency, Fine: fine, Runs: *runs})
			if err != nil {
				return fmt.Errorf("%d baud: %w", baud, err)
			}
			meterKind := "0.1 kWh totals"
			if fine {
				meterKind = "3-decimal totals"
			}
			for _, r := range rows {
				fmt.Fprintf(stdout, "| %d | %s | %s | %d | %s | %s | %s | %.3f | %.2f× |\n", baud, meterKind, r.Strategy, r.Requests,
					proof.Ms(r.Time.Median), proof.Ms(r.Time.Max), proof.Ms(r.Limit),
					float64(r.Time.Median)/float64(r.Limit), float64(r.Time.Median)/float64(rows[0].Time.Median))
			}
		}
	}
	return nil
}

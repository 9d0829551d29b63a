package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// simulate runs the EM340 simulator for people without a meter: it prints the
// device path to point a bridge at, and runs until interrupted.
func simulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	device := fs.String("device", filepath.Join(os.TempDir(), "em340-sim", "ttyUSB0"), "path of the simulated adapter (a symlink to a pseudo-terminal)")
	serial := fs.String("serial", "235411W", "the meter's serial number")
	modeA := fs.Bool("mode-a", false, "measurement mode A (no export, power always positive) instead of B")
	older := fs.Bool("older", false, "a meter built before October 2018: no 3-decimal energy totals")
	wire := fs.Bool("wire-timing", false, "answer no sooner than the line at -baud would allow")
	baud := fs.Int("baud", 9600, "line speed for -wire-timing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts := emsim.Options{Serial: *serial, FineEnergy: !*older, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, WireTiming: *wire, Baud: *baud}
	if *modeA {
		opts.MeasurementMode = meter.MeasurementModeA
	}
	if *older {
		opts.ProductionYear = 0
	}
	if err := os.MkdirAll(filepath.Dir(*device), 0o755); err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return 1
	}
	sim := emsim.New(opts)
	if err := sim.Start(*device); err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return 1
	}
	defer sim.Close()
	fmt.Fprintf(stdout, "EM340 simulator (serial %s) on %s -> %s\n", *serial, sim.Path(), sim.Device())
	fmt.Fprintf(stdout, "point the bridge at it:  EM340_SERIAL_DEVICE=%s em340-bridge\n", sim.Path())
	fmt.Fprintln(stdout, "Ctrl-C stops it.")
	<-ctx.Done()
	return 0
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

const simulateHelp = `usage: em340-bridge simulate [flags]

Runs a simulated Carlo Gavazzi EM340 for trying the bridge without a meter:
a Modbus RTU slave on a pseudo-terminal, reached through a symlink at
-device, answering like the real meter (identity, measurements, energy
totals). It prints the device path to set as EM340_SERIAL_DEVICE (with
EM340_MODBUS_ADDRESS set to -address if that is not 1) and runs until
interrupted; the symlink is removed on exit.

flags:
`

// simulate runs the EM340 simulator for people without a meter: it prints the
// device path to point a bridge at, and runs until interrupted.
func simulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), simulateHelp)
		fs.PrintDefaults()
	}
	device := fs.String("device", filepath.Join(os.TempDir(), "em340-sim", "ttyUSB0"), "path of the simulated adapter (a symlink to a pseudo-terminal)")
	serial := fs.String("serial", "235411W", "the meter's serial number")
	modeA := fs.Bool("mode-a", false, "measurement mode A (no export, power always positive) instead of B")
	older := fs.Bool("older", false, "a meter built before October 2018: no 3-decimal energy totals")
	wire := fs.Bool("wire-timing", false, "answer no sooner than the line at -baud would allow")
	baud := fs.Int("baud", 9600, "line speed for -wire-timing")
	address := fs.Uint("address", 1, "the meter's Modbus address, 1–247 (EM340_MODBUS_ADDRESS)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *address < 1 || *address > 247 {
		fmt.Fprintf(stderr, "simulate: -address %d is not a Modbus slave address (1–247)\n", *address)
		return 2
	}
	opts := emsim.Options{Address: byte(*address), Serial: *serial, FineEnergy: !*older, ProductionYear: 2021,
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
	if *address == 1 {
		fmt.Fprintf(stdout, "point the bridge at it:  EM340_SERIAL_DEVICE=%s em340-bridge\n", sim.Path())
	} else {
		fmt.Fprintf(stdout, "point the bridge at it:  EM340_SERIAL_DEVICE=%s EM340_MODBUS_ADDRESS=%d em340-bridge\n", sim.Path(), *address)
	}
	fmt.Fprintln(stdout, "Ctrl-C stops it.")
	<-ctx.Done()
	return 0
}

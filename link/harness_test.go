package link

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// hangGuard bounds every wait: it only detects a hang, it measures nothing.
const hangGuard = 15 * time.Second

// rig is a link to a simulated EM340 on a pty, with the meter reading through it.
type rig struct {
	t      *testing.T
	sim    *emsim.Sim
	link   *Link
	meter  *meter.Meter
	path   string
	states chan Status
	cancel context.CancelFunc
	done   chan error
}

type rigOptions struct {
	cfg    Config // Device, Backoff, OfflineAfter and seams; the rest is filled in
	simOpt emsim.Options
	device string // where the simulator plugs in; default dir/ttyUSB0
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	dir := t.TempDir()
	if o.device == "" {
		o.device = filepath.Join(dir, "ttyUSB0")
	} else {
		o.device = filepath.Join(dir, o.device)
	}
	if err := os.MkdirAll(filepath.Dir(o.device), 0o755); err != nil {
		t.Fatal(err)
	}
	if o.simOpt.Serial == "" {
		o.simOpt.FineEnergy, o.simOpt.ProductionYear, o.simOpt.MeasurementMode = true, 2021, meter.MeasurementModeB
	}
	sim := emsim.New(o.simOpt)
	if err := sim.Start(o.device); err != nil {
		t.Fatal(err)
	}
	m := meter.New(meter.Options{})
	r := &rig{t: t, sim: sim, meter: m, path: o.device, states: make(chan Status, 1024), done: make(chan error, 1)}
	cfg := o.cfg
	if cfg.Device == "" {
		cfg.Device = o.device
	}
	cfg.Serial = Serial{Baud: 115200, Parity: "none", StopBits: 1, Address: 1, Timeout: 300 * time.Millisecond}
	if cfg.Backoff == (ReconnectBackoff{}) {
		cfg.Backoff = ReconnectBackoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2}
	}
	if cfg.MinGap == 0 {
		cfg.MinGap = 2 * time.Millisecond
	}
	cfg.Prove = func(ctx context.Context, rd meter.Reader) error { _, err := m.Connect(ctx, rd); return err }
	cfg.OnChange = func(s Status) { r.states <- s }
	if os.Getenv("EM340_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r.link = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.link.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(hangGuard):
		r.t.Error("link.Run did not return after cancel")
	}
	r.cancel = nil
	_ = r.sim.Close()
}

// waitState returns the first status change to state (and cause, if not "-").
func (r *rig) waitState(state LinkState, cause Cause) Status {
	r.t.Helper()
	deadline := time.After(hangGuard)
	for {
		select {
		case s := <-r.states:
			if s.State == state && (cause == "-" || s.Cause == cause) {
				return s
			}
		case <-deadline:
			r.t.Fatalf("no %s (%s) within %s; now %+v", state, cause, hangGuard, r.link.Status())
		}
	}
}

// read takes one snapshot through the link.
func (r *rig) read() (meter.Reading, error) {
	var reading meter.Reading
	err := r.link.Do(context.Background(), func(rd meter.Reader) error {
		var err error
		reading, err = r.meter.Read(context.Background(), rd)
		return err
	})
	return reading, err
}

func (r *rig) mustRead() meter.Reading {
	r.t.Helper()
	reading, err := r.read()
	if err != nil {
		r.t.Fatalf("snapshot: %v", err)
	}
	if len(reading.Values) == 0 {
		r.t.Fatal("snapshot without values")
	}
	return reading
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// settle lets goroutines that are on their way out finish before counting.
func settledGoroutines(limit int) int {
	n := runtime.NumGoroutine()
	for i := 0; i < 100 && n > limit; i++ {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

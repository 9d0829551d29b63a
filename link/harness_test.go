package link

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
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
	layout layout
	path   string
	states chan Status
	cancel context.CancelFunc
	done   chan error

	// With rigOptions.sysfs: the sysfs the link reads, and every look it
	// took at the serial ports (the enumerate seam's at: "" is every port).
	sys     sysTree
	lookMu  sync.Mutex
	lookups []string
}

// looks returns the lookups made since the first from.
func (r *rig) looks(from int) []string {
	r.lookMu.Lock()
	defer r.lookMu.Unlock()
	return append([]string{}, r.lookups[from:]...)
}

func (r *rig) lookCount() int {
	r.lookMu.Lock()
	defer r.lookMu.Unlock()
	return len(r.lookups)
}

// rigAdapter is the USB adapter a rig's simulator stands behind, in sysfs.
var rigAdapter = fakeAdapter{usbPath: "1-1", vid: "0403", pid: "6001", serial: "A10KZ3P1", manufacturer: "FTDI", product: "FT232R USB UART"}

type rigOptions struct {
	cfg     Config // Device, Backoff, OfflineAfter and seams; the rest is filled in
	simOpt  emsim.Options
	device  string        // single-path mode: where the simulator plugs in; default dir/ttyUSB0
	layout  layout        // tree mode: which of udev's paths the link is given
	pace    emsim.Pace    // tree mode: udev's pace; zero: the measured defaults
	timeout time.Duration // per request; default 300 ms
	// sysfs gives the link a sysfs in which the tree's ttyUSB0–3 are ports
	// of rigAdapter (the kernel makes the entry before the node; a test
	// reassigns names before a plug as the kernel would); tree mode only.
	sysfs bool
}

// layout is the device path a tree-mode rig configures, as a user would.
type layout string

const (
	singlePath layout = ""      // emsim.Start: one symlink, for protocol and fault tests
	nodePath   layout = "node"  // Root/ttyUSB0, as /dev/ttyUSB0
	byIDPath   layout = "by-id" // Root/serial/by-id/…, as /dev/serial/by-id/…
)

// unplugLayouts are the paths every unplug test runs with.
var unplugLayouts = []layout{nodePath, byIDPath}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	dir := t.TempDir()
	if o.simOpt.Serial == "" {
		o.simOpt.FineEnergy, o.simOpt.ProductionYear, o.simOpt.MeasurementMode = true, 2021, meter.MeasurementModeB
	}
	sim := emsim.New(o.simOpt)
	switch o.layout {
	case singlePath:
		if o.device == "" {
			o.device = filepath.Join(dir, "ttyUSB0")
		} else {
			o.device = filepath.Join(dir, o.device)
		}
		if err := os.MkdirAll(filepath.Dir(o.device), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := sim.Start(o.device); err != nil {
			t.Fatal(err)
		}
	default:
		if err := sim.StartTree(emsim.DevTree{Root: dir, Pace: o.pace}); err != nil {
			t.Fatal(err)
		}
		o.device = sim.ByIDPath()
		if o.layout == nodePath {
			o.device = sim.NodePath()
		}
	}
	m := meter.New(meter.Options{})
	r := &rig{t: t, sim: sim, meter: m, layout: o.layout, path: o.device, states: make(chan Status, 1024), done: make(chan error, 1)}
	cfg := o.cfg
	if o.sysfs {
		r.sys = newSysTree(t)
		for n := range 4 {
			r.sys.usbSerial(fmt.Sprintf("ttyUSB%d", n), rigAdapter, "00", "0")
		}
		cfg.sys = r.sys.sys(dir)
		cfg.enumerate = func(at string) ([]usbPort, error) {
			r.lookMu.Lock()
			r.lookups = append(r.lookups, at)
			r.lookMu.Unlock()
			return cfg.sys.ports(at)
		}
	}
	if cfg.Device == "" {
		cfg.Device = o.device
	}
	if o.timeout == 0 {
		o.timeout = 300 * time.Millisecond
	}
	cfg.Serial = Serial{Baud: 115200, Parity: "none", StopBits: 1, Timeout: o.timeout}
	if cfg.Backoff == (ReconnectBackoff{}) {
		cfg.Backoff = ReconnectBackoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2}
	}
	if cfg.MinGap == 0 {
		cfg.MinGap = 2 * time.Millisecond
	}
	cfg.Prove = func(ctx context.Context, _ uint8, rd meter.Reader) error { _, err := m.Connect(ctx, rd); return err }
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
			r.t.Fatalf("no %s (%s) within %s; now %+v; the simulator's node is %q", state, cause, hangGuard, r.link.Status(), r.sim.NodePath())
		}
	}
}

// read takes one snapshot through the link.
func (r *rig) read() (meter.Reading, error) {
	var reading meter.Reading
	err := r.link.Do(context.Background(), 1, func(rd meter.Reader) error {
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

// waitReleased waits until this process holds no fd on pts (the /dev/pts/N
// of a plug): only then does a replug come back under the same ttyUSB name.
func (r *rig) waitReleased(pts string) {
	r.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for holdsFile(r.t, pts) {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s still held %s after the loss", pts, hangGuard)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unplug pulls the adapter and waits until the link has seen it and let go.
func (r *rig) unplug() Status {
	r.t.Helper()
	pts := r.sim.Device()
	if err := r.sim.Unplug(); err != nil {
		r.t.Fatal(err)
	}
	st := r.waitState(Reconnecting, CauseAdapterMissing)
	r.waitReleased(pts)
	return st
}

// replug plugs the adapter back in, under the old name when the test
// configured the node itself. emsim names a replug ttyUSB1 while any process
// holds the old pty hung up, and tells ptys apart by number only: a process
// of another test on the machine that got the freed number for a pty of its
// own and holds it hung up makes the old name look taken. unplug has checked
// that this process holds nothing, so the replug is made again until the
// old name comes back.
func (r *rig) replug() {
	r.t.Helper()
	for range 20 {
		if err := r.sim.Replug(); err != nil {
			r.t.Fatal(err)
		}
		if r.layout != nodePath || r.sim.NodePath() == r.path {
			return
		}
		r.t.Logf("replugged as %s: another process holds a hung-up pty of the old number; again", r.sim.NodePath())
	}
	r.t.Fatalf("the adapter never came back as %s", r.path)
}

func holdsFile(t *testing.T, path string) bool {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && (target == path || target == path+" (deleted)") {
			return true
		}
	}
	return false
}

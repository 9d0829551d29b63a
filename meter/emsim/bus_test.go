package emsim

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

// busOf makes a bus of Static meters at these addresses, each with the serial
// "BUS<address>", and closes it when the test ends.
func busOf(t *testing.T, opts Options, addrs ...byte) (*Bus, []*Sim) {
	t.Helper()
	var sims []*Sim
	for _, a := range addrs {
		o := opts
		o.Address, o.Serial, o.Static = a, fmt.Sprintf("BUS%d", a), true
		sims = append(sims, New(o))
	}
	b, err := NewBus(sims...)
	if err != nil {
		t.Fatalf("new bus: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close bus: %v", err)
		}
	})
	return b, sims
}

// startBus starts a bus of Static meters at a fresh path.
func startBus(t *testing.T, opts Options, addrs ...byte) (*Bus, []*Sim, string) {
	t.Helper()
	b, sims := busOf(t, opts, addrs...)
	path := filepath.Join(t.TempDir(), "ttyUSB0")
	if err := b.Start(path); err != nil {
		t.Fatalf("start bus: %v", err)
	}
	return b, sims, path
}

// serialAt reads the serial number of the meter at unit through c.
func serialAt(c *modbus.ModbusClient, unit byte) (string, error) {
	if err := c.SetUnitId(unit); err != nil {
		return "", err
	}
	w, err := c.ReadRegisters(meter.AddrSerialNumber, meter.SerialNumberWords, modbus.HOLDING_REGISTER)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, x := range w {
		if x != 0 {
			b.WriteByte(byte(x))
		}
	}
	return b.String(), nil
}

// lastOutcome is the outcome of the newest request in a meter's log.
func lastOutcome(s *Sim) Outcome {
	r := s.Requests()
	if len(r) == 0 {
		return 0
	}
	return r[len(r)-1].Outcome
}

func TestNewBusErrors(t *testing.T) {
	started := New(Options{Address: 3})
	if err := started.Start(filepath.Join(t.TempDir(), "ttyUSB0")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = started.Close() })
	onBus := New(Options{Address: 4})
	if _, err := NewBus(onBus); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sims []*Sim
		want string
	}{
		{"no meters", nil, "no meters"},
		{"two at one address", []*Sim{New(Options{Address: 2}), New(Options{Address: 5}), New(Options{Address: 2})}, "meters 0 and 2 both at address 2"},
		{"the same meter twice", []*Sim{onBus, onBus}, "both at address 4"},
		{"plugged in alone", []*Sim{New(Options{Address: 1}), started}, "meter 1: plugged in on its own"},
		{"on another bus", []*Sim{New(Options{Address: 1}), onBus}, "meter 1: already on a bus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBus(tt.sims...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewBus: %v, want an error saying %q", err, tt.want)
			}
			if b != nil {
				t.Fatal("a bus returned with the error")
			}
			for _, s := range tt.sims { // a failed NewBus leaves the others free to plug alone
				if s != started && s != onBus && s.on.Load() != s.own {
					t.Fatalf("meter at %d left on the failed bus", s.opts.Address)
				}
			}
		})
	}
}

// A meter on a bus is plugged by the bus: its own plug methods fail, its
// Close does nothing, and it reports the bus's paths.
func TestMeterOnBusIsPluggedByTheBus(t *testing.T) {
	b, sims := busOf(t, Options{}, 1, 2)
	s := sims[1]
	path := filepath.Join(t.TempDir(), "ttyUSB0")
	plugs := []struct {
		name string
		call func() error
	}{
		{"Start", func() error { return s.Start(path) }},
		{"StartTree", func() error { return s.StartTree(DevTree{Root: t.TempDir()}) }},
		{"Unplug", s.Unplug},
		{"Replug", s.Replug},
		{"ReplugAfter", func() error { return s.ReplugAfter(0) }},
		{"ReplugAs", func() error { return s.ReplugAs(path) }},
	}
	for _, p := range plugs {
		if err := p.call(); err == nil || !strings.Contains(err.Error(), "on a bus") {
			t.Errorf("%s on a meter on a bus: %v", p.name, err)
		}
	}
	if err := b.Start(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close of a meter on a bus: %v", err)
	}
	if s.Path() != path || s.Device() == "" || s.Device() != b.Device() {
		t.Fatalf("meter reports path %q device %q; the bus %q %q", s.Path(), s.Device(), b.Path(), b.Device())
	}
	mustRead(t, dial(t, path, testTimeout), 0, 2) // the meter's Close left the bus plugged in
}

// Every frame reaches every meter; only the addressed one answers.
func TestBusAnswersByAddress(t *testing.T) {
	_, sims, path := startBus(t, Options{}, 1, 2, 5)
	c := dial(t, path, 150*time.Millisecond)
	tests := []struct {
		unit   byte
		serial string // "": nobody there
		answer int    // index of the meter that answers; -1 none
	}{
		{1, "BUS1", 0},
		{2, "BUS2", 1},
		{5, "BUS5", 2},
		{3, "", -1},
		{2, "BUS2", 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.unit), func(t *testing.T) {
			for _, s := range sims {
				s.ResetRequests()
			}
			got, err := serialAt(c, tt.unit)
			switch {
			case tt.answer < 0 && !errors.Is(err, modbus.ErrRequestTimedOut):
				t.Fatalf("read from unit %d: %q, %v; want a timeout", tt.unit, got, err)
			case tt.answer >= 0 && (err != nil || got != tt.serial):
				t.Fatalf("serial at unit %d: %q, %v; want %q", tt.unit, got, err, tt.serial)
			}
			for i, s := range sims {
				want := OutcomeOtherSlave
				if i == tt.answer {
					want = OutcomeReply
				}
				if r := s.Requests(); len(r) != 1 || r[0].Outcome != want || r[0].Slave != tt.unit {
					t.Errorf("meter %d logged %+v, want one %v from unit %d", s.opts.Address, r, want, tt.unit)
				}
			}
		})
	}
}

// A fault on one meter leaves the others answering, at once: a slow meter
// holds up nobody else on the line.
func TestBusFaultsPerMeter(t *testing.T) {
	tests := []struct {
		name    string
		inject  func(*Sim)
		outcome Outcome
	}{
		{"mute", func(s *Sim) { s.Mute(true) }, OutcomeMuted},
		{"slow", func(s *Sim) { s.Slow(time.Second) }, OutcomeReply},
		{"late", func(s *Sim) { s.LateNext(1, time.Second) }, OutcomeLate},
		{"power cycle", func(s *Sim) { s.PowerCycle(time.Second, 0) }, OutcomePowerOff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sims, path := startBus(t, Options{}, 1, 2, 5)
			c := dial(t, path, 150*time.Millisecond)
			tt.inject(sims[1])
			if _, err := serialAt(c, 2); !errors.Is(err, modbus.ErrRequestTimedOut) {
				t.Fatalf("faulty meter: %v, want a timeout", err)
			}
			if got := lastOutcome(sims[1]); got != tt.outcome {
				t.Fatalf("faulty meter logged %v, want %v", got, tt.outcome)
			}
			for _, unit := range []byte{1, 5, 1, 5} {
				start := time.Now()
				if got, err := serialAt(c, unit); err != nil || got != fmt.Sprintf("BUS%d", unit) {
					t.Fatalf("meter %d beside the faulty one: %q, %v", unit, got, err)
				}
				if d := time.Since(start); d > 500*time.Millisecond { // a hang, not a speed claim
					t.Fatalf("meter %d answered after %v: held up by the faulty one", unit, d)
				}
			}
			for _, i := range []int{0, 2} {
				if got := outcomes(sims[i]); slices.Contains(got, tt.outcome) && tt.outcome != OutcomeReply {
					t.Errorf("meter %d logged the fault of another: %v", sims[i].opts.Address, got)
				}
			}
		})
	}
}

// The 40 ms after a reply belong to the line, not to one meter: a meter that
// ignores queries within it ignores one that follows another meter's reply.
func TestBusSharedGap(t *testing.T) {
	_, sims, path := startBus(t, Options{IgnoreWithin: 40 * time.Millisecond}, 1, 2)
	c := dial(t, path, 150*time.Millisecond)
	if _, err := serialAt(c, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := serialAt(c, 2); !errors.Is(err, modbus.ErrRequestTimedOut) {
		t.Fatalf("query to meter 2 right after meter 1's reply: %v, want a timeout", err)
	}
	if got := lastOutcome(sims[1]); got != OutcomeIgnored {
		t.Fatalf("meter 2 logged %v, want %v", got, OutcomeIgnored)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := serialAt(c, 2); err != nil {
		t.Fatalf("after the gap: %v", err)
	}
}

// With WireTiming the request and the reply take their time on the shared
// line whichever meter answers. Only a lower bound is asserted.
func TestBusWireTiming(t *testing.T) {
	_, _, path := startBus(t, Options{WireTiming: true, Baud: 9600}, 1, 7)
	c := dial(t, path, 2*time.Second)
	want := time.Duration(10*(8+5+2*meter.SerialNumberWords)) * time.Second / 9600
	for _, unit := range []byte{1, 7, 1} {
		start := time.Now()
		if _, err := serialAt(c, unit); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < want {
			t.Fatalf("serial read from %d took %v, want at least %v", unit, d, want)
		}
	}
}

// A broadcast write reaches every meter; none answers.
func TestBusBroadcast(t *testing.T) {
	_, sims, path := startBus(t, Options{}, 1, 2, 5)
	p := openRaw(t, path)
	p.send(frame(0x00, 0x06, 0x11, 0x03, 0x00, 0x01)) // measurement mode B to everyone
	p.expectSilence(100 * time.Millisecond)
	for _, s := range sims {
		p.send(frame(s.opts.Address, 0x03, 0x11, 0x03, 0x00, 0x01))
		p.expect(frame(s.opts.Address, 0x03, 0x02, 0x00, 0x01))
	}
	for i, s := range sims {
		want := []Outcome{OutcomeBroadcast, OutcomeOtherSlave, OutcomeOtherSlave, OutcomeOtherSlave}
		want[1+i] = OutcomeReply
		if got := outcomes(s); !slices.Equal(got, want) {
			t.Errorf("meter %d logged %v, want %v", s.opts.Address, got, want)
		}
	}
}

// Unplugging the adapter takes every meter down; Replug brings all back, in
// both plug modes.
func TestBusUnplugReplug(t *testing.T) {
	modes := []struct {
		name  string
		start func(*testing.T, *Bus) string
	}{
		{"path", func(t *testing.T, b *Bus) string {
			path := filepath.Join(t.TempDir(), "ttyUSB0")
			if err := b.Start(path); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{"tree", func(t *testing.T, b *Bus) string {
			if err := b.StartTree(DevTree{Root: t.TempDir(), Pace: noPace}); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.ByIDPath(), "BUS1") || b.NodePath() == "" || b.ByPathPath() == "" {
				t.Fatalf("tree paths %q %q %q", b.ByIDPath(), b.NodePath(), b.ByPathPath())
			}
			return b.ByIDPath()
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			b, _ := busOf(t, Options{}, 1, 2, 5)
			path := m.start(t, b)
			if b.Path() != path {
				t.Fatalf("Path() %q, want %q", b.Path(), path)
			}
			readAll := func(c *modbus.ModbusClient) {
				t.Helper()
				for _, unit := range []byte{1, 2, 5} {
					if got, err := serialAt(c, unit); err != nil || got != fmt.Sprintf("BUS%d", unit) {
						t.Fatalf("unit %d: %q, %v", unit, got, err)
					}
				}
			}
			old := dial(t, path, testTimeout)
			readAll(old)
			if err := b.Unplug(); err != nil {
				t.Fatal(err)
			}
			pathGone(t, path)
			if b.Device() != "" {
				t.Fatalf("Device() %q while unplugged", b.Device())
			}
			for _, unit := range []byte{1, 2, 5} {
				if _, err := serialAt(old, unit); !errors.Is(err, syscall.EIO) {
					t.Fatalf("unit %d after unplug: %v, want EIO", unit, err)
				}
			}
			if _, err := openClient(path, testTimeout); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("open while unplugged: %v", err)
			}
			if err := b.Replug(); err != nil {
				t.Fatal(err)
			}
			readAll(dial(t, path, testTimeout))
			if err := b.ReplugAfter(0); err != nil {
				t.Fatal(err)
			}
			readAll(dial(t, path, testTimeout))
		})
	}
}

// Close leaves no goroutine behind after replugs with every meter busy.
func TestBusNoLeaks(t *testing.T) {
	baseG := goroutines()
	b, sims := busOf(t, Options{}, 1, 2, 3)
	path := filepath.Join(t.TempDir(), "ttyUSB0")
	if err := b.Start(path); err != nil {
		t.Fatal(err)
	}
	sims[1].Slow(time.Hour) // a reply pending at every unplug
	for range 5 {
		c, err := openClient(path, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, unit := range []byte{1, 2, 3} {
			_, _ = serialAt(c, unit)
		}
		_ = c.Close()
		if err := b.ReplugAfter(0); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(2*time.Second, func() bool { return goroutines() <= baseG }) {
		t.Errorf("goroutines: %d after, %d before", goroutines(), baseG)
	}
	pathGone(t, path)
}

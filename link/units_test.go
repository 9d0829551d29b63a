package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// busRig is a link to several simulated meters on one line.
type busRig struct {
	t      *testing.T
	sims   map[uint8]*emsim.Sim
	meters map[uint8]*meter.Meter
	link   *Link
	states chan Status
	stop   func()
}

// newBusRig serves a meter at each unit on a bus that plug puts on a line
// (a pty in udev's tree, or a gateway), returning the device to configure;
// the meters at muted are mute from the start.
func newBusRig(t *testing.T, units []uint8, plug func(*emsim.Bus) string, cfg Config, muted ...uint8) *busRig {
	t.Helper()
	r := &busRig{t: t, sims: map[uint8]*emsim.Sim{}, meters: map[uint8]*meter.Meter{}, states: make(chan Status, 1024)}
	var sims []*emsim.Sim
	for _, u := range units {
		s := emsim.New(emsim.Options{Address: u, Serial: fmt.Sprintf("BUS%04dW", u), FineEnergy: true,
			ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB})
		r.sims[u], r.meters[u] = s, meter.New(meter.Options{})
		sims = append(sims, s)
		s.Mute(slices.Contains(muted, u))
	}
	bus, err := emsim.NewBus(sims...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	cfg.Device = plug(bus)
	cfg.Units = units
	cfg.Serial = Serial{Baud: 115200, Parity: "none", StopBits: 1, Timeout: 300 * time.Millisecond}
	if cfg.Backoff == (ReconnectBackoff{}) {
		cfg.Backoff = ReconnectBackoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2}
	}
	cfg.MinGap = 2 * time.Millisecond
	cfg.Prove = func(ctx context.Context, unit uint8, rd meter.Reader) error {
		_, err := r.meters[unit].Connect(ctx, rd)
		return err
	}
	cfg.OnChange = func(s Status) { r.states <- s }
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r.link = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.link.Run(ctx) }()
	r.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(hangGuard):
			t.Error("link.Run did not return after cancel")
		}
	}
	t.Cleanup(r.stop)
	return r
}

// treePlug plugs the bus in as udev would and configures the by-id path.
func treePlug(t *testing.T) func(*emsim.Bus) string {
	return func(b *emsim.Bus) string {
		if err := b.StartTree(emsim.DevTree{Root: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		return b.ByIDPath()
	}
}

// waitFor returns the first status change that satisfies ok.
func (r *busRig) waitFor(what string, ok func(Status) bool) Status {
	r.t.Helper()
	deadline := time.After(hangGuard)
	for {
		select {
		case s := <-r.states:
			if ok(s) {
				return s
			}
		case <-deadline:
			r.t.Fatalf("no status with %s within %s; now %+v", what, hangGuard, r.link.Status())
		}
	}
}

func answering(st Status, unit uint8) bool {
	u, _ := st.Unit(unit)
	return u.Answering
}

// read takes a snapshot of the meter at unit, proving it first if the link
// says it does not answer (as the bridge does).
func (r *busRig) read(unit uint8) error {
	ctx := context.Background()
	return r.link.Do(ctx, unit, func(rd meter.Reader) error {
		if !answering(r.link.Status(), unit) {
			if _, err := r.meters[unit].Connect(ctx, rd); err != nil {
				return err
			}
		}
		_, err := r.meters[unit].Read(ctx, rd)
		return err
	})
}

// Every meter on the line is proven at connect; one that stops answering
// leaves the link online and the others read, and comes back by itself once
// a session of it succeeds; only when none answers does the link reconnect.
func TestSeveralMetersOnOneLine(t *testing.T) {
	units := []uint8{1, 2, 5}
	r := newBusRig(t, units, treePlug(t), Config{})
	st := r.waitFor("every meter answering", func(s Status) bool {
		return s.State == Online && answering(s, 1) && answering(s, 2) && answering(s, 5)
	})
	if st.Cause != CauseNone || len(st.Units) != 3 {
		t.Fatalf("online with %+v", st)
	}
	for _, u := range units {
		if err := r.read(u); err != nil {
			t.Fatalf("unit %d: %v", u, err)
		}
	}
	for u, s := range r.sims { // each meter answered only its own requests
		for _, q := range s.Requests() {
			if q.Answered() && q.Slave != u {
				t.Errorf("meter %d answered a request for %d", u, q.Slave)
			}
		}
	}

	r.sims[2].Mute(true)
	for range 3 {
		if err := r.read(2); err == nil {
			t.Fatal("a muted meter's snapshot succeeded")
		}
	}
	st = r.waitFor("unit 2 silent", func(s Status) bool { return !answering(s, 2) })
	if st.State != Online || !answering(st, 1) || !answering(st, 5) {
		t.Fatalf("one silent meter took the line down: %+v", st)
	}
	if u, _ := st.Unit(2); u.Cause != CauseMeterSilent || st.Cause != CauseMeterSilent {
		t.Errorf("unit 2: %+v, link cause %q", u, st.Cause)
	}
	for _, u := range []uint8{1, 5} {
		if err := r.read(u); err != nil {
			t.Errorf("unit %d while unit 2 is silent: %v", u, err)
		}
	}

	r.sims[2].Mute(false)
	if err := r.read(2); err != nil {
		t.Fatalf("unit 2 unmuted: %v", err)
	}
	st = r.waitFor("unit 2 answering again", func(s Status) bool { return answering(s, 2) })
	if st.Cause != CauseNone {
		t.Errorf("all answer, yet the cause is %q", st.Cause)
	}

	for _, s := range r.sims {
		s.Mute(true)
	}
	for _, u := range units {
		for range 3 {
			_ = r.read(u)
		}
	}
	r.waitFor("the link lost", func(s Status) bool { return s.State == Reconnecting && s.Cause == CauseMeterSilent })
	for _, s := range r.sims {
		s.Mute(false)
	}
	r.waitFor("every meter back", func(s Status) bool {
		return s.State == Online && answering(s, 1) && answering(s, 2) && answering(s, 5)
	})
}

// A meter that does not answer at connect does not keep the others offline.
func TestOneMeterSilentAtConnect(t *testing.T) {
	r := newBusRig(t, []uint8{1, 2}, treePlug(t), Config{}, 2)
	st := r.waitFor("online", func(s Status) bool { return s.State == Online })
	if !answering(st, 1) || answering(st, 2) {
		t.Fatalf("online with %+v", st)
	}
	if u, _ := st.Unit(2); u.Cause != CauseMeterSilent || st.Cause != CauseMeterSilent || !strings.Contains(st.Detail, "unit 2") {
		t.Errorf("unit 2 %+v; link cause %q (%s)", u, st.Cause, st.Detail)
	}
	if err := r.read(1); err != nil {
		t.Fatalf("unit 1: %v", err)
	}
	r.sims[2].Mute(false)
	if err := r.read(2); err != nil {
		t.Fatalf("unit 2 tried again once it answers: %v", err)
	}
	r.waitFor("unit 2 answering", func(s Status) bool { return answering(s, 2) })
	if err := r.link.Do(context.Background(), 9, func(meter.Reader) error { return nil }); !errors.Is(err, ErrUnknownUnit) {
		t.Errorf("Do on an unconfigured unit: %v", err)
	}
}

// Unplugging the adapter takes every meter down, and the replug brings every
// one back.
func TestUnplugTakesEveryMeter(t *testing.T) {
	units := []uint8{1, 2, 5}
	var bus *emsim.Bus
	r := newBusRig(t, units, func(b *emsim.Bus) string {
		bus = b
		return treePlug(t)(b)
	}, Config{})
	r.waitFor("every meter answering", func(s Status) bool {
		return s.State == Online && answering(s, 1) && answering(s, 2) && answering(s, 5)
	})
	if err := bus.Unplug(); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the adapter missing", func(s Status) bool { return s.State == Reconnecting && s.Cause == CauseAdapterMissing })
	for _, u := range units {
		if err := r.read(u); !errors.Is(err, ErrNotOnline) {
			t.Errorf("unit %d read while unplugged: %v", u, err)
		}
	}
	if err := bus.Replug(); err != nil {
		t.Fatal(err)
	}
	r.waitFor("every meter back", func(s Status) bool {
		return s.State == Online && answering(s, 1) && answering(s, 2) && answering(s, 5)
	})
	for _, u := range units {
		if err := r.read(u); err != nil {
			t.Errorf("unit %d after the replug: %v", u, err)
		}
	}
}

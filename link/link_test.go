package link

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

func TestOnlineAndReading(t *testing.T) {
	r := newRig(t, rigOptions{})
	st := r.waitState(Online, CauseNone)
	if st.Device == "" || st.Reconnects != 0 {
		t.Fatalf("status %+v", st)
	}
	reading := r.mustRead()
	if v, ok := reading.Get("voltage_l1_n"); !ok || v < 200 || v > 260 {
		t.Fatalf("voltage %v", v)
	}
	if id := r.meter.Identity(); id.Serial != "235411W" || !id.FineEnergy {
		t.Fatalf("identity %+v", id)
	}
}

func TestSnapshotTakesThePlannedRequests(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.sim.ResetRequests()
	r.mustRead()
	if n := len(r.sim.Requests()); n != 3 {
		t.Fatalf("a snapshot took %d requests, want 3 (two blocks of 0000h–0051h and the 3-decimal totals)", n)
	}
}

// The meter may ignore a query that comes less than 40 ms after its reply: no
// request ever does. (A lower bound only: a slow machine can only widen gaps.)
func TestRequestsKeepTheMetersGap(t *testing.T) {
	const gap = 40 * time.Millisecond
	r := newRig(t, rigOptions{cfg: Config{MinGap: gap}})
	r.waitState(Online, CauseNone)
	r.sim.ResetRequests()
	r.mustRead()
	r.mustRead()
	reqs := r.sim.Requests()
	if len(reqs) != 6 {
		t.Fatalf("%d requests for two snapshots, want 6", len(reqs))
	}
	for i := 1; i < len(reqs); i++ {
		if d := reqs[i].Time.Sub(reqs[i-1].Time); d < gap {
			t.Errorf("request %d came %s after the previous one, less than the meter's %s", i, d, gap)
		}
	}
}

// forLayouts runs an unplug test with each path a user may configure, in
// tree mode: the node itself and the by-id link, as udev lays them out.
func forLayouts(t *testing.T, test func(t *testing.T, l layout)) {
	for _, l := range unplugLayouts {
		t.Run(string(l), func(t *testing.T) { test(t, l) })
	}
}

// Case 1: unplug for a while, replug.
func TestUnplugReplug(t *testing.T) {
	forLayouts(t, func(t *testing.T, l layout) {
		r := newRig(t, rigOptions{layout: l})
		r.waitState(Online, CauseNone)
		r.mustRead()
		st := r.unplug()
		if _, err := r.read(); !errors.Is(err, ErrNotOnline) {
			t.Fatalf("read while unplugged: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
		r.replug()
		on := r.waitState(Online, CauseNone)
		if on.Reconnects != 1 || on.LastOutage < 300*time.Millisecond || on.LastOutage > hangGuard {
			t.Fatalf("after replug %+v (lost at %v)", on, st.Since)
		}
		r.mustRead()
	})
}

// Only the directory watch can bring the link back: the backoff's next
// attempt is a minute away, beyond the hang guard. This is what a by-id path
// missed when udev deleted and re-created /dev/serial/by-id.
func TestReplugIsSeenByTheWatch(t *testing.T) {
	forLayouts(t, func(t *testing.T, l layout) {
		b := ReconnectBackoff{Min: time.Minute, Max: time.Hour, Factor: 2}
		r := newRig(t, rigOptions{layout: l, cfg: Config{Backoff: b}})
		r.waitState(Online, CauseNone)
		for i := 0; i < 3; i++ {
			r.unplug()
			time.Sleep(50 * time.Millisecond) // let the attempt made at the loss fail
			r.replug()
			if on := r.waitState(Online, CauseNone); on.Reconnects != i+1 {
				t.Fatalf("cycle %d: %+v", i, on)
			}
			r.mustRead()
		}
	})
}

// Case 2: a long outage with the backoff at its cap; the replug is used at once.
func TestLongOutageResumesAtReplugNotAtNextBackoffTick(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 8 s")
	}
	forLayouts(t, func(t *testing.T, l layout) {
		b := ReconnectBackoff{Min: 100 * time.Millisecond, Max: 5 * time.Second, Factor: 2}
		r := newRig(t, rigOptions{layout: l, cfg: Config{Backoff: b}})
		r.waitState(Online, CauseNone)
		lost := r.unplug()
		// Attempts at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s, then every 5 s: at 7 s the
		// next attempt is 4.3 s away.
		time.Sleep(7*time.Second - time.Since(lost.Since))
		replug := time.Now()
		r.replug()
		on := r.waitState(Online, CauseNone)
		r.mustRead()
		resumed := time.Since(replug)
		nextTick := 11300*time.Millisecond - replug.Sub(lost.Since)
		if resumed > nextTick/2 {
			t.Fatalf("resumed %s after replug; the pending backoff tick was %s away", resumed, nextTick)
		}
		t.Logf("resumed %s after replug (backoff would have waited %s); outage %s", resumed, nextTick, on.LastOutage)
	})
}

// Case 3: rapid unplug/replug cycles. By-id only: a fixed ttyUSB0 path does
// not come back from a replug made while the old fd is still held (the kernel
// names it ttyUSB1; REAL-KERNEL-FACTS.md), and rapid cycles make exactly that.
func TestRapidUnplugReplug(t *testing.T) {
	r := newRig(t, rigOptions{layout: byIDPath, pace: emsim.Pace{Remove: -1, Chmod: -1, Links: -1}})
	r.waitState(Online, CauseNone)
	for i := 0; i < 6; i++ {
		if err := r.sim.ReplugAfter(time.Duration(i) * 7 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(hangGuard)
	for {
		if _, err := r.read(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reading after rapid cycles; status %+v", r.link.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.link.Status(); st.State != Online || st.Reconnects < 1 {
		t.Fatalf("status %+v", st)
	}
}

// Case 4: unplug while a request is in flight: the request ends at once with
// an adapter-gone error, without spinning a core until its timeout (a hung-up
// tty reads 0 bytes at once, forever).
func TestUnplugWithRequestInFlight(t *testing.T) {
	forLayouts(t, func(t *testing.T, l layout) {
		const timeout = 3 * time.Second
		r := newRig(t, rigOptions{layout: l, timeout: timeout})
		r.waitState(Online, CauseNone)
		r.sim.Slow(2 * time.Second)
		errs := make(chan error, 1)
		go func() { _, err := r.read(); errs <- err }()
		time.Sleep(100 * time.Millisecond)
		before := cpuTime(t)
		unplugged := time.Now()
		if err := r.sim.Unplug(); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-errs:
		case <-time.After(hangGuard):
			t.Fatal("the request in flight at unplug never returned")
		}
		if !isAdapterGone(err) {
			t.Fatalf("the request in flight at unplug returned %v, want an adapter-gone error", err)
		}
		r.waitState(Reconnecting, CauseAdapterMissing)
		// Stay in the outage for as long as a spinning reader would have spun.
		time.Sleep(time.Until(unplugged.Add(1500 * time.Millisecond)))
		if used := cpuTime(t) - before; used > 700*time.Millisecond {
			t.Errorf("the process used %s of CPU in a 1.5 s outage: a reader spins", used)
		}
		r.sim.ClearFaults()
		r.replug()
		r.waitState(Online, CauseNone)
		r.mustRead()
	})
}

// cpuTime is the user and system time this process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Case 5: the adapter returns as ttyUSB1 because ttyUSB0 is still held (here
// by the test); the by-id path follows it.
func TestAdapterReturnsUnderAnotherName(t *testing.T) {
	r := newRig(t, rigOptions{layout: byIDPath})
	first := r.waitState(Online, CauseNone)
	held, err := os.OpenFile(r.sim.NodePath(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := r.sim.Unplug(); err != nil { // not r.unplug: the test itself holds the node
		t.Fatal(err)
	}
	r.waitState(Reconnecting, CauseAdapterMissing)
	r.replug()
	if base := filepath.Base(r.sim.NodePath()); base != "ttyUSB1" {
		t.Fatalf("replugged as %s while ttyUSB0 was held, want ttyUSB1", base)
	}
	on := r.waitState(Online, CauseNone)
	if on.Device == first.Device || on.Device != r.sim.Device() {
		t.Fatalf("device %q, first %q, sim %q", on.Device, first.Device, r.sim.Device())
	}
	r.mustRead()
}

// Case 6: the meter goes mute while the adapter stays.
func TestMeterMute(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.sim.Mute(true)
	for i := 0; i < 3; i++ { // the poller keeps trying; a run of timeouts means mute
		_, _ = r.read()
	}
	r.waitState(Reconnecting, CauseMeterSilent)
	r.sim.Mute(false)
	r.waitState(Online, CauseNone)
	r.mustRead()
}

// A meter that answers, but with frames of the wrong length, fails every
// snapshot without a single unanswered request: a run of failed snapshots
// counts as the meter not answering.
func TestFailedSnapshotsMeanMeterSilent(t *testing.T) {
	r := newRig(t, rigOptions{cfg: Config{MaxNoAnswer: 100}})
	r.waitState(Online, CauseNone)
	r.sim.WrongLengthNext(1000, 1)
	for i := 0; i < 3; i++ {
		if _, err := r.read(); !errors.Is(err, modbus.ErrProtocolError) {
			t.Fatalf("snapshot %d with wrong-length replies: %v, want a protocol error", i, err)
		}
	}
	r.waitState(Reconnecting, CauseMeterSilent)
	r.sim.ClearFaults()
	r.waitState(Online, CauseNone)
	r.mustRead()
}

// A reply that comes after its request timed out never answers the next one,
// even a request of the same length (whose checks it would pass), and the
// link recovers within a few snapshots.
func TestLateReplyNeverAnswersTheNextRequest(t *testing.T) {
	r := newRig(t, rigOptions{simOpt: emsim.Options{Static: true, FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB}})
	r.waitState(Online, CauseNone)
	const qty = 10
	read := func(addr uint16) (words []uint16, err error) {
		err = r.link.Do(context.Background(), 1, func(rd meter.Reader) error {
			words, err = rd.ReadRegisters(context.Background(), addr, qty)
			return err
		})
		return words, err
	}
	wantB, err := read(qty)
	if err != nil {
		t.Fatal(err)
	}
	r.mustRead() // the meter confirms its totals from the second snapshot on
	want := r.mustRead()
	r.sim.LateNext(1, 400*time.Millisecond) // after the 300 ms timeout, inside the 500 ms answer window
	err = r.link.Do(context.Background(), 1, func(rd meter.Reader) error {
		if _, err := rd.ReadRegisters(context.Background(), 0, qty); !errors.Is(err, modbus.ErrRequestTimedOut) {
			t.Errorf("late reply: %v, want a timeout", err)
		}
		gotB, err := rd.ReadRegisters(context.Background(), qty, qty)
		if err == nil && !slices.Equal(gotB, wantB) {
			t.Errorf("the request after a late reply read %v, want %v: another request's reply", gotB, wantB)
		}
		return err
	})
	if err != nil {
		t.Logf("the request after the late reply failed: %v", err)
	}
	var ok int
	for i := 0; i < 4 && ok < 2; i++ {
		got, err := r.read()
		if err != nil {
			continue
		}
		ok++
		if !sameValues(got, want) {
			t.Fatalf("snapshot %d differs from the one before the fault", i)
		}
	}
	if ok < 2 {
		t.Fatalf("%d of 4 snapshots after a late reply succeeded", ok)
	}
	if st := r.link.Status(); st.State != Online {
		t.Fatalf("status %+v", st)
	}
}

func sameValues(a, b meter.Reading) bool {
	if len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		if a.Values[i].Register.Key != b.Values[i].Register.Key || a.Values[i].Value != b.Values[i].Value {
			return false
		}
	}
	return true
}

// Case 7: the node exists but cannot be opened. Root ignores file modes, so the
// open fails at the seam where the port is opened.
func TestOpenDenied(t *testing.T) {
	eacces := &fs.PathError{Op: "open", Err: syscall.EACCES}
	eperm := &fs.PathError{Op: "open", Err: syscall.EPERM}
	tests := []struct {
		name    string
		err     error
		denyFor time.Duration
		backoff ReconnectBackoff
		shown   Cause  // the cause published while denied; "" none
		detail  string // in the detail of shown
	}{
		// udev's chmod ~90 ms after the node: retried at once, never published.
		// The backoff's second attempt is a minute away: only the grace's cap retries in time.
		{"brief EACCES", eacces, 300 * time.Millisecond, ReconnectBackoff{Min: time.Minute, Max: time.Hour, Factor: 2}, "", ""},
		{"lasting EACCES", eacces, 1500 * time.Millisecond, ReconnectBackoff{}, CausePermissionDenied, "permission denied"},
		{"EPERM from device rules", eperm, 300 * time.Millisecond, ReconnectBackoff{}, CauseDeviceNotAllowed, "container's device rules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var denied atomic.Int32
			var until atomic.Int64
			until.Store(time.Now().Add(time.Hour).UnixNano())
			open := func(_ context.Context, path string, s Serial) (port, error) {
				if time.Now().UnixNano() < until.Load() {
					denied.Add(1)
					return nil, tt.err
				}
				return openRTU(path, s, sysfs{}, slog.New(slog.DiscardHandler))
			}
			r := newRig(t, rigOptions{cfg: Config{open: open, Backoff: tt.backoff}})
			until.Store(time.Now().Add(tt.denyFor).UnixNano())
			var causes []Cause
			deadline := time.After(hangGuard)
			for on := false; !on; {
				select {
				case s := <-r.states:
					if s.State == Online {
						on = true
						break
					}
					causes = append(causes, s.Cause)
					if tt.shown != "" && s.Cause == tt.shown && !strings.Contains(s.Detail, tt.detail) {
						t.Errorf("detail %q, want it to say %q", s.Detail, tt.detail)
					}
				case <-deadline:
					t.Fatalf("not online within %s; causes %v, now %+v", hangGuard, causes, r.link.Status())
				}
			}
			if tt.shown == "" && (slices.Contains(causes, CausePermissionDenied) || slices.Contains(causes, CauseDeviceNotAllowed)) {
				t.Errorf("causes %v: a brief denial was published", causes)
			}
			if tt.shown != "" && !slices.Contains(causes, tt.shown) {
				t.Errorf("causes %v, want %q", causes, tt.shown)
			}
			if denied.Load() < 2 {
				t.Errorf("%d denied opens: the denial was not retried", denied.Load())
			}
			r.mustRead()
		})
	}
}

// Case 8: offline after OfflineAfter, and back to online on replug.
func TestOfflineAfter(t *testing.T) {
	forLayouts(t, func(t *testing.T, l layout) {
		r := newRig(t, rigOptions{layout: l, cfg: Config{OfflineAfter: 300 * time.Millisecond}})
		r.waitState(Online, CauseNone)
		lost := r.unplug()
		off := r.waitState(Offline, CauseAdapterMissing)
		if d := off.Since.Sub(lost.Since); d < 300*time.Millisecond {
			t.Fatalf("offline %s after the loss, before OfflineAfter", d)
		}
		r.replug()
		r.waitState(Online, CauseNone)
		r.mustRead()
	})
}

// A different meter answering after a replug is said, not silently mixed.
func TestWrongMeter(t *testing.T) {
	forLayouts(t, func(t *testing.T, l layout) {
		r := newRig(t, rigOptions{layout: l})
		r.waitState(Online, CauseNone)
		r.mustRead()
		r.unplug()
		r.sim.SetSerial("999999X")
		r.replug()
		st := r.waitState(Online, CauseWrongMeter)
		if !strings.Contains(st.Detail, "999999X") || !strings.Contains(st.Detail, "235411W") {
			t.Fatalf("status %+v", st)
		}
		if r.meter.Identity().Serial != "999999X" {
			t.Fatalf("identity %+v", r.meter.Identity())
		}
	})
}

// Case 9: 200 unplug/replug cycles leave no goroutine or file-descriptor
// growth. udev's order is kept, its pauses taken out.
func TestNoLeaksOver200Cycles(t *testing.T) {
	if testing.Short() {
		t.Skip("200 cycles")
	}
	forLayouts(t, func(t *testing.T, l layout) {
		r := newRig(t, rigOptions{layout: l, pace: emsim.Pace{Remove: -1, Chmod: -1, Links: -1}})
		r.waitState(Online, CauseNone)
		r.mustRead()
		cycle := func() {
			r.unplug()
			r.replug()
			r.waitState(Online, CauseNone)
		}
		for i := 0; i < 10; i++ { // warm up: lazily started runtime goroutines, fd tables
			cycle()
		}
		r.mustRead()
		fds, goroutines := openFDs(t), settledGoroutines(0)
		for i := 0; i < 200; i++ {
			cycle()
		}
		r.mustRead()
		if n := settledGoroutines(goroutines); n > goroutines+2 {
			t.Errorf("goroutines grew from %d to %d over 200 cycles", goroutines, n)
		}
		if n := openFDs(t); n > fds+2 {
			t.Errorf("open files grew from %d to %d over 200 cycles", fds, n)
		}
		if st := r.link.Status(); st.Reconnects < 210 {
			t.Errorf("reconnects %d", st.Reconnects)
		}
	})
}

// Run returns promptly on cancel and closes the port.
func TestRunStopsOnCancel(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.stop()
	if err := r.link.Do(context.Background(), 1, func(meter.Reader) error { return nil }); !errors.Is(err, ErrNotOnline) {
		t.Fatalf("Do after Run returned: %v", err)
	}
}

// A cancelled ctx ends a request in flight at once, whatever the timeout: a
// SIGTERM during a request must not wait for it.
func TestCancelEndsRequestInFlight(t *testing.T) {
	r := newRig(t, rigOptions{timeout: time.Minute})
	r.waitState(Online, CauseNone)
	r.sim.Mute(true)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() {
		errs <- r.link.Do(ctx, 1, func(rd meter.Reader) error { _, err := r.meter.Read(ctx, rd); return err })
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled request returned %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("a cancelled request with a one-minute timeout did not return")
	}
	r.stop()
}

package link

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
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

// Case 1: unplug for a while, replug.
func TestUnplugReplug(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.mustRead()
	if err := r.sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	st := r.waitState(Reconnecting, CauseAdapterMissing)
	if _, err := r.read(); !errors.Is(err, ErrNotOnline) {
		t.Fatalf("read while unplugged: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := r.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	on := r.waitState(Online, CauseNone)
	if on.Reconnects != 1 || on.LastOutage < 300*time.Millisecond || on.LastOutage > hangGuard {
		t.Fatalf("after replug %+v (lost at %v)", on, st.Since)
	}
	r.mustRead()
}

// Case 2: a long outage with the backoff at its cap; the replug is used at once.
func TestLongOutageResumesAtReplugNotAtNextBackoffTick(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 8 s")
	}
	b := ReconnectBackoff{Min: 100 * time.Millisecond, Max: 5 * time.Second, Factor: 2}
	r := newRig(t, rigOptions{cfg: Config{Backoff: b}})
	r.waitState(Online, CauseNone)
	if err := r.sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	lost := r.waitState(Reconnecting, CauseAdapterMissing)
	// Attempts at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s, then every 5 s: at 7 s the
	// next attempt is 4.3 s away.
	time.Sleep(7*time.Second - time.Since(lost.Since))
	replug := time.Now()
	if err := r.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	on := r.waitState(Online, CauseNone)
	r.mustRead()
	resumed := time.Since(replug)
	nextTick := 11300*time.Millisecond - replug.Sub(lost.Since)
	if resumed > nextTick/2 {
		t.Fatalf("resumed %s after replug; the pending backoff tick was %s away", resumed, nextTick)
	}
	t.Logf("resumed %s after replug (backoff would have waited %s); outage %s", resumed, nextTick, on.LastOutage)
}

// Case 3: rapid unplug/replug cycles.
func TestRapidUnplugReplug(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	for i := 0; i < 6; i++ {
		if err := r.sim.Unplug(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * 7 * time.Millisecond)
		if err := r.sim.Replug(); err != nil {
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

// Case 4: unplug while a request is in flight: it ends as a timeout, which the
// link must read as the adapter missing, not the meter mute.
func TestUnplugWithRequestInFlight(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.sim.Slow(250 * time.Millisecond)
	errs := make(chan error, 1)
	go func() { _, err := r.read(); errs <- err }()
	time.Sleep(60 * time.Millisecond)
	if err := r.sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	r.waitState(Reconnecting, CauseAdapterMissing)
	if err := <-errs; err == nil {
		t.Fatal("the snapshot in flight at unplug succeeded")
	}
	r.sim.ClearFaults()
	if err := r.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	r.waitState(Online, CauseNone)
	r.mustRead()
}

// Case 5: the adapter returns under another tty; the by-id path follows it.
func TestAdapterReturnsUnderAnotherName(t *testing.T) {
	r := newRig(t, rigOptions{device: "serial/by-id/usb-FTDI_FT232R_USB_UART_A10KZ3P1-if00-port0"})
	first := r.waitState(Online, CauseNone)
	if err := r.sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	r.waitState(Reconnecting, CauseAdapterMissing)
	ttyUSB1 := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(r.path))), "ttyUSB1")
	if err := r.sim.ReplugAs(ttyUSB1); err != nil {
		t.Fatal(err)
	}
	on := r.waitState(Online, CauseNone)
	if on.Device == first.Device && on.Device == "" {
		t.Fatalf("device %q", on.Device)
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

// Case 7: the node exists but cannot be opened. Root ignores file modes, so the
// open fails with EACCES at the seam where the port is opened.
func TestPermissionDenied(t *testing.T) {
	var denied atomic.Int32
	denied.Store(4)
	open := func(path string, s Serial, log *slog.Logger) (port, error) {
		if denied.Add(-1) >= 0 {
			return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
		}
		return openModbus(path, s, log)
	}
	r := newRig(t, rigOptions{cfg: Config{open: open}})
	st := r.waitState(Reconnecting, CausePermissionDenied)
	if st.Detail == "" {
		t.Fatal("no detail")
	}
	r.waitState(Online, CauseNone) // retries went on and succeeded
	r.mustRead()
}

// Case 8: offline after OfflineAfter, and back to online on replug.
func TestOfflineAfter(t *testing.T) {
	r := newRig(t, rigOptions{cfg: Config{OfflineAfter: 300 * time.Millisecond}})
	r.waitState(Online, CauseNone)
	if err := r.sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	lost := r.waitState(Reconnecting, CauseAdapterMissing)
	off := r.waitState(Offline, CauseAdapterMissing)
	if d := off.Since.Sub(lost.Since); d < 300*time.Millisecond {
		t.Fatalf("offline %s after the loss, before OfflineAfter", d)
	}
	if err := r.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	r.waitState(Online, CauseNone)
	r.mustRead()
}

// A different meter answering after a replug is said, not silently mixed.
func TestWrongMeter(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.mustRead()
	if err := r.sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	r.sim.SetSerial("999999X")
	if err := r.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	st := r.waitState(Online, CauseWrongMeter)
	if !strings.Contains(st.Detail, "999999X") || !strings.Contains(st.Detail, "235411W") {
		t.Fatalf("status %+v", st)
	}
	if r.meter.Identity().Serial != "999999X" {
		t.Fatalf("identity %+v", r.meter.Identity())
	}
}

// Case 9: 200 unplug/replug cycles leave no goroutine or file-descriptor growth.
func TestNoLeaksOver200Cycles(t *testing.T) {
	if testing.Short() {
		t.Skip("200 cycles")
	}
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.mustRead()
	cycle := func() {
		if err := r.sim.Unplug(); err != nil {
			t.Fatal(err)
		}
		r.waitState(Reconnecting, CauseAdapterMissing)
		if err := r.sim.Replug(); err != nil {
			t.Fatal(err)
		}
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
}

// Run returns promptly on cancel and closes the port.
func TestRunStopsOnCancel(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.waitState(Online, CauseNone)
	r.stop()
	if err := r.link.Do(context.Background(), func(meter.Reader) error { return nil }); !errors.Is(err, ErrNotOnline) {
		t.Fatalf("Do after Run returned: %v", err)
	}
}

package emsim

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

func pathGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s still there after unplug: %v", path, err)
	}
}

func TestUnplugIdle(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	c := dial(t, path, testTimeout)
	mustRead(t, c, 0, 2)
	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	pathGone(t, path)
	if s.Device() != "" {
		t.Fatalf("Device() = %q while unplugged", s.Device())
	}
	if _, err := c.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read after unplug: %v, want EIO", err)
	}
	if _, err := openClient(path, testTimeout); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open while unplugged: %v, want ENOENT", err)
	}
	if err := s.Unplug(); err != nil { // twice is harmless
		t.Fatal(err)
	}
}

func TestReplug(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	old := dial(t, path, testTimeout)
	mustRead(t, old, 0, 2)
	before := s.Device()
	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(path); err != nil || target != s.Device() {
		t.Fatalf("%s → %q (%v), want %s", path, target, err, s.Device())
	}
	if s.Device() == before { // the old client still holds the old pts
		t.Fatalf("replugged at the same %s while the old one is held", before)
	}
	fresh := dial(t, path, testTimeout)
	mustRead(t, fresh, 0, 2)
	if _, err := old.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !errors.Is(err, syscall.EIO) {
		t.Fatalf("old client after replug: %v, want EIO", err)
	}
	// Replug while plugged: a quick unplug and plug.
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !errors.Is(err, syscall.EIO) {
		t.Fatalf("client across a quick replug: %v, want EIO", err)
	}
	mustRead(t, dial(t, path, testTimeout), 0, 2)
}

func TestReplugAs(t *testing.T) {
	dir := t.TempDir()
	byID := filepath.Join(dir, "by-id", "usb-FTDI_FT232R_USB_UART_A10K4ZB0-if00-port0")
	if err := os.Mkdir(filepath.Dir(byID), 0o755); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Static: true})
	if err := s.Start(byID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	old := dial(t, byID, testTimeout)
	mustRead(t, old, 0, 2)

	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	pathGone(t, byID)
	usb1 := filepath.Join(dir, "ttyUSB1")
	if err := s.ReplugAs(usb1); err != nil {
		t.Fatal(err)
	}
	checkLinks := func() {
		t.Helper()
		if target, err := os.Readlink(byID); err != nil || target != "../ttyUSB1" {
			t.Fatalf("%s → %q (%v), want ../ttyUSB1", byID, target, err)
		}
		if real, err := filepath.EvalSymlinks(byID); err != nil || real != s.Device() {
			t.Fatalf("%s resolves to %q (%v), want %s", byID, real, err, s.Device())
		}
	}
	checkLinks()
	mustRead(t, dial(t, byID, testTimeout), 0, 2)
	mustRead(t, dial(t, usb1, testTimeout), 0, 2)
	if _, err := old.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !errors.Is(err, syscall.EIO) {
		t.Fatalf("old client: %v, want EIO", err)
	}

	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	pathGone(t, byID)
	pathGone(t, usb1)
	if err := s.Replug(); err != nil { // comes back as ttyUSB1
		t.Fatal(err)
	}
	checkLinks()
	if s.Path() != byID {
		t.Fatalf("Path() = %s", s.Path())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	pathGone(t, byID)
	pathGone(t, usb1)
}

// Unplugged while the client waits for a reply: simonvetter notices only when
// its timeout expires, and gets EIO on the next request.
func TestUnplugInFlight(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	c := dial(t, path, testTimeout)
	s.Slow(5 * time.Second) // the meter is still "thinking" when the adapter goes
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadRegisters(0, 2, modbus.HOLDING_REGISTER)
		errc <- err
	}()
	if !waitFor(time.Second, func() bool { return len(s.Requests()) == 1 }) {
		t.Fatal("request never arrived")
	}
	start := time.Now()
	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("unplug took %v: it waited for the delayed reply", d)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, modbus.ErrRequestTimedOut) {
			t.Fatalf("in-flight request: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request hangs")
	}
	if _, err := c.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !errors.Is(err, syscall.EIO) {
		t.Fatalf("next request: %v, want EIO", err)
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	taken := filepath.Join(dir, "taken")
	if err := os.WriteFile(taken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	if err := s.Start(taken); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("start on an existing file: %v", err)
	}
	if err := s.Start(filepath.Join(dir, "missing", "ttyUSB0")); err == nil {
		t.Fatal("start in a missing directory succeeded")
	}
	if err := s.Replug(); err == nil {
		t.Fatal("replug before start succeeded")
	}
	path := filepath.Join(dir, "ttyUSB0")
	if err := s.Start(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(path); err == nil {
		t.Fatal("second start succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := s.Replug(); err == nil {
		t.Fatal("replug after close succeeded")
	}
	if _, err := os.Stat(taken); err != nil {
		t.Fatalf("a file the simulator did not make was touched: %v", err)
	}
}

// Close leaves no goroutine and no fd behind, after many unplug/replug cycles
// with clients coming and going.
func TestNoLeaks(t *testing.T) {
	warm, path := startSim(t, Options{}) // the runtime poller and the like set up once
	c, err := openClient(path, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, 0, 2)
	_ = c.Close()
	_ = warm.Close()
	baseG, baseFD := goroutines(), openFDs(t)

	s := New(Options{})
	path = filepath.Join(t.TempDir(), "ttyUSB0")
	if err := s.Start(path); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if i%10 == 0 {
			c, err := openClient(path, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadRegisters(0, 50, modbus.HOLDING_REGISTER); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			_ = c.Close()
		}
		if err := s.Unplug(); err != nil {
			t.Fatal(err)
		}
		if err := s.Replug(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(2*time.Second, func() bool { return goroutines() <= baseG+1 }) {
		t.Errorf("goroutines: %d after, %d before", goroutines(), baseG)
	}
	if fds := openFDs(t); fds != baseFD {
		t.Errorf("open fds: %d after, %d before", fds, baseFD)
	}
	pathGone(t, path)
}

// Unplug, replug, faults and values from other goroutines while a client
// polls: no race, no deadlock, and the meter answers at the end.
func TestConcurrentControl(t *testing.T) {
	s, path := startSim(t, Options{TimeScale: 60, FineEnergy: true})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // a client that reconnects like a bridge
		defer wg.Done()
		var c *modbus.ModbusClient
		defer func() {
			if c != nil {
				_ = c.Close()
			}
		}()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c == nil {
				var err error
				if c, err = openClient(path, 50*time.Millisecond); err != nil {
					c = nil
					time.Sleep(5 * time.Millisecond)
					continue
				}
			}
			if _, err := c.ReadRegisters(0, 50, modbus.HOLDING_REGISTER); errors.Is(err, syscall.EIO) {
				_ = c.Close()
				c = nil
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 15 {
			_ = s.Unplug()
			time.Sleep(5 * time.Millisecond)
			_ = s.Replug()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.Mute(i%7 == 0)
			s.CorruptCRC(i % 2)
			_ = s.Sentinel("power")
			s.ClearSentinel()
			_ = s.Set("voltage_l1_n", 230+float64(i%10))
			_ = s.Value("energy_import")
			_ = s.Requests()
			_ = s.Device()
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(600 * time.Millisecond)
	close(stop)
	wg.Wait()
	s.ClearFaults()
	_ = s.Replug()
	mustRead(t, dial(t, path, testTimeout), 0, 50)
}

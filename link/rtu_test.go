package link

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// plugSim plugs a simulated EM340 in on a pty and returns it and its node.
func plugSim(t *testing.T) (*emsim.Sim, string) {
	t.Helper()
	sim := emsim.New(emsim.Options{Static: true})
	path := filepath.Join(t.TempDir(), "ttyUSB0")
	if err := sim.Start(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim, path
}

// openSim plugs a simulated EM340 in on a pty and opens the transport on it.
func openSim(t *testing.T, s Serial) (*emsim.Sim, *rtuPort) {
	t.Helper()
	sim, path := plugSim(t)
	if s.Baud == 0 {
		s = Serial{Baud: 115200, Parity: "none", StopBits: 1, Timeout: 300 * time.Millisecond}
	}
	p, err := openRTU(path, s, sysfs{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return sim, p.(*rtuPort)
}

// Every reply that is not exactly what was asked is an error, never data, and
// the request after it reads its own reply.
func TestRTUValidatesReplies(t *testing.T) {
	const addr, qty = 0x0000, 10
	tests := []struct {
		name  string
		fault func(*emsim.Sim)
		want  error // nil: the right words
	}{
		{"good reply", func(*emsim.Sim) {}, nil},
		{"one register too many", func(s *emsim.Sim) { s.WrongLengthNext(1, 1) }, modbus.ErrProtocolError},
		{"one register too few", func(s *emsim.Sim) { s.WrongLengthNext(1, -1) }, modbus.ErrProtocolError},
		{"bad CRC", func(s *emsim.Sim) { s.CorruptCRC(1) }, modbus.ErrBadCRC},
		{"exception 02", func(s *emsim.Sim) { s.ExceptionNext(0x02, 1) }, modbus.ErrIllegalDataAddress},
		{"exception 03", func(s *emsim.Sim) { s.ExceptionNext(0x03, 1) }, modbus.ErrIllegalDataValue},
		{"exception 04", func(s *emsim.Sim) { s.ExceptionNext(0x04, 1) }, modbus.ErrServerDeviceFailure},
		{"mute", func(s *emsim.Sim) { s.Mute(true) }, modbus.ErrRequestTimedOut},
		{"late reply", func(s *emsim.Sim) { s.LateNext(1, 400*time.Millisecond) }, modbus.ErrRequestTimedOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, p := openSim(t, Serial{})
			ctx := context.Background()
			want, err := p.ReadRegisters(ctx, 1, addr, qty)
			if err != nil || len(want) != qty {
				t.Fatalf("reference read: %v, %d words", err, len(want))
			}
			tt.fault(sim)
			got, err := p.ReadRegisters(ctx, 1, addr, qty)
			switch {
			case tt.want == nil && (err != nil || !slices.Equal(got, want)):
				t.Fatalf("got %v, %v; want %v", got, err, want)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("got %v, %v; want error %v", got, err, tt.want)
			case tt.want != nil && got != nil:
				t.Fatalf("an error reply gave data %v", got)
			}
			sim.ClearFaults()
			// Another request of the same length: a stale reply would pass its checks.
			after, err := p.ReadRegisters(ctx, 1, addr+qty, qty)
			if err != nil {
				t.Fatalf("request after the fault: %v", err)
			}
			sim.ResetRequests()
			again, err := p.ReadRegisters(ctx, 1, addr+qty, qty)
			if err != nil || !slices.Equal(after, again) {
				t.Fatalf("request after the fault read %v, a fresh one %v (%v)", after, again, err)
			}
		})
	}
}

func TestRTUGarbageIsNeverData(t *testing.T) {
	sim, p := openSim(t, Serial{})
	ctx := context.Background()
	want, err := p.ReadRegisters(ctx, 1, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		sim.Garbage(1)
		if got, err := p.ReadRegisters(ctx, 1, 0, 10); err == nil {
			t.Fatalf("garbage %d read as data %v", i, got)
		}
	}
	if got, err := p.ReadRegisters(ctx, 1, 0, 10); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after garbage: %v, %v", got, err)
	}
}

// A reply from another unit is an error (the simulator answers only its own
// address, so the request goes unanswered).
func TestRTUOtherUnit(t *testing.T) {
	_, p := openSim(t, Serial{Baud: 115200, Parity: "none", StopBits: 1, Timeout: 200 * time.Millisecond})
	if _, err := p.ReadRegisters(context.Background(), 7, 0, 1); !isNoAnswer(err) {
		t.Fatalf("request to unit 7: %v", err)
	}
}

// Cancelling ctx or closing the port ends a request in flight, whatever the timeout.
func TestRTURequestEndsOnCancelAndClose(t *testing.T) {
	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			sim, p := openSim(t, Serial{Baud: 115200, Parity: "none", StopBits: 1, Timeout: time.Minute})
			sim.Mute(true)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errs := make(chan error, 1)
			go func() { _, err := p.ReadRegisters(ctx, 1, 0, 1); errs <- err }()
			time.Sleep(50 * time.Millisecond)
			want := context.Canceled
			if how == "cancel" {
				cancel()
			} else {
				want = nil
				go p.Close()
			}
			select {
			case err := <-errs:
				if want != nil && !errors.Is(err, want) || want == nil && !isAdapterGone(err) {
					t.Fatalf("request ended with %v", err)
				}
			case <-time.After(hangGuard):
				t.Fatal("a request with a one-minute timeout did not end")
			}
		})
	}
}

func TestRTUUnplugEndsRequestAsAdapterGone(t *testing.T) {
	sim, p := openSim(t, Serial{Baud: 115200, Parity: "none", StopBits: 1, Timeout: time.Minute})
	sim.Mute(true)
	errs := make(chan error, 1)
	go func() { _, err := p.ReadRegisters(context.Background(), 1, 0, 1); errs <- err }()
	time.Sleep(50 * time.Millisecond)
	if err := sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !isAdapterGone(err) {
			t.Fatalf("request in flight at unplug: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("a request in flight at unplug did not end")
	}
	if _, err := p.ReadRegisters(context.Background(), 1, 0, 1); !isAdapterGone(err) {
		t.Fatalf("request after unplug: %v", err)
	}
}

func TestCRC16(t *testing.T) {
	// The example frame of the Modbus over serial line guide: 01 03 00 00 00 0A → C5 CD.
	got := appendCRC([]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A})
	if !slices.Equal(got[6:], []byte{0xC5, 0xCD}) || !checkCRC(got) {
		t.Fatalf("crc % X", got)
	}
}

package emsim

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

// Each reply-level fault spoils what it should and the meter is fine afterwards.
func TestReplyFaults(t *testing.T) {
	tests := []struct {
		name    string
		inject  func(*Sim)
		check   func(error) bool
		outcome Outcome
	}{
		{"exception 04", func(s *Sim) { s.ExceptionNext(0x04, 2) },
			func(err error) bool { return errors.Is(err, modbus.ErrServerDeviceFailure) }, OutcomeException},
		{"bad CRC", func(s *Sim) { s.CorruptCRC(2) },
			func(err error) bool { return errors.Is(err, modbus.ErrBadCRC) }, OutcomeBadCRC},
		{"garbage", func(s *Sim) { s.Garbage(2) },
			func(err error) bool { return err != nil }, OutcomeGarbage},
		{"mute", func(s *Sim) { s.Mute(true) },
			func(err error) bool { return errors.Is(err, modbus.ErrRequestTimedOut) }, OutcomeMuted},
		{"slow beyond the timeout", func(s *Sim) { s.Slow(400 * time.Millisecond) },
			func(err error) bool { return errors.Is(err, modbus.ErrRequestTimedOut) }, OutcomeReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := startSim(t, Options{Static: true})
			c := dial(t, path, 150*time.Millisecond)
			mustRead(t, c, 0, 2)
			tt.inject(s)
			s.ResetRequests()
			if _, err := c.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !tt.check(err) {
				t.Fatalf("read with the fault: %v", err)
			}
			if r := s.Requests(); len(r) != 1 || r[0].Outcome != tt.outcome {
				t.Fatalf("log %+v, want one %v", r, tt.outcome)
			}
			s.ClearFaults()
			if tt.outcome == OutcomeReply { // the late reply is still on its way: let it land, reconnect
				time.Sleep(400 * time.Millisecond)
				_ = c.Close()
				c = dial(t, path, 150*time.Millisecond)
			}
			if got := mustRead(t, c, 0, 2); !slices.Equal(got, []uint16{2300, 0}) {
				t.Fatalf("after the fault: %04X", got)
			}
		})
	}
}

func TestExceptionCountsDown(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	c := dial(t, path, testTimeout)
	s.ExceptionNext(0x04, 2)
	for i := range 2 {
		if _, err := c.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrServerDeviceFailure) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	mustRead(t, c, 0, 2)
}

func TestSlowWithinTimeout(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	c := dial(t, path, 2*time.Second)
	s.Slow(150 * time.Millisecond)
	start := time.Now()
	mustRead(t, c, 0, 2)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("reply after %v, want at least 150ms", d)
	}
}

func TestSentinel(t *testing.T) {
	for _, model := range []uint16{meter.ModelEM340, meter.ModelEM340Sample} {
		s, path := startSim(t, Options{ModelCode: model, Static: true, FineEnergy: true})
		c := dial(t, path, testTimeout)
		if err := s.Sentinel("voltage_l1_n", "energy_import", "power_factor"); err != nil {
			t.Fatal(err)
		}
		pair := []uint16{0xFFFF, 0x7FFF}
		if model == meter.ModelEM340Sample {
			pair = []uint16{0x7FFF, 0xFFFF}
		}
		if got := mustRead(t, c, 0x0000, 4); !slices.Equal(got[:2], pair) || got[2] == 0xFFFF {
			t.Errorf("model %d: V L1-N/L2-N words %04X", model, got)
		}
		if got := mustRead(t, c, register(t, "energy_import").Addr, 2); !slices.Equal(got, pair) {
			t.Errorf("model %d: energy words %04X", model, got)
		}
		if got := mustRead(t, c, 0x0400, 4); !slices.Equal(got, append(pair, pair...)) {
			t.Errorf("model %d: fine energy words %04X", model, got)
		}
		if got := mustRead(t, c, register(t, "power_factor").Addr, 1); got[0] != 0x7FFF {
			t.Errorf("model %d: PF word %04X", model, got[0])
		}
		s.ClearSentinel()
		if got := mustRead(t, c, 0x0000, 2); slices.Equal(got, pair) {
			t.Errorf("model %d: sentinel after ClearSentinel", model)
		}
		if err := s.Sentinel("nope"); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("unknown key: %v", err)
		}
	}
}

func TestGlitchEnergy(t *testing.T) {
	s, path := startSim(t, Options{Static: true, FineEnergy: true})
	c := dial(t, path, testTimeout)
	imp := register(t, "energy_import")
	s.GlitchEnergy(2)
	if got := mustRead(t, c, 0x0000, 50); got[0] == 0 { // no total in 0000h–0031h: not counted
		t.Fatal("values zeroed by the energy glitch")
	}
	low := mustRead(t, c, 0x0032, 32) // first counted read
	if low[imp.Addr-0x0032] != 0 || low[imp.Addr-0x0032+1] != 0 {
		t.Fatalf("energy import reads %04X during the glitch", low[imp.Addr-0x0032:imp.Addr-0x0032+2])
	}
	if low[1] == 0 { // 0033h frequency is no total
		t.Fatal("frequency zeroed by the energy glitch")
	}
	if got := mustRead(t, c, 0x0400, 16); !slices.Equal(got, make([]uint16, 16)) { // second
		t.Fatalf("fine totals %04X during the glitch", got)
	}
	if got := mustRead(t, c, imp.Addr, 2); decodeRaw(meter.Int32, got, false) == 0 {
		t.Fatal("glitch lasted past its count")
	}
}

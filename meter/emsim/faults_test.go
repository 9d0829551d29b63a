package emsim

import (
	"errors"
	"fmt"
	"io"
	"math"
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

// checkTotals checks every register of the table in a read from addr: each
// lifetime total (0.1 register or 3-decimal pair) must decode to want, every
// other value to what a clean read gave.
func checkTotals(t *testing.T, addr uint16, got, clean []uint16, want float64) {
	t.Helper()
	seen := 0
	for _, r := range meter.Registers() {
		if r.Addr >= addr && int(r.Addr)+int(r.Format.Words()) <= int(addr)+len(got) {
			i := r.Addr - addr
			w := got[i : i+r.Format.Words()]
			if !r.Total {
				if !slices.Equal(w, clean[i:i+r.Format.Words()]) {
					t.Errorf("%s reads %04X, clean %04X", r.Key, w, clean[i:i+r.Format.Words()])
				}
				continue
			}
			seen++
			if v := float64(decodeRaw(r.Format, w, false)) / r.Divisor; math.Abs(v-want) > 0.5/r.Divisor {
				t.Errorf("%s reads %v, want %v", r.Key, v, want)
			}
		}
		if r.FineAddr >= addr && int(r.FineAddr)+4 <= int(addr)+len(got) {
			seen++
			i := r.FineAddr - addr
			if v := decodeFine(got[i:i+4], false); math.Abs(v-want) > 0.0005 {
				t.Errorf("%s 3-decimal pair reads %v, want %v", r.Key, v, want)
			}
		}
	}
	if seen == 0 {
		t.Fatalf("no total in %04Xh+%d", addr, len(got))
	}
}

// LowEnergy spoils every total of the next n reads that include one,
// consistently in both resolutions, and nothing else.
func TestLowEnergy(t *testing.T) {
	tests := []struct {
		value   float64
		glitch  bool // set with GlitchEnergy rather than LowEnergy
		outcome Outcome
	}{
		{42.5, false, OutcomeLowEnergy},
		{12000.125, false, OutcomeLowEnergy},
		{0, false, OutcomeZeroEnergy},
		{0, true, OutcomeZeroEnergy},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.value, tt.glitch), func(t *testing.T) {
			s, path := startSim(t, Options{Static: true, FineEnergy: true})
			p := openRaw(t, path)
			cleanLow, cleanFine := p.readWords(0x0032, 32), p.readWords(meter.AddrFineEnergy, 16)
			if tt.glitch {
				s.GlitchEnergy(2)
			} else {
				s.LowEnergy(2, tt.value)
			}
			s.ResetRequests()
			if got := p.readWords(0x0000, 50); got[0] == 0 { // no total: not counted
				t.Fatalf("voltage reads %04X", got[:2])
			}
			checkTotals(t, 0x0032, p.readWords(0x0032, 32), cleanLow, tt.value)
			checkTotals(t, meter.AddrFineEnergy, p.readWords(meter.AddrFineEnergy, 16), cleanFine, tt.value)
			if got := p.readWords(0x0032, 32); !slices.Equal(got, cleanLow) {
				t.Fatalf("after the count: %04X, want %04X", got, cleanLow)
			}
			want := []Outcome{OutcomeReply, tt.outcome, tt.outcome, OutcomeReply}
			if got := outcomes(s); !slices.Equal(got, want) {
				t.Fatalf("outcomes %v, want %v", got, want)
			}
		})
	}
}

// PowerCycle: silence with the adapter present, then totals of 0 for the
// given reads, then totals that kept counting while the meter was off.
func TestPowerCycle(t *testing.T) {
	s, path := startSim(t, Options{FineEnergy: true, TimeScale: 3600}) // a real second is a simulated hour
	p := openRaw(t, path)
	imp := register(t, "energy_import")
	fineImport := func(w []uint16) float64 { return decodeFine(w[imp.FineAddr-meter.AddrFineEnergy:][:4], false) }
	before := fineImport(p.readWords(meter.AddrFineEnergy, 16))

	s.ResetRequests()
	s.PowerCycle(time.Second, 2)
	p.send(readRequest(0x0000, 2))
	p.expectSilence(200 * time.Millisecond)
	if !waitFor(5*time.Second, func() bool {
		p.send(readRequest(0x0000, 2))
		_ = p.f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		buf := make([]byte, 9)
		n, _ := io.ReadFull(p.f, buf)
		return n == len(buf)
	}) {
		t.Fatal("the meter never came back")
	}
	if got := p.readWords(0x0000, 50); got[0] == 0 { // no total: not counted
		t.Fatalf("voltage reads %04X after the power cycle", got[:2])
	}
	for range 2 {
		for i, w := range p.readWords(meter.AddrFineEnergy, 16) {
			if w != 0 {
				t.Fatalf("3-decimal word %d reads %04X while the meter restores its counters", i, w)
			}
		}
	}
	if after := fineImport(p.readWords(meter.AddrFineEnergy, 16)); after <= before {
		t.Fatalf("import %v after the power cycle, %v before: it did not count on", after, before)
	}
	var off, zero, reply int
	for _, o := range outcomes(s) {
		switch o {
		case OutcomePowerOff:
			off++
		case OutcomeZeroEnergy:
			zero++
		case OutcomeReply:
			reply++
		default:
			t.Errorf("outcome %v", o)
		}
	}
	if off < 1 || zero != 2 || reply < 3 {
		t.Fatalf("outcomes %v: %d power-off, %d zero-energy, %d replies", outcomes(s), off, zero, reply)
	}
}

// A late reply arrives while the master waits for the answer to its next
// query, which the busy meter never heard.
func TestLateNext(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	p := openRaw(t, path)
	replyA := frame(0x01, 0x03, 0x04, 0x08, 0xFC, 0x00, 0x00) // 0000h+2: 230.0 V
	p.send(readRequest(0x0002, 2))
	replyB := p.replyFrame()
	s.ResetRequests()
	s.LateNext(1, 600*time.Millisecond)
	p.send(readRequest(0x0000, 2))
	p.expectSilence(150 * time.Millisecond) // the master's timeout
	p.send(readRequest(0x0002, 2))          // its next query
	p.expect(replyA)                        // gets the late answer to the first
	p.expectSilence(200 * time.Millisecond) // and no other
	p.send(readRequest(0x0002, 2))
	p.expect(replyB)
	want := []Outcome{OutcomeLate, OutcomeBusy, OutcomeReply}
	if got := outcomes(s); !slices.Equal(got, want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
	if r := s.Requests(); !r[0].Answered() || r[1].Answered() || r[1].Addr != 0x0002 {
		t.Fatalf("log %+v", r)
	}
}

// WrongLengthNext: well-formed replies of the wrong length, counted only on
// register reads that succeed.
func TestWrongLengthNext(t *testing.T) {
	for _, delta := range []int{2, -1, -4, 200} {
		t.Run(fmt.Sprint(delta), func(t *testing.T) {
			s, path := startSim(t, Options{Static: true})
			p := openRaw(t, path)
			clean := append(p.readWords(0x0000, 50), p.readWords(0x0032, 32)...)
			s.ResetRequests()
			s.WrongLengthNext(2, delta)
			p.send(readRequest(0x6000, 2)) // an exception is no register-read reply: not counted
			if got := p.replyFrame(); got[1] != 0x83 || got[2] != exIllegalAddress {
				t.Fatalf("unreadable address: % X", got)
			}
			n := min(max(4+delta, 0), 125)
			for range 2 {
				got := p.readWords(0x0000, 4)
				if m := min(n, len(clean)); len(got) != n || !slices.Equal(got[:m], clean[:m]) {
					t.Fatalf("%d registers %04X, want %d: %04X…", len(got), got, n, clean[:m])
				}
			}
			if got := p.readWords(0x0000, 4); !slices.Equal(got, clean[:4]) {
				t.Fatalf("after the count: %04X", got)
			}
			want := []Outcome{OutcomeException, OutcomeWrongLength, OutcomeWrongLength, OutcomeReply}
			if got := outcomes(s); !slices.Equal(got, want) {
				t.Fatalf("outcomes %v, want %v", got, want)
			}
		})
	}
}

// ShiftNext: the right length, the registers of another address.
func TestShiftNext(t *testing.T) {
	for _, shift := range []int{2, -2, 40} {
		t.Run(fmt.Sprint(shift), func(t *testing.T) {
			s, path := startSim(t, Options{Static: true})
			p := openRaw(t, path)
			clean := append(p.readWords(0x0000, 50), p.readWords(0x0032, 32)...)
			s.ResetRequests()
			s.ShiftNext(1, shift)
			got := p.readWords(0x0004, 6)
			if !slices.Equal(got, clean[4+shift:][:6]) {
				t.Fatalf("shifted read %04X, want %04X", got, clean[4+shift:][:6])
			}
			if got := p.readWords(0x0004, 6); !slices.Equal(got, clean[4:10]) {
				t.Fatalf("after the count: %04X", got)
			}
			want := []Outcome{OutcomeShifted, OutcomeReply}
			if got := outcomes(s); !slices.Equal(got, want) {
				t.Fatalf("outcomes %v, want %v", got, want)
			}
		})
	}
}

package emsim

import (
	"fmt"
	"time"
)

// faults are the misbehaviours a test can switch on while the meter serves.
// Counts go down by one for each reply (or read) they spoil.
type faults struct {
	mute       bool
	badCRC     int
	garbage    int
	exception  byte
	exceptions int
	sentinel   map[string]bool
	slow       time.Duration

	lowTotals int     // reads including a total that serve lowValue for every total
	lowValue  float64 // 0 for GlitchEnergy

	offUntil   time.Time // PowerCycle: no replies to requests arriving before this
	bootZeroes int       // PowerCycle: reads including a total that serve 0 once it is back

	late      int // replies sent lateDelay after their request
	lateDelay time.Duration

	wrongLength int // register-read replies with lengthDelta registers more (or fewer)
	lengthDelta int

	shifted    int // register-read replies served from shiftWords further on
	shiftWords int
}

// Mute keeps the adapter present but the meter silent: queries get no reply.
func (s *Sim) Mute(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.mute = on
}

// CorruptCRC gives the next n replies a wrong CRC.
func (s *Sim) CorruptCRC(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.badCRC = max(n, 0)
}

// Garbage replaces the next n replies with random bytes of the same length.
func (s *Sim) Garbage(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.garbage = max(n, 0)
}

// ExceptionNext answers the next n queries addressed to the meter with
// exception code (e.g. 04, slave device failure) whatever they ask.
func (s *Sim) ExceptionNext(code byte, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.exception, s.faults.exceptions = code, max(n, 0)
}

// Sentinel makes the registers of these keys read the overflow value
// 7FFFFFFFh (words FFFF,7FFF least significant first; 7FFFh for a 16-bit
// register), as the meter does when it shows "EEE". A total's 3-decimal pair
// reads the sentinel too. Keys add to those already set.
func (s *Sim) Sentinel(keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if _, ok := s.mem.index[k]; !ok {
			return fmt.Errorf("emsim: sentinel: %w: %q", ErrUnknownKey, k)
		}
	}
	for _, k := range keys {
		s.faults.sentinel[k] = true
	}
	return nil
}

// ClearSentinel makes every register read its value again.
func (s *Sim) ClearSentinel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults.sentinel)
}

// GlitchEnergy makes the energy totals read 0 in the next n reads that
// include a total's address (its 0.1 register or its 3-decimal pair): the
// "zero after a non-zero" glitch a bridge must reject.
// It is LowEnergy(n, 0); the reads are logged as OutcomeZeroEnergy.
func (s *Sim) GlitchEnergy(n int) {
	s.LowEnergy(n, 0)
}

// LowEnergy makes every lifetime energy total (meter.Register.Total) read
// value, in its 0.1 register and its 3-decimal pair alike, in the next n reads
// that include a total's address: a run of totals lower than the last good
// one, which a bridge must not publish as a fall. Reads without a total do not
// count. Logged as OutcomeLowEnergy (OutcomeZeroEnergy for value 0). The true
// counters carry on meanwhile.
func (s *Sim) LowEnergy(n int, value float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.lowTotals, s.faults.lowValue = max(n, 0), max(value, 0)
}

// PowerCycle switches the meter off and on again behind a present adapter: no
// query arriving within silent from now gets a reply (OutcomePowerOff); then
// the next zeroReads reads that include an energy total read every total as 0
// (OutcomeZeroEnergy), as a meter does while it restores its counters; then
// the true totals again, which went on counting all along, as the meter's
// non-volatile counters do.
func (s *Sim) PowerCycle(silent time.Duration, zeroReads int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.offUntil = time.Now().Add(max(silent, 0))
	s.faults.bootZeroes = max(zeroReads, 0)
}

// LateNext sends each of the next n replies delay after its request (instead
// of Slow's delay). With delay longer than the client's timeout the reply
// arrives while the client waits for the answer to its next request, which
// the meter does not hear: a query arriving while a late reply is pending is
// logged as OutcomeBusy and never answered, as on a half-duplex line. Logged
// as OutcomeLate. Slow remains the fault for every reply.
func (s *Sim) LateNext(n int, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.late, s.faults.lateDelay = max(n, 0), max(delay, 0)
}

// WrongLengthNext makes the next n register-read replies (function 03 or 04,
// not exceptions) carry delta registers more (delta > 0) or fewer (delta < 0)
// than asked, between 0 and 125: a well-formed frame, its byte count right for
// what is sent and its CRC valid, of the wrong length. Extra registers are
// what follows the asked ones in the memory map (0 where nothing is).
// Logged as OutcomeWrongLength.
func (s *Sim) WrongLengthNext(n, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.wrongLength, s.faults.lengthDelta = max(n, 0), delta
}

// ShiftNext makes the next n register-read replies (function 03 or 04, not
// exceptions) return the asked number of registers starting words later
// (earlier for words < 0) than asked, with a valid CRC: the right length,
// read for the wrong request. Logged as OutcomeShifted.
func (s *Sim) ShiftNext(n, words int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.shifted, s.faults.shiftWords = max(n, 0), words
}

// Slow delays every reply by d (0 turns it off); longer than the client's
// timeout, the reply arrives after the client gave up.
func (s *Sim) Slow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.slow = max(d, 0)
}

// ClearFaults switches every fault off.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = faults{sentinel: map[string]bool{}}
}

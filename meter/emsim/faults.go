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
	glitch     int
	slow       time.Duration
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
func (s *Sim) GlitchEnergy(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.glitch = max(n, 0)
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

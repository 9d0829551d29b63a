package meter

import (
	"errors"
	"fmt"
	"time"
)

// Reasons a value is not published. Each is matched with errors.Is.
var (
	ErrOutOfRange      = errors.New("outside the meter's physical range")
	ErrFallingTotal    = errors.New("energy total lower than the last accepted one")
	ErrZeroTotal       = errors.New("energy total reads zero")
	ErrImplausibleJump = errors.New("energy total rose faster than the meter's maximum power allows")
	ErrNegativeInModeA = errors.New("negative value in measurement mode A, where it cannot occur")
	ErrAllZero         = errors.New("every register of the snapshot reads zero")
	// ErrUnconfirmed says a total is not known to be true yet, not that it is
	// wrong: with no accepted history the first read waits for a second that
	// agrees with it. The caller may count it apart from glitches.
	ErrUnconfirmed = errors.New("energy total not yet confirmed by a second agreeing read")
	// ErrSuspectSnapshot withholds a partial counter read in the same snapshot
	// as a rejected lifetime total.
	ErrSuspectSnapshot = errors.New("a lifetime total of the same snapshot was rejected")
)

// DefaultConfirmAfter is K, how many consecutive reads that agree with each
// other (equal, or rising no faster than the meter's maximum power allows
// between them) confirm a total the physics since the last accepted value
// cannot explain: a jump, or the reset of a partial counter.
const DefaultConfirmAfter = 3

// Accepted is the last value the validator accepted for one energy total and
// when it was read; the bridge may persist it and Restore it at start.
type Accepted struct {
	Value float64
	At    time.Time
}

// sample is one read of a total.
type sample struct {
	value float64
	at    time.Time
}

// totalState is what the validator remembers of one energy total: the last
// accepted value, if any, and the current run of consecutive reads that
// disagree with it but agree with each other.
type totalState struct {
	accepted Accepted
	has      bool
	run      []sample
}

// Validator decides which decoded values may leave the package. It remembers
// every energy total it accepted, so it must live as long as the meter does.
//
// Lifetime totals (every Total register that is not Partial) never fall and
// never read 0: a lower or zero read is rejected however long it persists,
// because the only way the EM340 lowers them is a deliberate reset command on
// "X" versions, and the bridge answers a reset meter as a new device (a new
// serial, Forget), not by letting Home Assistant see a total fall. A rise is
// accepted when the meter's maximum power over the time since the last
// accepted value (across outages) allows it, or after K consecutive reads
// agree with each other. With no history the first read needs a second that
// agrees with it (ErrUnconfirmed until then).
//
// Partial counters (the partial and tariff meters) may be reset from the
// meter's keypad or register 4000h: a drop to a value the counter could have
// reached from 0 since the last accepted read is accepted as a reset once K
// consecutive reads agree; one zero read is not. A reset leaves the lifetime
// totals alone, so Meter.Read withholds the partial counters of a snapshot in
// which a lifetime total was rejected (a power cut's zeros hit all of them):
// such a run never counts toward a reset. Everything else is as for lifetime
// totals.
type Validator struct {
	confirmAfter int
	maxPower     float64 // W: the meter's largest power, which bounds how fast a total may rise
	totals       map[string]*totalState
}

// NewValidator returns a validator that accepts what physics cannot explain
// after confirmAfter consecutive agreeing reads (DefaultConfirmAfter if < 2:
// one read alone never confirms itself).
func NewValidator(confirmAfter int) *Validator {
	if confirmAfter < 2 {
		confirmAfter = DefaultConfirmAfter
	}
	return &Validator{confirmAfter: confirmAfter, maxPower: maxSystemPower, totals: map[string]*totalState{}}
}

// Forget drops what the validator remembers; used when a different meter answers.
func (v *Validator) Forget() { clear(v.totals) }

// Restore sets the accepted history, by register key, for instance from a
// state file of the previous run; it replaces what the validator remembered.
// The first read of a restored total is then checked against it, as any later one.
func (v *Validator) Restore(totals map[string]Accepted) {
	clear(v.totals)
	for key, a := range totals {
		v.totals[key] = &totalState{accepted: a, has: true}
	}
}

// Accepted returns the last accepted value of every energy total, by key.
func (v *Validator) Accepted() map[string]Accepted {
	out := make(map[string]Accepted, len(v.totals))
	for key, st := range v.totals {
		if st.has {
			out[key] = st.accepted
		}
	}
	return out
}

// Check validates one value of a snapshot taken at time at, in measurement mode
// mode, and records an accepted energy total. It returns nil if the value may
// be published.
func (v *Validator) Check(r Register, value float64, mode uint16, at time.Time) error {
	if err := checkRange(r, value, mode); err != nil {
		return err
	}
	if !r.Total {
		return nil
	}
	return v.checkTotal(r, value, at)
}

// checkRange is the part of Check that needs no history.
func checkRange(r Register, value float64, mode uint16) error {
	if value < r.Min || value > r.Max {
		return fmt.Errorf("%s = %g, allowed %g..%g: %w", r.Key, value, r.Min, r.Max, ErrOutOfRange)
	}
	if mode == MeasurementModeA && value < 0 && (r.Quantity == Current || r.Quantity == ActivePower) {
		return fmt.Errorf("%s = %g: %w", r.Key, value, ErrNegativeInModeA)
	}
	return nil
}

func (v *Validator) checkTotal(r Register, value float64, at time.Time) error {
	st := v.totals[r.Key]
	if st == nil {
		st = &totalState{}
		v.totals[r.Key] = st
	}
	now := sample{value, at}
	if !st.has {
		return st.confirmFirst(r, now, v.maxRise)
	}
	a := st.accepted
	elapsed := at.Sub(a.At)
	switch {
	case value >= a.Value && value-a.Value <= v.maxRise(elapsed):
		st.accept(now)
		return nil
	case value > a.Value:
		if st.extend(now, v.maxRise) >= v.confirmAfter {
			st.accept(now)
			return nil
		}
		return fmt.Errorf("%s rose from %g to %g in %s (at most %g; %d of %d agreeing reads): %w",
			r.Key, a.Value, value, elapsed.Round(time.Millisecond), v.maxRise(elapsed), len(st.run), v.confirmAfter, ErrImplausibleJump)
	case r.Partial && value <= v.maxRise(elapsed):
		// A partial counter may have been reset since the last accepted read.
		if st.extend(now, v.maxRise) >= v.confirmAfter {
			st.accept(now)
			return nil
		}
		err := ErrFallingTotal
		if value == 0 {
			err = ErrZeroTotal
		}
		return fmt.Errorf("%s = %g after %g (%d of %d agreeing reads to accept a reset): %w",
			r.Key, value, a.Value, len(st.run), v.confirmAfter, err)
	}
	st.run = st.run[:0] // a lifetime total never falls; a lower run never becomes a reset
	if value == 0 {
		return fmt.Errorf("%s = 0 after %g: %w", r.Key, a.Value, ErrZeroTotal)
	}
	return fmt.Errorf("%s = %g after %g: %w", r.Key, value, a.Value, ErrFallingTotal)
}

// confirmFirst handles a total with no accepted history: it is accepted when
// it agrees with the read before it. Zero is the value a glitch reads, so it
// never starts a history; a new meter's total shows from its first increment.
// Such a zero is not yet known rather than bad (export reads 0 for good in
// measurement mode A), so it is not a rejection.
func (st *totalState) confirmFirst(r Register, now sample, maxRise func(time.Duration) float64) error {
	if now.value == 0 {
		st.run = st.run[:0]
		return fmt.Errorf("%s = 0 with no accepted history (a zero never starts one): %w", r.Key, ErrUnconfirmed)
	}
	if st.extend(now, maxRise) >= 2 {
		st.accept(now)
		return nil
	}
	return fmt.Errorf("%s = %g: %w", r.Key, now.value, ErrUnconfirmed)
}

// extend appends now to the run if it agrees with the run's last read, or
// starts a new run with it, and returns the run's length.
func (st *totalState) extend(now sample, maxRise func(time.Duration) float64) int {
	if n := len(st.run); n > 0 && !agree(st.run[n-1], now, maxRise) {
		st.run = st.run[:0]
	}
	st.run = append(st.run, now)
	return len(st.run)
}

func (st *totalState) accept(now sample) {
	st.accepted, st.has, st.run = Accepted{Value: now.value, At: now.at}, true, st.run[:0]
}

// agree reports whether two consecutive reads can both be true: the later
// one is not lower and rose no faster than the meter's maximum power allows.
func agree(prev, next sample, maxRise func(time.Duration) float64) bool {
	return next.value >= prev.value && next.value-prev.value <= maxRise(next.at.Sub(prev.at))
}

// maxRise is the most a counter can grow in elapsed at the meter's largest power
// (twice the EM340's 150 kW, scaled by a meter's CT and VT ratios), with slack
// for the counter's resolution: anything more is a garbled read.
func (v *Validator) maxRise(elapsed time.Duration) float64 {
	const slack = 1.0 // kWh: a few resolution steps and clock jitter
	return v.maxPower/1000*max(elapsed, 0).Hours()*2 + slack
}

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
	ErrZeroTotal       = errors.New("energy total reads zero after a non-zero value")
	ErrImplausibleJump = errors.New("energy total rose faster than the meter's maximum power allows")
	ErrNegativeInModeA = errors.New("negative value in measurement mode A, where it cannot occur")
	ErrAllZero         = errors.New("every register of the snapshot reads zero")
)

// DefaultResetAfter is how many consecutive snapshots a lower energy total must
// persist before it is accepted as a genuine meter reset (X versions allow one).
const DefaultResetAfter = 3

// totalState is what the validator remembers of one energy counter.
type totalState struct {
	accepted   float64
	acceptedAt time.Time
	lowerRun   int     // consecutive snapshots below accepted
	lowerLast  float64 // the last of those values
}

// Validator decides which decoded values may leave the package. It remembers
// every energy total it accepted, so it must live as long as the meter does.
type Validator struct {
	resetAfter int
	totals     map[string]*totalState
}

// NewValidator returns a validator that accepts a lower total as a reset once it
// has persisted for resetAfter consecutive snapshots (DefaultResetAfter if < 1).
func NewValidator(resetAfter int) *Validator {
	if resetAfter < 1 {
		resetAfter = DefaultResetAfter
	}
	return &Validator{resetAfter: resetAfter, totals: map[string]*totalState{}}
}

// Forget drops what the validator remembers; used when a different meter answers.
func (v *Validator) Forget() { clear(v.totals) }

// Check validates one value of a snapshot taken at time at, in measurement mode
// mode, and records an accepted energy total. It returns nil if the value may
// be published.
func (v *Validator) Check(r Register, value float64, mode uint16, at time.Time) error {
	if value < r.Min || value > r.Max {
		return fmt.Errorf("%s = %g, allowed %g..%g: %w", r.Key, value, r.Min, r.Max, ErrOutOfRange)
	}
	if mode == MeasurementModeA && value < 0 && (r.Quantity == Current || r.Quantity == ActivePower) {
		return fmt.Errorf("%s = %g: %w", r.Key, value, ErrNegativeInModeA)
	}
	if !r.Total {
		return nil
	}
	return v.checkTotal(r, value, at)
}

func (v *Validator) checkTotal(r Register, value float64, at time.Time) error {
	st, seen := v.totals[r.Key]
	if !seen {
		v.totals[r.Key] = &totalState{accepted: value, acceptedAt: at}
		return nil
	}
	switch {
	case value >= st.accepted:
		if limit := maxRise(at.Sub(st.acceptedAt)); value-st.accepted > limit {
			return fmt.Errorf("%s rose from %g to %g in %s (at most %g): %w",
				r.Key, st.accepted, value, at.Sub(st.acceptedAt).Round(time.Millisecond), limit, ErrImplausibleJump)
		}
		*st = totalState{accepted: value, acceptedAt: at}
		return nil
	case st.lowerRun > 0 && value >= st.lowerLast:
		st.lowerRun++ // the lower series goes on rising from its new zero point
	default:
		st.lowerRun = 1
	}
	st.lowerLast = value
	if st.lowerRun >= v.resetAfter {
		*st = totalState{accepted: value, acceptedAt: at}
		return nil // a genuine reset: it persisted
	}
	if value == 0 {
		return fmt.Errorf("%s = 0 after %g (%d of %d snapshots to accept a reset): %w",
			r.Key, st.accepted, st.lowerRun, v.resetAfter, ErrZeroTotal)
	}
	return fmt.Errorf("%s = %g after %g (%d of %d snapshots to accept a reset): %w",
		r.Key, value, st.accepted, st.lowerRun, v.resetAfter, ErrFallingTotal)
}

// maxRise is the most a counter can grow in elapsed at the meter's largest power,
// with slack for the counter's resolution: anything more is a garbled read.
func maxRise(elapsed time.Duration) float64 {
	const slack = 1.0 // kWh: a few resolution steps and clock jitter
	return maxSystemPower/1000*elapsed.Hours()*2 + slack
}

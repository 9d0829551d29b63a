package meter

import "time"

// Value is one validated value of a snapshot, in its register's unit.
type Value struct {
	Register Register
	Value    float64
}

// Text is the enum option for an enum register (phase sequence), "" otherwise.
func (v Value) Text() string {
	i := int(v.Value)
	if len(v.Register.Options) == 0 || i < 0 || i >= len(v.Register.Options) {
		return ""
	}
	return v.Register.Options[i]
}

// Reading is one snapshot of the meter: only values that passed validation.
// A value that was rejected is absent, never replaced by a stale one.
type Reading struct {
	Time   time.Time // when the meter answered the last request of the snapshot
	Values []Value   // in register-table order
	Fine   bool      // energy totals came from the 3-decimal registers
}

// Get returns the value of the register with the given key.
func (r Reading) Get(key string) (float64, bool) {
	for _, v := range r.Values {
		if v.Register.Key == key {
			return v.Value, true
		}
	}
	return 0, false
}

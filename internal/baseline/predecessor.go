package baseline

import "time"

// How em340d reads a snapshot: blocks of at most 20 registers with a 50 ms
// pause between blocks.
const (
	PredecessorBlock = 20
	PredecessorPause = 50 * time.Millisecond
)

// Schedule is a retry schedule with no device watch: a first retry First
// after the loss, each wait Factor times the one before, never above Max.
type Schedule struct {
	First, Max time.Duration
	Factor     float64
}

// Predecessor is em340d's schedule: 2 s, ×1.5, capped at 60 s. It learnt of a
// replug only at its next attempt. (It is also the bridge's default backoff,
// EM340_RECONNECT_*, which the bridge's directory watch cuts short.)
var Predecessor = Schedule{First: 2 * time.Second, Max: time.Minute, Factor: 1.5}

// Delay is the wait before attempt n+1 (n = 1 is the first wait).
func (s Schedule) Delay(n int) time.Duration {
	d := float64(s.First)
	for i := 1; i < n && d < float64(s.Max); i++ {
		d *= s.Factor
	}
	return min(time.Duration(d), s.Max)
}

// Scaled is the schedule with every wait divided by k.
func (s Schedule) Scaled(k int) Schedule {
	return Schedule{First: s.First / time.Duration(k), Max: s.Max / time.Duration(k), Factor: s.Factor}
}

// Attempts are the first n attempt times after the loss, the loss itself first.
func (s Schedule) Attempts(n int) []time.Duration {
	var at time.Duration
	out := []time.Duration{0}
	for i := 1; len(out) < n; i++ {
		at += s.Delay(i)
		out = append(out, at)
	}
	return out
}

// WaitAfterReplug is how long a retry loop on this schedule sits idle when
// the device returns outage after the loss: its attempts fall at the loss and
// at the running sums of the delays, and it notices the device only at the
// first of them at or after outage. (The attempts' own duration is ignored,
// which favours the schedule.)
func (s Schedule) WaitAfterReplug(outage time.Duration) time.Duration {
	var at time.Duration
	for n := 1; at < outage; n++ {
		d := s.Delay(n)
		if d <= 0 {
			return 0 // a schedule without waits retries all the time
		}
		at += d
	}
	return at - outage
}

// CapReachedAfter is when, after the loss, the delay first reaches Max.
func (s Schedule) CapReachedAfter() time.Duration {
	var at time.Duration
	for n := 1; ; n++ {
		d := s.Delay(n)
		if d >= s.Max || d <= 0 {
			return at
		}
		at += d
	}
}

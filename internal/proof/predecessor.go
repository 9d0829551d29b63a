package proof

import (
	"time"

	"github.com/em340-bridge/em340-bridge/link"
)

// PredecessorBackoff is the predecessor's reconnect schedule: 2 s, ×1.5,
// capped at 60 s, with no device watch to cut a wait short. It is also the
// bridge's default (EM340_RECONNECT_*).
func PredecessorBackoff() link.ReconnectBackoff {
	return link.ReconnectBackoff{Min: 2 * time.Second, Max: time.Minute, Factor: 1.5}
}

// CapReachedAfter is when the schedule's delay first reaches its cap.
func CapReachedAfter(b link.ReconnectBackoff) time.Duration {
	var at time.Duration
	for n := uint(1); ; n++ {
		d := b.Delay(n)
		if d >= b.Max {
			return at
		}
		at += d
	}
}

package link

import (
	"math"
	"time"

	"github.com/avast/retry-go/v4"
)

// ReconnectBackoff is the schedule between reconnect attempts: Min, then
// multiplied by Factor after each failure, never above Max.
type ReconnectBackoff struct {
	Min, Max time.Duration
	Factor   float64
}

// Delay is the wait before attempt n+1 (n = 1 is the first wait).
func (b ReconnectBackoff) Delay(n uint) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(b.Min) * math.Pow(b.Factor, float64(n-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		return b.Max
	}
	return time.Duration(d)
}

// delayType adapts the schedule to retry-go, which only doubles on its own. Once
// the link is offline it waits the maximum delay, as the predecessor's users expect.
// During a permission grace (EACCES right after the node appeared) the wait
// is capped at graceDelay: udev's chmod is due within ~100 ms. While a gateway
// cannot be connected to, it is capped at gatewayRedial: a failed connect
// costs the bus nothing, and a rebooted gateway is used as soon as it listens.
func (b ReconnectBackoff) delayType(offline, grace, redial func() bool) retry.DelayTypeFunc {
	return func(n uint, _ error, _ *retry.Config) time.Duration {
		d := b.Delay(n)
		if offline() {
			d = b.Max
		}
		if grace() {
			d = min(d, graceDelay)
		}
		if redial() {
			d = min(d, gatewayRedial)
		}
		return d
	}
}

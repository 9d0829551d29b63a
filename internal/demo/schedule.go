package demo

import (
	"strconv"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/link"
)

// predecessor is the Python daemon's retry schedule that em340-bridge replaces:
// a first retry 2 s after the loss, each wait 1.5 times the one before, capped
// at 60 s. It only learned of a replug at its next attempt.
func predecessor() link.ReconnectBackoff {
	return link.ReconnectBackoff{Min: 2 * time.Second, Max: time.Minute, Factor: 1.5}
}

// attemptTimes lists the first n attempt times of b, in seconds, for the
// header ("0, 2, 5, 9.5, 16.3").
func attemptTimes(b link.ReconnectBackoff, n int) string {
	var at time.Duration
	parts := []string{"0"}
	for i := uint(1); len(parts) < n; i++ {
		at += b.Delay(i)
		parts = append(parts, seconds(at))
	}
	return strings.Join(parts, ", ")
}

// seconds writes d in seconds with at most one decimal, without a trailing ".0".
func seconds(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

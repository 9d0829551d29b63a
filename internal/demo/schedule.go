package demo

import (
	"strconv"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
)

// attemptTimes lists the first n attempt times of s, in seconds, for the
// header ("0, 2, 5, 9.5, 16.2").
func attemptTimes(s baseline.Schedule, n int) string {
	var parts []string
	for _, at := range s.Attempts(n) {
		parts = append(parts, seconds(at))
	}
	return strings.Join(parts, ", ")
}

// seconds writes d in seconds with at most one decimal, without a trailing ".0".
func seconds(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

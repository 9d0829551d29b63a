package demo

import (
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
)

func TestPredecessorSchedule(t *testing.T) {
	if got, want := attemptTimes(baseline.Predecessor, 5), "0, 2, 5, 9.5, 16.2"; got != want {
		t.Errorf("attempts %q, want %q", got, want)
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0", 2 * time.Second: "2", 1500 * time.Millisecond: "1.5", 3476 * time.Millisecond: "3.5"} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%s) = %q, want %q", d, got, want)
		}
	}
}

package demo

import (
	"testing"
	"time"
)

func TestPredecessorSchedule(t *testing.T) {
	if got, want := attemptTimes(predecessor(), 5), "0, 2, 5, 9.5, 16.2"; got != want {
		t.Errorf("attempts %q, want %q", got, want)
	}
	for _, tc := range []struct{ outage, wait time.Duration }{
		{0, 0},
		{time.Second, time.Second}, // next try at 2 s
		{2 * time.Second, 0},       // replugged just as it tries
		{6 * time.Second, 3500 * time.Millisecond}, // next try at 9.5 s
		{10 * time.Second, 6250 * time.Millisecond},
		// 0, 2, 5, 9.5, 16.25, 26.375, 41.5625, 64.34375, 98.515625, 149.7734375,
		// then every 60 s: 629.7734375 is the first at or after 10 minutes.
		{10 * time.Minute, 29773437500},
	} {
		if got := waitAfterReplug(predecessor(), tc.outage); got != tc.wait {
			t.Errorf("outage %s: waits %s, want %s", tc.outage, got, tc.wait)
		}
	}
	for outage := time.Duration(0); outage < time.Hour; outage += 7 * time.Second {
		if w := waitAfterReplug(predecessor(), outage); w < 0 || w > time.Minute {
			t.Fatalf("outage %s: waits %s, outside 0–60 s", outage, w)
		}
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0", 2 * time.Second: "2", 1500 * time.Millisecond: "1.5", 3476 * time.Millisecond: "3.5"} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%s) = %q, want %q", d, got, want)
		}
	}
}

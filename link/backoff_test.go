package link

import (
	"testing"
	"time"
)

func TestReconnectBackoff(t *testing.T) {
	predecessor := ReconnectBackoff{Min: 2 * time.Second, Max: 60 * time.Second, Factor: 1.5}
	tests := []struct {
		b    ReconnectBackoff
		n    uint
		want time.Duration
	}{
		{predecessor, 0, 2 * time.Second},
		{predecessor, 1, 2 * time.Second},
		{predecessor, 2, 3 * time.Second},
		{predecessor, 3, 4500 * time.Millisecond},
		{predecessor, 4, 6750 * time.Millisecond},
		{predecessor, 9, 51257 * time.Millisecond},
		{predecessor, 10, 60 * time.Second},
		{predecessor, 1000, 60 * time.Second},
		{ReconnectBackoff{Min: 100 * time.Millisecond, Max: 5 * time.Second, Factor: 2}, 6, 3200 * time.Millisecond},
		{ReconnectBackoff{Min: time.Second, Max: time.Second, Factor: 1}, 50, time.Second},
	}
	for _, tt := range tests {
		if got := tt.b.Delay(tt.n).Truncate(time.Millisecond); got != tt.want {
			t.Errorf("%+v Delay(%d) = %v, want %v", tt.b, tt.n, got, tt.want)
		}
	}
}

func TestDelayTypeWaitsTheMaximumOnceOffline(t *testing.T) {
	b := ReconnectBackoff{Min: time.Second, Max: time.Minute, Factor: 2}
	offline := false
	delay := b.delayType(func() bool { return offline }, func() bool { return false }, func() bool { return false })
	if got := delay(1, nil, nil); got != time.Second {
		t.Fatalf("first delay %v", got)
	}
	offline = true
	if got := delay(1, nil, nil); got != time.Minute {
		t.Fatalf("offline delay %v, want the maximum", got)
	}
}

func TestDelayTypeIsShortDuringPermissionGrace(t *testing.T) {
	b := ReconnectBackoff{Min: time.Second, Max: time.Minute, Factor: 2}
	grace := true
	delay := b.delayType(func() bool { return false }, func() bool { return grace }, func() bool { return false })
	if got := delay(5, nil, nil); got != graceDelay {
		t.Fatalf("delay in grace %v, want %v", got, graceDelay)
	}
	grace = false
	if got := delay(5, nil, nil); got != 16*time.Second {
		t.Fatalf("delay after grace %v", got)
	}
}

package baseline

import (
	"slices"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// The limit is frame arithmetic: 8 + 5+2n bytes at 10 bits a byte, latency,
// and the gap between requests (not before the first).
func TestBlocks(t *testing.T) {
	blocks := []meter.Block{{Start: 0, Count: 50}, {Start: 0x32, Count: 32}}
	got := Blocks(blocks, 9600, 5*time.Millisecond, MeterGap)
	want := time.Duration(10*(8+105))*time.Second/9600 + time.Duration(10*(8+69))*time.Second/9600 + 2*5*time.Millisecond + MeterGap
	if got != want {
		t.Fatalf("limit %v, want %v", got, want)
	}
}

// A logged exception costs its 5-byte reply, a write its echo.
func TestRequests(t *testing.T) {
	reqs := []emsim.Request{
		{Function: 0x03, Addr: 0x5000, Count: 7, Outcome: emsim.OutcomeReply},
		{Function: 0x03, Addr: 0x5010, Count: 1, Outcome: emsim.OutcomeException, Exception: 2},
		{Function: 0x06, Addr: 0x4000, Count: 1, Outcome: emsim.OutcomeReply},
	}
	got := Requests(reqs, 9600, time.Millisecond)
	want := WireTime(8+19, 9600) + WireTime(8+5, 9600) + WireTime(8+8, 9600) + 3*time.Millisecond + 2*MeterGap
	if got != want {
		t.Fatalf("limit %v, want %v", got, want)
	}
	if Requests(nil, 9600, time.Millisecond) != 0 {
		t.Fatal("no requests take no time")
	}
}

// em340d's attempts fall at 0, 2, 5, 9.5, 16.25 … s after the loss.
func TestPredecessorWaitAfterReplug(t *testing.T) {
	tests := []struct{ outage, wait time.Duration }{
		{0, 0},
		{time.Second, time.Second}, // next try at 2 s
		{2 * time.Second, 0},       // replugged just as it tries
		{5*time.Second + time.Millisecond, 4500*time.Millisecond - time.Millisecond},
		{6 * time.Second, 3500 * time.Millisecond}, // next try at 9.5 s
		{10 * time.Second, 6250 * time.Millisecond},
		// 0, 2, 5, 9.5, 16.25, 26.375, 41.5625, 64.34375, 98.515625, 149.7734375,
		// then every 60 s: 629.7734375 is the first at or after 10 minutes.
		{10 * time.Minute, 29773437500},
	}
	for _, tt := range tests {
		if got := Predecessor.WaitAfterReplug(tt.outage); got != tt.wait {
			t.Errorf("outage %s: waits %s, want %s", tt.outage, got, tt.wait)
		}
	}
	for outage := time.Duration(0); outage < time.Hour; outage += 7 * time.Second {
		if w := Predecessor.WaitAfterReplug(outage); w < 0 || w > time.Minute {
			t.Fatalf("outage %s: waits %s, outside 0–60 s", outage, w)
		}
	}
	if got := (Schedule{}).WaitAfterReplug(time.Second); got != 0 {
		t.Errorf("a schedule without waits waits %v", got)
	}
}

func TestPredecessorAttemptsAndCap(t *testing.T) {
	want := []time.Duration{0, 2 * time.Second, 5 * time.Second, 9500 * time.Millisecond, 16250 * time.Millisecond}
	if got := Predecessor.Attempts(5); !slices.Equal(got, want) {
		t.Errorf("attempts %v, want %v", got, want)
	}
	if got := Predecessor.CapReachedAfter(); got != 149773437500 {
		t.Errorf("cap reached after %v, want 149.7734375 s", got)
	}
	scaled := Predecessor.Scaled(20)
	if scaled.First != 100*time.Millisecond || scaled.Max != 3*time.Second {
		t.Errorf("scaled %+v", scaled)
	}
	if got := scaled.CapReachedAfter() * 20; got != Predecessor.CapReachedAfter() {
		t.Errorf("scaled cap at %v ×20, unscaled at %v", scaled.CapReachedAfter(), Predecessor.CapReachedAfter())
	}
}

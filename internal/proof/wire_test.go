package proof

import (
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
)

// The computed minimum: the whole table in 2 reads, 3 with the 3-decimal totals.
func TestPlanIsTheComputedMinimum(t *testing.T) {
	for _, tc := range []struct {
		fine bool
		want []meter.Block
	}{
		{false, []meter.Block{{Start: 0x0000, Count: 50}, {Start: 0x0032, Count: 32}}},
		{true, []meter.Block{{Start: 0x0000, Count: 50}, {Start: 0x0032, Count: 32}, {Start: 0x0400, Count: 16}}},
	} {
		got, err := meter.Plan(meter.Registers(), tc.fine, meter.MaxReadWords)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("fine=%v: %d reads %v, want %v", tc.fine, len(got), got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("fine=%v: %v, want %v", tc.fine, got, tc.want)
			}
		}
	}
}

// The limit is frame arithmetic: 8 + 5+2n bytes at 10 bits a byte, latency,
// and the gap between requests (not before the first).
func TestSnapshotLimit(t *testing.T) {
	blocks := []meter.Block{{Start: 0, Count: 50}, {Start: 0x32, Count: 32}}
	got := SnapshotLimit(blocks, 9600, 5*time.Millisecond, MeterGap)
	want := time.Duration(10*(8+105))*time.Second/9600 + time.Duration(10*(8+69))*time.Second/9600 + 2*5*time.Millisecond + MeterGap
	if got != want {
		t.Fatalf("limit %v, want %v", got, want)
	}
}

// The predecessor's attempts fall at 2, 5, 9.5, 16.25 s … after the unplug.
func TestScheduleWait(t *testing.T) {
	for _, tc := range []struct{ outage, want time.Duration }{
		{time.Second, time.Second},
		{2 * time.Second, 0},
		{5*time.Second + time.Millisecond, 4500*time.Millisecond - time.Millisecond},
		{10 * time.Second, 6250 * time.Millisecond},
	} {
		if got := PredecessorBackoff().WaitAfterReplug(tc.outage); got != tc.want {
			t.Errorf("outage %v: wait %v, want %v", tc.outage, got, tc.want)
		}
	}
	scaled := link.ReconnectBackoff{Min: 100 * time.Millisecond, Max: 3 * time.Second, Factor: 1.5}
	if got := CapReachedAfter(scaled) * 20; got != CapReachedAfter(PredecessorBackoff()) {
		t.Errorf("scaled cap at %v ×20, unscaled at %v", CapReachedAfter(scaled), CapReachedAfter(PredecessorBackoff()))
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]time.Duration{3, 1, 2, 10})
	if s.N != 4 || s.Min != 1 || s.Median != 2 || s.Max != 10 || s.Mean != 4 {
		t.Fatalf("%+v", s)
	}
	if (Summarize(nil) != Summary{}) {
		t.Fatal("empty sample")
	}
}

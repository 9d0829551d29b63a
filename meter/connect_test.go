package meter

import (
	"context"
	"errors"
	"testing"
)

// TestReconnectProvesTheSerialOnly: a reconnect of the same meter costs one
// request (the serial number) before the first snapshot; the rest of the
// identity is read again afterwards by Refresh, which reports a change made on
// the keypad. A different meter takes the full path.
func TestReconnectProvesTheSerialOnly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(ModelEM340, true, typicalValues())
	m := New(Options{})
	requests := func(do func()) int {
		before := len(f.requests)
		do()
		return len(f.requests) - before
	}
	connect := func() {
		t.Helper()
		if _, err := m.Connect(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	var full int
	if full = requests(connect); full != 8 {
		t.Errorf("first connect: %d requests, want the 8 of the whole identity", full)
	}
	if n := requests(connect); n != 1 {
		t.Errorf("reconnect of the same meter: %d requests before the snapshot, want 1 (the serial)", n)
	}
	if !m.RefreshDue() {
		t.Error("after a fast reconnect the identity must be refreshed")
	}
	if n := requests(func() {
		if _, err := m.Read(ctx, f); err != nil {
			t.Fatal(err)
		}
	}); n != len(m.Plan()) {
		t.Errorf("snapshot: %d requests, want the plan's %d", n, len(m.Plan()))
	}
	f.mem[AddrMeasurementMode] = MeasurementModeA // changed on the keypad meanwhile
	id, changed, err := m.Refresh(ctx, f)
	if err != nil || !changed || id.MeasurementMode != MeasurementModeA || m.RefreshDue() {
		t.Errorf("refresh: %+v changed=%v err=%v due=%v; want mode A, changed", id, changed, err, m.RefreshDue())
	}
	if _, err := m.Connect(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, changed, _ := m.Refresh(ctx, f); changed {
		t.Error("a refresh that finds the same identity reports a change")
	}

	for i, c := range "999999X" {
		f.mem[AddrSerialNumber+uint16(i)] = uint16(c)
	}
	var err2 error
	if n := requests(func() { _, err2 = m.Connect(ctx, f) }); n != 1+full || !errors.Is(err2, ErrWrongMeter) {
		t.Errorf("a different meter: %d requests, err %v; want the serial then the whole identity (%d), ErrWrongMeter", n, err2, 1+full)
	}
	if m.Identity().Serial != "999999X" || m.RefreshDue() {
		t.Errorf("after the full path: %+v, refresh due %v", m.Identity(), m.RefreshDue())
	}
}

package main

import (
	"context"
	"testing"

	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// Through the real stack, a snapshot costs the computed minimum of requests
// (the plan: 0000h+50, 0032h+32, and 0400h+16 with the 3-decimal totals), the
// predecessor's way 5 (6) and one request per value 42: the counts the
// snapshot table's ratios rest on.
func TestSnapshotRequestCounts(t *testing.T) {
	for _, fine := range []bool{false, true} {
		line, err := bridgetest.OpenLine(context.Background(), emsim.Options{FineEnergy: fine, MeasurementMode: meter.MeasurementModeB}, 115200)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = line.Close() })
		plan := []meter.Block{{Start: 0x0000, Count: 50}, {Start: 0x0032, Count: 32}}
		if fine {
			plan = append(plan, meter.Block{Start: 0x0400, Count: 16})
		}
		ways, err := strategies(line.Meter, fine, 115200, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []int{len(plan), len(plan) + 3, 42} {
			line.Sim.ResetRequests()
			if err := line.Link.Do(context.Background(), 1, func(r meter.Reader) error { return ways[i].Read(context.Background(), r) }); err != nil {
				t.Fatalf("%s: %v", ways[i].Name, err)
			}
			reqs := line.Sim.Requests()
			if len(reqs) != want {
				t.Errorf("fine=%v %s: %d requests, want %d", fine, ways[i].Name, len(reqs), want)
			}
			if i == 0 {
				for j, b := range plan {
					if j < len(reqs) && (reqs[j].Addr != b.Start || reqs[j].Count != b.Count) {
						t.Errorf("fine=%v: read %d is %04Xh+%d, want %04Xh+%d", fine, j, reqs[j].Addr, reqs[j].Count, b.Start, b.Count)
					}
				}
			}
		}
	}
}

package link_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// benchLatency is the simulated meter's answer latency: an assumption (the
// protocol document only bounds it, "within 500 ms").
const benchLatency = 5 * time.Millisecond

// BenchmarkSnapshot reads whole snapshots through link.Link over a pty from
// the simulator answering with wire timing (10 bits a byte at the baud rate,
// plus benchLatency): one op is one snapshot, back to back. requests/op is
// from the simulator's log; wire-ms/op is the least time those requests take
// on the line, with the meter's 40 ms gap after every reply (the snapshots
// follow each other, so that is one gap per request); ms-over-wire-minimum
// is how much longer an op took.
func BenchmarkSnapshot(b *testing.B) {
	prev := log.Writer()
	log.SetOutput(io.Discard) // the serial library's noise when the port closes
	b.Cleanup(func() { log.SetOutput(prev) })
	for _, baud := range []int{9600, 115200} {
		b.Run(fmt.Sprintf("baud=%d", baud), func(b *testing.B) {
			ctx := context.Background()
			line, err := bridgetest.OpenLine(ctx, emsim.Options{FineEnergy: true, MeasurementMode: meter.MeasurementModeB,
				WireTiming: true, Baud: baud, Latency: benchLatency}, baud)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				if err := line.Close(); err != nil {
					b.Error(err)
				}
			})
			line.Sim.ResetRequests()
			b.ReportAllocs()
			n, start := 0, time.Now()
			for b.Loop() {
				if _, err := line.Read(ctx); err != nil {
					b.Fatal(err)
				}
				n++
			}
			per := time.Since(start) / time.Duration(n)
			reqs := line.Sim.Requests()
			// The gap after the previous snapshot's last reply comes first.
			wire := (baseline.MeterGap + baseline.Requests(reqs, baud, benchLatency)) / time.Duration(n)
			b.ReportMetric(float64(len(reqs))/float64(n), "requests/op")
			b.ReportMetric(float64(wire)/float64(time.Millisecond), "wire-ms/op")
			b.ReportMetric(float64(per-wire)/float64(time.Millisecond), "ms-over-wire-minimum")
		})
	}
}

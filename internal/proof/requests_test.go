package proof

import (
	"context"
	"io"
	"log"
	"os/exec"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/testenv"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

func quietModbus(t *testing.T) {
	prev := log.Writer()
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(prev) })
}

func needMosquitto(t *testing.T) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		if _, err := exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			testenv.Missing(t, "mosquitto", "apt-get install -y mosquitto")
		}
	}
}

// Through the real stack, a snapshot costs the computed minimum of requests,
// the predecessor's way 5 (6) and one request per value 42: the counts the
// benchmark's ratios rest on.
func TestSnapshotRequestCounts(t *testing.T) {
	quietModbus(t)
	for _, fine := range []bool{false, true} {
		line, err := OpenLine(context.Background(), emsim.Options{FineEnergy: fine}, 115200)
		if err != nil {
			t.Fatal(err)
		}
		strategies, err := Strategies(line.Meter, fine, 115200, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []int{2, 5, 42}
		if fine {
			want = []int{3, 6, 42}
		}
		for i, s := range strategies {
			line.Sim.ResetRequests()
			if err := line.Link.Do(context.Background(), 1, func(r meter.Reader) error { return s.Read(context.Background(), r) }); err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			if n := len(line.Sim.Requests()); n != want[i] {
				t.Errorf("fine=%v %s: %d requests, want %d", fine, s.Name, n, want[i])
			}
		}
		if err := line.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// After a replug the first state message needs exactly the identity check and
// one snapshot on the line: nothing waits on the backoff or on the next poll.
func TestResumeIsIdentityPlusOneSnapshot(t *testing.T) {
	needMosquitto(t)
	quietModbus(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := append(SoakEnv(), "EM340_POLL_INTERVAL=1h", "EM340_RECONNECT_MIN_DELAY=1h", "EM340_RECONNECT_MAX_DELAY=1h", "EM340_STALL_TIMEOUT=3h")
	sim := emsim.Options{FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB}
	rig, err := StartRig(ctx, RigOptions{Sim: sim, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rig.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := rig.Sub.Wait(ctx, 0, rig.Topics.MeterState(), nil); err != nil {
		t.Fatal(err)
	}
	if err := rig.Sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	if _, err := rig.Sub.Wait(ctx, 0, rig.Topics.MeterAvailability(), Equals("offline")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the first retry has failed; the next is an hour away
	rig.Sim.ResetRequests()
	mark := rig.Sub.Mark()
	if err := rig.Sim.Replug(); err != nil {
		t.Fatal(err)
	}
	first, err := rig.Sub.Wait(ctx, mark, rig.Topics.MeterState(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var reqs []emsim.Request
	for _, r := range rig.Sim.Requests() {
		if r.Time.Before(first.At) {
			reqs = append(reqs, r)
		}
	}
	// The refresh of the rest of the identity may start while the state is
	// on its way to the subscriber.
	if len(reqs) != 4 && len(reqs) != 5 {
		t.Fatalf("%d requests before the first state message, want 1 (the serial) + 3 (snapshot): %+v", len(reqs), reqs)
	}
	if r := reqs[0]; r.Addr != meter.AddrSerialNumber || r.Count != meter.SerialNumberWords {
		t.Errorf("first request %04Xh+%d, want the serial number", r.Addr, r.Count)
	}
	for i, b := range []meter.Block{{Start: 0, Count: 50}, {Start: 0x32, Count: 32}, {Start: 0x400, Count: 16}} {
		if r := reqs[1+i]; r.Addr != b.Start || r.Count != b.Count {
			t.Errorf("snapshot request %d: %04Xh+%d, want %04Xh+%d", i, r.Addr, r.Count, b.Start, b.Count)
		}
	}
}

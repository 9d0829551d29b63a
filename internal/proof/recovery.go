package proof

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// RecoveryOptions set up the replug and detection trials.
type RecoveryOptions struct {
	Trials int
	Outage time.Duration
	Seed   uint64 // places each unplug in the poll cycle
}

// RecoveryBaud is the line speed of the trials: the meter's factory setting.
const RecoveryBaud = 9600

// Trial is one unplug/replug as measured.
type Trial struct {
	Outage      time.Duration // unplug to replug, as it happened
	Reconnect   time.Duration // unplug to link "reconnecting" (OnLinkChange)
	Unavailable time.Duration // unplug to meter availability "offline" at the subscriber
	FirstState  time.Duration // replug to the first state message at the subscriber
	Wire        time.Duration // wire time of the requests that led to it (identity check and snapshot)
	Requests    int
	Predecessor time.Duration // its backoff's wait after the replug, unscaled schedule
}

// RecoveryEnv is the bridge's configuration for the trials: RecoveryBaud, a
// 1 s poll and the given backoff.
func RecoveryEnv(b link.ReconnectBackoff) []string {
	return []string{
		fmt.Sprintf("EM340_SERIAL_BAUD=%d", RecoveryBaud),
		"EM340_POLL_INTERVAL=1s",
		"EM340_RECONNECT_MIN_DELAY=" + b.Min.String(),
		"EM340_RECONNECT_MAX_DELAY=" + b.Max.String(),
		fmt.Sprintf("EM340_RECONNECT_FACTOR=%g", b.Factor),
		"EM340_STALL_TIMEOUT=5m",
	}
}

// RecoverySim is the simulated meter of the trials: a current EM340 with
// wire timing at RecoveryBaud and the given answer latency.
func RecoverySim(latency time.Duration) emsim.Options {
	return emsim.Options{Serial: "235411W", FineEnergy: true, ProductionYear: 2021, MeasurementMode: 1,
		WireTiming: true, Baud: RecoveryBaud, Latency: latency}
}

// MeasureRecovery runs the trials against rig (its bridge configured with
// RecoveryEnv(o.Backoff)).
func MeasureRecovery(ctx context.Context, rig *Rig, o RecoveryOptions, latency time.Duration) ([]Trial, error) {
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	var trials []Trial
	for i := 0; i < o.Trials; i++ {
		tr, err := recoveryTrial(ctx, rig, rng, o.Outage, latency)
		if err != nil {
			return trials, fmt.Errorf("trial %d: %w", i+1, err)
		}
		trials = append(trials, tr)
	}
	return trials, nil
}

func recoveryTrial(ctx context.Context, rig *Rig, rng *rand.Rand, outage, latency time.Duration) (Trial, error) {
	var tr Trial
	wctx, cancel := context.WithTimeout(ctx, outage+2*time.Minute)
	defer cancel()
	// Start from a steady state: a reading published, then a random point of the poll cycle.
	if _, err := rig.Sub.Wait(wctx, rig.Sub.Mark(), rig.Topics.MeterState(), nil); err != nil {
		return tr, err
	}
	if err := waitCtx(wctx, time.Duration(rng.Int64N(int64(rig.Config.PollInterval)))); err != nil {
		return tr, err
	}
	mark, unplugged := rig.Sub.Mark(), time.Now()
	if err := rig.Sim.Unplug(); err != nil {
		return tr, err
	}
	lost, err := rig.WaitLink(wctx, unplugged, link.Reconnecting)
	if err != nil {
		return tr, err
	}
	tr.Reconnect = lost.At.Sub(unplugged)
	off, err := rig.Sub.Wait(wctx, mark, rig.Topics.MeterAvailability(), Equals("offline"))
	if err != nil {
		return tr, err
	}
	tr.Unavailable = off.At.Sub(unplugged)
	if err := waitCtx(wctx, time.Until(unplugged.Add(outage))); err != nil {
		return tr, err
	}
	rig.Sim.ResetRequests()
	mark, replugged := rig.Sub.Mark(), time.Now()
	if err := rig.Sim.Replug(); err != nil {
		return tr, err
	}
	tr.Outage = replugged.Sub(unplugged)
	first, err := rig.Sub.Wait(wctx, mark, rig.Topics.MeterState(), nil)
	if err != nil {
		return tr, err
	}
	tr.FirstState = first.At.Sub(replugged)
	var before []emsim.Request
	for _, r := range rig.Sim.Requests() {
		if r.Time.Before(first.At) {
			before = append(before, r)
		}
	}
	tr.Requests = len(before)
	tr.Wire = LogLimit(before, RecoveryBaud, latency, MeterGap)
	tr.Predecessor = PredecessorBackoff().WaitAfterReplug(tr.Outage)
	return tr, nil
}

// MeasureReadingToMQTT pairs each state message of the next n with the
// newest reading taken before it arrived: the time from the meter's last
// reply (meter.Reading.Time) to the message at the subscriber.
func MeasureReadingToMQTT(ctx context.Context, rig *Rig, n int) ([]time.Duration, error) {
	since, mark := time.Now(), rig.Sub.Mark()
	topic := rig.Topics.MeterState()
	var out []time.Duration
	for len(out) < n {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		msg, err := rig.Sub.Wait(wctx, mark, topic, nil)
		cancel()
		if err != nil {
			return out, err
		}
		mark = indexAfter(rig.Sub, mark, msg)
		var taken time.Time
		for _, r := range rig.Readings(since) {
			if r.Taken.Before(msg.At) && r.Taken.After(taken) {
				taken = r.Taken
			}
		}
		if taken.IsZero() {
			continue // a message from before the first reading of the window
		}
		out = append(out, msg.At.Sub(taken))
	}
	return out, nil
}

// indexAfter is the mark just past msg.
func indexAfter(s *Subscriber, mark int, msg Message) int {
	for i, m := range s.Messages(mark) {
		if m == msg {
			return mark + i + 1
		}
	}
	return s.Mark()
}

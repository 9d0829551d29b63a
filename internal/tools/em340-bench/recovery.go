package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// recoveryBaud is the line speed of the trials: the meter's factory setting.
const recoveryBaud = 9600

// target: the first state should come within this of the wire minimum of the
// requests that led to it.
const target = 100 * time.Millisecond

func recovery(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("recovery", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trials := fs.Int("trials", 20, "unplug/replug trials per outage length")
	starts := fs.Int("starts", 10, "bridge starts")
	short := fs.Duration("short", 5*time.Second, "short outage (the bridge keeps its default backoff)")
	long := fs.Duration("long", 10*time.Second, "long outage (with the backoff scaled down by -scale, beyond its cap)")
	scale := fs.Int("scale", 20, "divide the default backoff (2 s, cap 60 s) by this for the long outages")
	latency := fs.Duration("latency", 5*time.Millisecond, "simulated meter answer latency (an assumption)")
	readings := fs.Int("readings", 60, "state messages for the reading-to-MQTT latency")
	seed := fs.Uint64("seed", 1, "places the unplugs in the poll cycle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sim := recoverySim(*latency)
	fmt.Fprintf(stderr, "recovery: %d starts\n", *starts)
	startTrials, err := measureStarts(ctx, sim, *starts)
	if err != nil {
		return fmt.Errorf("starts: %w", err)
	}
	sets := []*outageSet{
		{name: "short", outage: *short, backoff: baseline.Predecessor},
		{name: "long", outage: *long, backoff: baseline.Predecessor.Scaled(*scale)},
	}
	var latencies []time.Duration
	for i, set := range sets {
		r, err := startRig(ctx, sim, recoveryEnv(set.backoff), false)
		if err != nil {
			return err
		}
		if i == 0 {
			fmt.Fprintf(stderr, "recovery: reading to MQTT, %d messages\n", *readings)
			latencies, err = measureReadingToMQTT(ctx, r, *readings)
		}
		if err == nil {
			fmt.Fprintf(stderr, "recovery: %d trials of %v outages\n", *trials, set.outage)
			set.trials, err = measureReplugs(ctx, r, *trials, set.outage, *seed, *latency)
		}
		if cerr := r.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s outages: %w", set.name, err)
		}
	}
	header()
	printFirstState(stdout, startTrials, sets, *latency, *scale)
	printDetection(stdout, sets)
	l := Summarize(latencies)
	fmt.Fprintf(stdout, "\nReading to MQTT (meter.Reading.Time, the meter's last reply of the snapshot, to the state message at a subscriber on the same Mosquitto; %d messages at a 1 s poll): median %s, worst %s, best %s.\n",
		l.N, Ms(l.Median), Ms(l.Max), Ms(l.Min))
	return nil
}

// recoveryEnv is the bridge's configuration for the trials: recoveryBaud, a
// 1 s poll and the given backoff.
func recoveryEnv(b baseline.Schedule) []string {
	return []string{
		fmt.Sprintf("EM340_SERIAL_BAUD=%d", recoveryBaud),
		"EM340_POLL_INTERVAL=1s",
		"EM340_RECONNECT_MIN_DELAY=" + b.First.String(),
		"EM340_RECONNECT_MAX_DELAY=" + b.Max.String(),
		fmt.Sprintf("EM340_RECONNECT_FACTOR=%g", b.Factor),
		"EM340_STALL_TIMEOUT=5m",
	}
}

// recoverySim is the simulated meter of the trials: a current EM340 with
// wire timing at recoveryBaud and the given answer latency.
func recoverySim(latency time.Duration) emsim.Options {
	return emsim.Options{FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB,
		WireTiming: true, Baud: recoveryBaud, Latency: latency}
}

// firstState is one start or replug as measured: the time to the first state
// message at the subscriber, and the wire minimum of the requests that led to
// it (the identity proof, then one snapshot).
type firstState struct {
	Took     time.Duration
	Wire     time.Duration
	Requests int
}

// excess is how far the first state came after the wire minimum.
func (f firstState) excess() time.Duration { return f.Took - f.Wire }

// replugTrial is one unplug/replug as measured.
type replugTrial struct {
	firstState
	Outage      time.Duration // unplug to replug, as it happened
	Reconnect   time.Duration // unplug to link "reconnecting" (OnLinkChange)
	Unavailable time.Duration // unplug to meter availability "offline" at the subscriber
}

type outageSet struct {
	name    string
	outage  time.Duration
	backoff baseline.Schedule // the bridge's, EM340_RECONNECT_*
	trials  []replugTrial
}

// throughSnapshot cuts reqs after the first snapshot (the plan's reads, in
// order): the requests the first state needed. ok is false if there is none.
func throughSnapshot(reqs []emsim.Request) (_ []emsim.Request, ok bool) {
	plan, err := meter.Plan(meter.Registers(), true, meter.MaxReadWords)
	if err != nil {
		return reqs, false
	}
	for end := len(plan); end <= len(reqs); end++ {
		match := true
		for i, b := range plan {
			q := reqs[end-len(plan)+i]
			match = match && q.Addr == b.Start && q.Count == b.Count
		}
		if match {
			return reqs[:end], true
		}
	}
	return reqs, false
}

// wireBefore is the first state's requests and their wire minimum: those the
// simulator logged before the message arrived, through the first snapshot.
func wireBefore(sim *emsim.Sim, at time.Time, latency time.Duration) (firstState, error) {
	var before []emsim.Request
	for _, q := range sim.Requests() {
		if q.Time.Before(at) {
			before = append(before, q)
		}
	}
	reqs, ok := throughSnapshot(before)
	if !ok {
		return firstState{}, fmt.Errorf("no whole snapshot among the %d requests before the first state: %+v", len(before), before)
	}
	return firstState{Wire: baseline.Requests(reqs, recoveryBaud, latency), Requests: len(reqs)}, nil
}

// measureStarts starts the bridge n times against one rig, each time from
// nothing (a new process would start so), and times the first state message.
func measureStarts(ctx context.Context, sim emsim.Options, n int) ([]firstState, error) {
	r, err := startRig(ctx, sim, recoveryEnv(baseline.Predecessor), true)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []firstState
	for i := 0; i < n; i++ {
		if err := waitCtx(ctx, 200*time.Millisecond); err != nil { // the line idle, the old session gone
			return out, err
		}
		r.Sim.ResetRequests()
		mark, started := r.HA.Mark(), time.Now()
		r.StartBridge()
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		first, err := r.HA.Await(wctx, mark, hass.On(r.Topics.MeterState(), nil))
		cancel()
		if err != nil {
			return out, fmt.Errorf("start %d: %w", i+1, err)
		}
		fs, err := wireBefore(r.Sim, first.At, sim.Latency)
		if err != nil {
			return out, fmt.Errorf("start %d: %w", i+1, err)
		}
		fs.Took = first.At.Sub(started)
		out = append(out, fs)
		if err := r.StopBridge(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// measureReplugs runs n unplug/replug trials against r.
func measureReplugs(ctx context.Context, r *rig, n int, outage time.Duration, seed uint64, latency time.Duration) ([]replugTrial, error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var trials []replugTrial
	for i := 0; i < n; i++ {
		tr, err := replugOnce(ctx, r, rng, outage, latency)
		if err != nil {
			return trials, fmt.Errorf("trial %d: %w", i+1, err)
		}
		trials = append(trials, tr)
	}
	return trials, nil
}

func replugOnce(ctx context.Context, r *rig, rng *rand.Rand, outage, latency time.Duration) (replugTrial, error) {
	var tr replugTrial
	wctx, cancel := context.WithTimeout(ctx, outage+2*time.Minute)
	defer cancel()
	state := hass.On(r.Topics.MeterState(), nil)
	// Start from a steady state: a reading published, then a random point of the poll cycle.
	if _, err := r.HA.Await(wctx, r.HA.Mark(), state); err != nil {
		return tr, err
	}
	if err := waitCtx(wctx, time.Duration(rng.Int64N(int64(r.Config.PollInterval)))); err != nil {
		return tr, err
	}
	mark, unplugged := r.HA.Mark(), time.Now()
	if err := r.Sim.Unplug(); err != nil {
		return tr, err
	}
	lost, err := r.WaitLink(wctx, unplugged, link.Reconnecting)
	if err != nil {
		return tr, err
	}
	tr.Reconnect = lost.At.Sub(unplugged)
	off, err := r.HA.Await(wctx, mark, hass.On(r.Topics.MeterAvailability(), brokertest.Equals("offline")))
	if err != nil {
		return tr, err
	}
	tr.Unavailable = off.At.Sub(unplugged)
	if err := waitCtx(wctx, time.Until(unplugged.Add(outage))); err != nil {
		return tr, err
	}
	r.Sim.ResetRequests()
	mark, replugged := r.HA.Mark(), time.Now()
	if err := r.Sim.Replug(); err != nil {
		return tr, err
	}
	tr.Outage = replugged.Sub(unplugged)
	first, err := r.HA.Await(wctx, mark, state)
	if err != nil {
		return tr, err
	}
	if tr.firstState, err = wireBefore(r.Sim, first.At, latency); err != nil {
		return tr, err
	}
	tr.Took = first.At.Sub(replugged)
	return tr, nil
}

// measureReadingToMQTT pairs each state message of the next n with the
// newest reading taken before it arrived: the time from the meter's last
// reply (meter.Reading.Time) to the message at the subscriber.
func measureReadingToMQTT(ctx context.Context, r *rig, n int) ([]time.Duration, error) {
	since, mark := time.Now(), r.HA.Mark()
	state := hass.On(r.Topics.MeterState(), nil)
	var out []time.Duration
	for len(out) < n {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		msg, err := r.HA.Await(wctx, mark, state)
		cancel()
		if err != nil {
			return out, err
		}
		mark = indexAfter(r.HA, mark, msg)
		var taken time.Time
		for _, rd := range r.Readings(since) {
			if rd.Taken.Before(msg.At) && rd.Taken.After(taken) {
				taken = rd.Taken
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
func indexAfter(s *hass.Subscriber, mark int, msg hass.Message) int {
	for i, m := range s.Messages(mark) {
		if m == msg {
			return mark + i + 1
		}
	}
	return s.Mark()
}

func printFirstState(w io.Writer, starts []firstState, sets []*outageSet, latency time.Duration, scale int) {
	fmt.Fprintf(w, "Whole bridge in-process (bridge.Run, as the binary runs it) against Mosquitto; simulator at %d baud with wire timing and "+
		"an assumed meter latency of %v; poll 1 s. First state = the first state message at an MQTT subscriber on the same broker; "+
		"start = just before bridge.Run, replug = just before emsim.Sim.Replug. "+
		"Wire minimum = Σ over exactly the requests the simulator logged before that message, through the first snapshot "+
		"(identity proof, then the snapshot's reads), of their frames at 10 bits a byte + %v latency, plus 40 ms between requests. "+
		"The predecessor's wait is its backoff's idle time after the replug (its attempts at the running sums of 2 s ×1.5 capped "+
		"at 60 s from the unplug, attempt time ignored, no device watch), before its own identity check and snapshot.\n\n",
		recoveryBaud, latency, latency)
	fmt.Fprintln(w, "| case | bridge backoff | trials | requests | first state: median / worst | wire minimum | over the wire minimum: median / worst | target ≤ 100 ms | predecessor's wait, unscaled / scaled schedule |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	row := func(name, backoff string, fs []firstState, pred string) {
		var took, wire, excess []time.Duration
		requests := map[int]int{}
		for _, f := range fs {
			took, wire, excess = append(took, f.Took), append(wire, f.Wire), append(excess, f.excess())
			requests[f.Requests]++
		}
		t, wi, ex := Summarize(took), Summarize(wire), Summarize(excess)
		met := "met"
		if ex.Max > target {
			met = "**missed**"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s / %s | %s | %s / %s | %s | %s |\n", name, backoff, t.N, counts(requests),
			Ms(t.Median), Ms(t.Max), spread(wi), Ms(ex.Median), Ms(ex.Max), met, pred)
	}
	row("start", "—", starts, "—")
	for _, s := range sets {
		var fs []firstState
		var pred []time.Duration
		for _, t := range s.trials {
			fs = append(fs, t.firstState)
			pred = append(pred, baseline.Predecessor.WaitAfterReplug(t.Outage))
		}
		scaled := "—"
		if s.backoff != baseline.Predecessor {
			scaled = Secs(s.backoff.WaitAfterReplug(s.outage))
		}
		row(fmt.Sprintf("replug after %v (%s)", s.outage, s.name),
			fmt.Sprintf("%v ×%g, cap %v (reached %s after the unplug)", s.backoff.First, s.backoff.Factor, s.backoff.Max, Secs(s.backoff.CapReachedAfter())),
			fs, fmt.Sprintf("%s / %s", Secs(Summarize(pred).Median), scaled))
	}
	long := sets[len(sets)-1]
	equiv := long.outage * time.Duration(scale)
	fmt.Fprintf(w, "\nThe long outages run on the default schedule divided by %d; the same outage unscaled is %v, beyond the unscaled cap (reached %s after the unplug), where the predecessor waits %s after the replug. "+
		"The predecessor's wait depends on where the replug falls between its attempts: past the cap, anything from 0 to 60 s, 30 s on average.\n",
		scale, equiv, Secs(baseline.Predecessor.CapReachedAfter()), Secs(baseline.Predecessor.WaitAfterReplug(equiv)))
}

// counts writes how often each request count occurred: "4", or "4 (×18), 5 (×2)".
func counts(n map[int]int) string {
	if len(n) == 1 {
		for k := range n {
			return fmt.Sprint(k)
		}
	}
	s := ""
	for _, k := range slices.Sorted(maps.Keys(n)) {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%d (×%d)", k, n[k])
	}
	return s
}

// spread is a sample's value, or its range when it varies.
func spread(s Summary) string {
	if s.Max-s.Min < 50*time.Microsecond {
		return Ms(s.Median)
	}
	return Ms(s.Min) + "–" + Ms(s.Max)
}

func printDetection(w io.Writer, sets []*outageSet) {
	fmt.Fprintln(w, "\nDetection, from just before emsim.Sim.Unplug (at a random point of the 1 s poll cycle, so some unplugs hit a request in flight):")
	fmt.Fprintln(w, "\n| trials | unplug → link \"reconnecting\" (OnLinkChange): median / worst | unplug → meter availability \"offline\" at the subscriber: median / worst |")
	fmt.Fprintln(w, "|---|---|---|")
	var rec, off []time.Duration
	for _, s := range sets {
		for _, t := range s.trials {
			rec, off = append(rec, t.Reconnect), append(off, t.Unavailable)
		}
	}
	r, o := Summarize(rec), Summarize(off)
	fmt.Fprintf(w, "| %d | %s / %s | %s / %s |\n", r.N, Ms(r.Median), Ms(r.Max), Ms(o.Median), Ms(o.Max))
}

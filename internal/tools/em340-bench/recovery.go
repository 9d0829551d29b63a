package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/proof"
	"github.com/em340-bridge/em340-bridge/link"
)

// resumeTarget: the first reading after a replug should come within this of
// the wire time of the identity check plus one snapshot.
const resumeTarget = 100 * time.Millisecond

type outageSet struct {
	name    string
	outage  time.Duration
	backoff link.ReconnectBackoff
	trials  []proof.Trial
}

func recovery(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("recovery", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trials := fs.Int("trials", 20, "unplug/replug trials per outage length")
	short := fs.Duration("short", 5*time.Second, "short outage (the bridge keeps its default backoff)")
	long := fs.Duration("long", 10*time.Second, "long outage (with the backoff scaled down by -scale, beyond its cap)")
	scale := fs.Int("scale", 20, "divide the default backoff (2 s, cap 60 s) by this for the long outages")
	latency := fs.Duration("latency", 5*time.Millisecond, "simulated meter answer latency")
	readings := fs.Int("readings", 60, "state messages for the reading-to-MQTT latency")
	seed := fs.Uint64("seed", 1, "places the unplugs in the poll cycle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scaled := link.ReconnectBackoff{Min: proof.PredecessorBackoff().Min / time.Duration(*scale),
		Max: proof.PredecessorBackoff().Max / time.Duration(*scale), Factor: proof.PredecessorBackoff().Factor}
	sets := []*outageSet{
		{name: "short", outage: *short, backoff: proof.PredecessorBackoff()},
		{name: "long", outage: *long, backoff: scaled},
	}
	var latencies []time.Duration
	for i, set := range sets {
		rig, err := proof.StartRig(ctx, proof.RigOptions{Sim: proof.RecoverySim(*latency), Env: proof.RecoveryEnv(set.backoff)})
		if err != nil {
			return err
		}
		if i == 0 {
			latencies, err = proof.MeasureReadingToMQTT(ctx, rig, *readings)
		}
		if err == nil {
			fmt.Fprintf(stderr, "recovery: %d trials of %v outages\n", *trials, set.outage)
			set.trials, err = proof.MeasureRecovery(ctx, rig, proof.RecoveryOptions{Trials: *trials, Outage: set.outage, Seed: *seed}, *latency)
		}
		if cerr := rig.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s outages: %w", set.name, err)
		}
	}
	header()
	printRecovery(stdout, sets, *latency, *scale)
	printDetection(stdout, sets)
	l := proof.Summarize(latencies)
	fmt.Fprintf(stdout, "\nReading to MQTT (meter.Reading.Time, the meter's last reply of the snapshot, to the state message at a subscriber on the same Mosquitto; %d messages at a 1 s poll): median %s, worst %s, best %s.\n",
		l.N, proof.Ms(l.Median), proof.Ms(l.Max), proof.Ms(l.Min))
	if l.N < *readings {
		return errors.New("too few state messages for the reading-to-MQTT latency")
	}
	return nil
}

func printRecovery(w io.Writer, sets []*outageSet, latency time.Duration, scale int) {
	fmt.Fprintf(w, "Whole bridge in-process (bridge.Run) against Mosquitto; simulator at 9600 baud with wire timing and %v latency; poll 1 s. "+
		"Replug = just before emsim.Sim.Replug; first reading = the first state message at an MQTT subscriber. "+
		"Wire = Σ over the requests logged by the simulator before that message (identity check, then one snapshot) of their frames at 10 bits a byte + latency, plus 40 ms between requests. "+
		"The predecessor's wait is its backoff's wait after the replug (its attempts at the running sums of 2 s ×1.5 capped at 60 s from the unplug, attempt time ignored, no device watch), before its own identity check and snapshot.\n\n", latency)
	fmt.Fprintln(w, "| outage | bridge backoff | trials | replug → first state: median / worst | wire (identity + snapshot): median | worst (first state − wire) | target ≤ 100 ms | predecessor wait, unscaled schedule, same outage | same, scaled schedule |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, s := range sets {
		var first, wire, excess []time.Duration
		var pred []time.Duration
		for _, t := range s.trials {
			first, wire, excess = append(first, t.FirstState), append(wire, t.Wire), append(excess, t.FirstState-t.Wire)
			pred = append(pred, t.Predecessor)
		}
		f, wi, ex, p := proof.Summarize(first), proof.Summarize(wire), proof.Summarize(excess), proof.Summarize(pred)
		met := "met"
		if ex.Max > resumeTarget || ex.Median > resumeTarget {
			met = "**missed**"
		}
		scaledPred := "—"
		if s.backoff != proof.PredecessorBackoff() {
			scaledPred = proof.Secs(s.backoff.WaitAfterReplug(s.outage))
		}
		fmt.Fprintf(w, "| %v (%s) | %v ×%g, cap %v (cap reached %s after the unplug) | %d | %s / %s | %s | %s | %s | %s (median of trials; worst %s) | %s |\n",
			s.outage, s.name, s.backoff.Min, s.backoff.Factor, s.backoff.Max, proof.Secs(proof.CapReachedAfter(s.backoff)), len(s.trials),
			proof.Ms(f.Median), proof.Ms(f.Max), proof.Ms(wi.Median), proof.Ms(ex.Max), met, proof.Secs(p.Median), proof.Secs(p.Max), scaledPred)
	}
	long := sets[len(sets)-1]
	equiv := long.outage * time.Duration(scale)
	fmt.Fprintf(w, "\nThe long outages run on the default schedule divided by %d; the same outage unscaled is %v, beyond the unscaled cap (reached %s after the unplug), where the predecessor waits %s after the replug. "+
		"The predecessor's wait depends on where the replug falls between its attempts: past the cap, anything from 0 to 60 s, 30 s on average.\n",
		scale, equiv, proof.Secs(proof.CapReachedAfter(proof.PredecessorBackoff())), proof.Secs(proof.PredecessorBackoff().WaitAfterReplug(equiv)))
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
	r, o := proof.Summarize(rec), proof.Summarize(off)
	fmt.Fprintf(w, "| %d | %s / %s | %s / %s |\n", r.N, proof.Ms(r.Median), proof.Ms(r.Max), proof.Ms(o.Median), proof.Ms(o.Max))
}

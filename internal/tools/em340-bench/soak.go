package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

func soak(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cycles := fs.Int("cycles", 1000, "unplug/replug cycles")
	seed := fs.Uint64("seed", 0, "random seed; 0 picks one from the clock")
	short := fs.Bool("short", false, "the short timings TestSoakShort uses")
	every := fs.Int("progress", 50, "print a progress line to stderr every N cycles (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	fmt.Fprintf(stderr, "soak: seed %d\n", *seed)
	o := FullSoak(*seed, *cycles)
	if *short {
		o = ShortSoak(*seed, *cycles)
	}
	o.Progress = func(r CycleReport) {
		if *every > 0 && r.Cycle%*every == 0 {
			fmt.Fprintf(stderr, "soak: cycle %d: outage %v, mute %v, broker restart %v, resumed in %v, %d goroutines, %d fds\n",
				r.Cycle, r.Outage.Round(time.Millisecond), r.Muted.Round(time.Millisecond), r.Restarted,
				r.Resume.Round(time.Millisecond), r.Resources.Goroutines, r.Resources.FDs)
		}
	}
	res, err := Soak(ctx, o)
	header()
	fmt.Fprintf(stdout, "Seed %d. Timings: before unplug %v–%v, outage %v–%v, mute %v–%v every %dth cycle, broker restart every %dth cycle (while unplugged or after the replug, %s). Bridge settings: `%v`.\n\n",
		*seed, o.Before.Min, o.Before.Max, o.Outage.Min, o.Outage.Max, o.Mute.Min, o.Mute.Max, o.MuteEvery, o.RestartEvery, placement(o), SoakEnv())
	fmt.Fprintln(stdout, "| quantity | value |\n|---|---|")
	fmt.Fprintf(stdout, "| cycles passed | %d of %d |\n", res.Cycles, *cycles)
	fmt.Fprintf(stdout, "| broker restarts / meter mutes | %d / %d |\n", res.Restarts, res.Mutes)
	fmt.Fprintf(stdout, "| goroutines: baseline / worst after settling (slack %d) | %d / %d |\n", o.Slack.Goroutines, res.Baseline.Goroutines, res.Worst.Goroutines)
	fmt.Fprintf(stdout, "| open fds: baseline / worst after settling (slack %d) | %d / %d |\n", o.Slack.FDs, res.Baseline.FDs, res.Worst.FDs)
	fmt.Fprintf(stdout, "| end of disturbance to fresh state message: median / worst | %s / %s |\n", Ms(res.Resume.Median), Ms(res.Resume.Max))
	fmt.Fprintf(stdout, "| link reconnects counted by the bridge | %d |\n", res.LinkReconnects)
	fmt.Fprintf(stdout, "| wall time | %v |\n", res.Elapsed.Round(time.Second))
	if err != nil {
		fmt.Fprintf(stdout, "| **FAILED** | cycle %d: %v |\n", res.FailedCycle, err)
	}
	return err
}

func placement(o SoakOptions) string {
	if o.AlternateRestarts {
		return "alternately"
	}
	return "at random"
}

// Span is a range of durations a random timing is drawn from.
type Span struct{ Min, Max time.Duration }

func (s Span) draw(rng *rand.Rand) time.Duration {
	if s.Max <= s.Min {
		return s.Min
	}
	return s.Min + time.Duration(rng.Int64N(int64(s.Max-s.Min)))
}

// SoakOptions bound a soak. Every timing is drawn from its span with a
// generator seeded by Seed, so a failing run can be repeated.
type SoakOptions struct {
	Cycles       int
	Seed         uint64
	Before       Span // online time before the unplug: lands anywhere in a poll cycle
	Outage       Span // unplugged time
	Mute         Span // meter silent after the replug, in cycles that mute
	MuteEvery    int  // every MuteEvery-th cycle (counting from MuteEvery/2) mutes the meter; 0: never
	RestartEvery int  // every RestartEvery-th cycle restarts the broker, while unplugged or after the replug; 0: never
	// AlternateRestarts places the restarts alternately while unplugged and
	// after the replug instead of at random, which bounds the run time for CI.
	AlternateRestarts bool
	Resume            time.Duration
	Settle            time.Duration // longest wait for goroutines and fds to come back
	Slack             Resources     // tolerated growth over the baseline
	Progress          func(CycleReport)
}

// ShortSoak is the form CI runs: short timings, every check.
func ShortSoak(seed uint64, cycles int) SoakOptions {
	return SoakOptions{Cycles: cycles, Seed: seed,
		Before: Span{0, 50 * time.Millisecond}, Outage: Span{5 * time.Millisecond, 50 * time.Millisecond},
		Mute: Span{50 * time.Millisecond, 400 * time.Millisecond}, MuteEvery: 10, RestartEvery: 10, AlternateRestarts: true,
		Resume: 30 * time.Second, Settle: 5 * time.Second, Slack: Resources{Goroutines: 6, FDs: 3}}
}

// FullSoak is the long form: outages up to a second, mutes up to a second.
func FullSoak(seed uint64, cycles int) SoakOptions {
	o := ShortSoak(seed, cycles)
	o.Before, o.Outage, o.Mute = Span{0, 500 * time.Millisecond}, Span{0, time.Second}, Span{50 * time.Millisecond, time.Second}
	o.AlternateRestarts = false
	return o
}

// SoakEnv configures the in-process bridge of a soak: a quick line and quick
// retries (the soak is about leaks and resumption, not about the schedule).
func SoakEnv() []string {
	return []string{
		"EM340_SERIAL_BAUD=115200",
		"EM340_MODBUS_TIMEOUT=600ms",
		"EM340_POLL_INTERVAL=500ms",
		"EM340_RECONNECT_MIN_DELAY=20ms",
		"EM340_RECONNECT_MAX_DELAY=200ms",
		"EM340_STALL_TIMEOUT=5s",
	}
}

// CycleReport is what one cycle did and found.
type CycleReport struct {
	Cycle     int
	Outage    time.Duration
	Muted     time.Duration // 0: no mute
	Restarted bool
	Resume    time.Duration // end of the last disturbance to a fresh state message
	Resources Resources     // after settling
}

// SoakResult sums a soak up.
type SoakResult struct {
	Seed            uint64
	Cycles          int
	Restarts, Mutes int
	Baseline, Worst Resources
	Resume          Summary
	Elapsed         time.Duration
	LinkReconnects  int
	FailedCycle     int // 0 when every cycle passed
}

// Soak runs o.Cycles unplug/replug cycles against the whole bridge in this
// process, with broker restarts and meter mutes interleaved, checking after
// each that a fresh state message arrives and that goroutines and fds do not
// grow. The rig is closed before it returns.
func Soak(ctx context.Context, o SoakOptions) (res SoakResult, err error) {
	start := time.Now()
	res.Seed = o.Seed
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9E3779B97F4A7C15))
	r, err := startRig(ctx, emsim.Options{}, SoakEnv(), false)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := r.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close rig: %w", cerr)
		}
		res.Elapsed = time.Since(start)
	}()
	first, cancel := context.WithTimeout(ctx, o.Resume)
	_, err = r.HA.Await(first, 0, hass.On(r.Topics.MeterState(), nil))
	cancel()
	if err != nil {
		return res, fmt.Errorf("first reading: %w", err)
	}
	var resumes []time.Duration
	for i := 1; i <= o.Cycles; i++ {
		rep, err := soakCycle(ctx, r, rng, o, i)
		if err != nil {
			res.FailedCycle = i
			return res, fmt.Errorf("cycle %d (seed %d): %w", i, o.Seed, err)
		}
		if i == 1 {
			if res.Baseline, err = Baseline(ctx); err != nil {
				return res, err
			}
			res.Worst = res.Baseline
		} else {
			if rep.Resources, err = Settle(ctx, res.Baseline, o.Slack, o.Settle); err != nil {
				res.FailedCycle = i
				return res, fmt.Errorf("cycle %d (seed %d): %w", i, o.Seed, err)
			}
			res.Worst.Goroutines = max(res.Worst.Goroutines, rep.Resources.Goroutines)
			res.Worst.FDs = max(res.Worst.FDs, rep.Resources.FDs)
		}
		res.Cycles = i
		if rep.Restarted {
			res.Restarts++
		}
		if rep.Muted > 0 {
			res.Mutes++
		}
		resumes = append(resumes, rep.Resume)
		if o.Progress != nil {
			o.Progress(rep)
		}
	}
	res.Resume = Summarize(resumes)
	res.LinkReconnects = r.LastLink().Reconnects
	return res, nil
}

func soakCycle(ctx context.Context, r *rig, rng *rand.Rand, o SoakOptions, i int) (CycleReport, error) {
	rep := CycleReport{Cycle: i, Outage: o.Outage.draw(rng), Restarted: o.RestartEvery > 0 && i%o.RestartEvery == 0}
	if o.MuteEvery > 0 && i%o.MuteEvery == o.MuteEvery/2 {
		rep.Muted = o.Mute.draw(rng)
	}
	restartWhileOut := rng.IntN(2) == 0
	if o.AlternateRestarts && o.RestartEvery > 0 {
		restartWhileOut = (i/o.RestartEvery)%2 == 0 // 2 of 5 in 50 cycles
	}
	muteAfter := Span{0, 100 * time.Millisecond}.draw(rng)
	r.HA.Forget(r.HA.Mark()) // a long soak would otherwise keep every message
	if err := waitCtx(ctx, o.Before.draw(rng)); err != nil {
		return rep, err
	}
	if err := r.Sim.Unplug(); err != nil {
		return rep, err
	}
	if rep.Restarted && restartWhileOut {
		if err := r.restartBroker(ctx); err != nil {
			return rep, err
		}
	}
	if err := waitCtx(ctx, rep.Outage); err != nil {
		return rep, err
	}
	if err := r.Sim.Replug(); err != nil {
		return rep, err
	}
	if rep.Muted > 0 {
		if err := waitCtx(ctx, muteAfter); err != nil {
			return rep, err
		}
		r.Sim.Mute(true)
		err := waitCtx(ctx, rep.Muted)
		r.Sim.Mute(false)
		if err != nil {
			return rep, err
		}
	}
	if rep.Restarted && !restartWhileOut {
		if err := r.restartBroker(ctx); err != nil {
			return rep, err
		}
	}
	from, mark := time.Now(), r.HA.Mark()
	wctx, cancel := context.WithTimeout(ctx, o.Resume)
	defer cancel()
	ev, err := r.WaitReading(wctx, from)
	if err != nil {
		return rep, fmt.Errorf("readings did not resume: %w (link %+v)", err, r.LastLink())
	}
	// A message that left before this reading reached the publisher may
	// carry an older one: only a later arrival counts as fresh.
	topic := r.Topics.MeterState()
	msg, err := r.HA.Await(wctx, mark, func(m hass.Message) bool { return m.Topic == topic && !m.At.Before(ev.At) })
	if err != nil {
		return rep, fmt.Errorf("no fresh state message: %w", err)
	}
	rep.Resume = msg.At.Sub(from)
	return rep, nil
}

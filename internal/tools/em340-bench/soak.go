package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/proof"
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
	o := proof.FullSoak(*seed, *cycles)
	if *short {
		o = proof.ShortSoak(*seed, *cycles)
	}
	o.Progress = func(r proof.CycleReport) {
		if *every > 0 && r.Cycle%*every == 0 {
			fmt.Fprintf(stderr, "soak: cycle %d: outage %v, mute %v, broker restart %v, resumed in %v, %d goroutines, %d fds\n",
				r.Cycle, r.Outage.Round(time.Millisecond), r.Muted.Round(time.Millisecond), r.Restarted,
				r.Resume.Round(time.Millisecond), r.Resources.Goroutines, r.Resources.FDs)
		}
	}
	res, err := proof.Soak(ctx, o)
	header()
	fmt.Fprintf(stdout, "Seed %d. Timings: before unplug %v–%v, outage %v–%v, mute %v–%v every %dth cycle, broker restart every %dth cycle (while unplugged or after the replug, %s). Bridge settings: `%v`.\n\n",
		*seed, o.Before.Min, o.Before.Max, o.Outage.Min, o.Outage.Max, o.Mute.Min, o.Mute.Max, o.MuteEvery, o.RestartEvery, placement(o), proof.SoakEnv())
	fmt.Fprintln(stdout, "| quantity | value |\n|---|---|")
	fmt.Fprintf(stdout, "| cycles passed | %d of %d |\n", res.Cycles, *cycles)
	fmt.Fprintf(stdout, "| broker restarts / meter mutes | %d / %d |\n", res.Restarts, res.Mutes)
	fmt.Fprintf(stdout, "| goroutines: baseline / worst after settling (slack %d) | %d / %d |\n", o.Slack.Goroutines, res.Baseline.Goroutines, res.Worst.Goroutines)
	fmt.Fprintf(stdout, "| open fds: baseline / worst after settling (slack %d) | %d / %d |\n", o.Slack.FDs, res.Baseline.FDs, res.Worst.FDs)
	fmt.Fprintf(stdout, "| end of disturbance to fresh state message: median / worst | %s / %s |\n", proof.Ms(res.Resume.Median), proof.Ms(res.Resume.Max))
	fmt.Fprintf(stdout, "| link reconnects counted by the bridge | %d |\n", res.LinkReconnects)
	fmt.Fprintf(stdout, "| wall time | %v |\n", res.Elapsed.Round(time.Second))
	if err != nil {
		fmt.Fprintf(stdout, "| **FAILED** | cycle %d: %v |\n", res.FailedCycle, err)
	}
	return err
}

func placement(o proof.SoakOptions) string {
	if o.AlternateRestarts {
		return "alternately"
	}
	return "at random"
}

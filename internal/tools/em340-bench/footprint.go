package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/proof"
)

func footprint(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("footprint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := proof.FootprintOptions{}
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "how long the bridge runs after its first reading")
	fs.DurationVar(&o.Poll, "poll", time.Second, "EM340_POLL_INTERVAL")
	fs.IntVar(&o.Baud, "baud", 9600, "line speed (simulator with wire timing)")
	fs.DurationVar(&o.Latency, "latency", 5*time.Millisecond, "simulated meter answer latency")
	fs.DurationVar(&o.Sample, "sample", 5*time.Second, "VmRSS sampling period")
	progress := fs.Bool("v", false, "print each sample to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *progress {
		o.Progress = func(el time.Duration, st proof.ProcStats) {
			fmt.Fprintf(stderr, "%v: VmRSS %s, VmHWM %s, CPU %v\n", el.Round(time.Second), mib(st.RSS), mib(st.HWM), st.CPU)
		}
	}
	res, err := proof.Footprint(ctx, o)
	if err != nil {
		return err
	}
	header()
	fmt.Fprintf(stdout, "Built with `%s`; the bridge runs against the simulator (%d baud, wire timing, %v latency) and Mosquitto, poll %v.\n\n",
		proof.BuildCommand(), o.Baud, o.Latency, o.Poll)
	fmt.Fprintln(stdout, "| quantity | value |\n|---|---|")
	fmt.Fprintf(stdout, "| binary size (stripped, trimpath) | %d bytes (%s) |\n", res.BinaryBytes, mib(res.BinaryBytes))
	fmt.Fprintf(stdout, "| start to first state message | %s |\n", proof.Ms(res.StartupToFirstState))
	fmt.Fprintf(stdout, "| measured span | %v (%d samples every %v) |\n", res.Duration.Round(time.Second), res.Samples, o.Sample)
	fmt.Fprintf(stdout, "| state messages in the span | %d |\n", res.StateMessages)
	fmt.Fprintf(stdout, "| VmRSS after first reading / at end / largest sample | %s / %s / %s |\n", mib(res.RSSStart), mib(res.RSSEnd), mib(res.RSSMax))
	fmt.Fprintf(stdout, "| VmHWM at end | %s |\n", mib(res.HWM))
	fmt.Fprintf(stdout, "| CPU time (utime+stime) in the span | %v = %.3f %% of one core |\n",
		res.CPU, 100*res.CPU.Seconds()/res.Duration.Seconds())
	fmt.Fprintf(stdout, "| CPU time since exec | %v |\n", res.CPUTotal)
	fmt.Fprintf(stdout, "| exit code after SIGTERM | %d |\n", res.ExitCode)
	fmt.Fprintf(stdout, "| WARN/ERROR lines in the bridge's log | %d |\n", len(res.Warnings))
	for i, w := range res.Warnings {
		if i == 5 {
			fmt.Fprintf(stdout, "\n… and %d more\n", len(res.Warnings)-i)
			break
		}
		fmt.Fprintf(stdout, "\n    %s\n", w)
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

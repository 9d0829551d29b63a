package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/proof"
)

func restart(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("restart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trials := fs.Int("trials", 10, "broker restarts per case")
	latency := fs.Duration("latency", 5*time.Millisecond, "simulated meter answer latency")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rig, err := proof.StartRig(ctx, proof.RigOptions{Sim: proof.RecoverySim(*latency), Env: proof.RecoveryEnv(proof.PredecessorBackoff())})
	if err != nil {
		return err
	}
	results := map[proof.RestartCase]proof.Summary{}
	for _, c := range []proof.RestartCase{proof.RestartIdle, proof.RestartMidPublish} {
		ds, merr := proof.MeasureBrokerRestart(ctx, rig, c, *trials)
		if merr != nil {
			err = merr
			break
		}
		results[c] = proof.Summarize(ds)
	}
	if cerr := rig.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	header()
	fmt.Fprintln(stdout, "Whole bridge in-process against Mosquitto (killed and restarted on the same port, persistence off); simulator at 9600 baud with wire timing; poll 1 s. Time from the restart to the first state message at a subscriber that reconnected at once.")
	fmt.Fprintln(stdout, "\n| restart lands | trials | median | worst |\n|---|---|---|---|")
	for _, c := range []proof.RestartCase{proof.RestartIdle, proof.RestartMidPublish} {
		s := results[c]
		fmt.Fprintf(stdout, "| %s | %d | %s | %s |\n", c, s.N, proof.Ms(s.Median), proof.Ms(s.Max))
	}
	return nil
}

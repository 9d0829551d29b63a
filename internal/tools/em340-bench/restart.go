package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
	"github.com/em340-bridge/em340-bridge/internal/hass"
)

// restartCase is where in the bridge's work a broker restart lands.
type restartCase int

const (
	// restartIdle restarts the broker a while after a state message, when the
	// bridge publishes nothing.
	restartIdle restartCase = iota + 1
	// restartMidPublish unplugs the meter and restarts the broker at once,
	// while the bridge publishes the link change; the meter is replugged 50 ms later.
	restartMidPublish
)

func (c restartCase) String() string {
	if c == restartMidPublish {
		return "right after an unplug (link change being published), replug 50 ms later"
	}
	return "idle (300 ms after a state message)"
}

func restart(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("restart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trials := fs.Int("trials", 10, "broker restarts per case")
	latency := fs.Duration("latency", 5*time.Millisecond, "simulated meter answer latency (an assumption)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := startRig(ctx, recoverySim(*latency), recoveryEnv(baseline.Predecessor), false)
	if err != nil {
		return err
	}
	cases := []restartCase{restartIdle, restartMidPublish}
	results := map[restartCase]Summary{}
	for _, c := range cases {
		ds, merr := measureBrokerRestart(ctx, r, c, *trials)
		if merr != nil {
			err = merr
			break
		}
		results[c] = Summarize(ds)
	}
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	header()
	fmt.Fprintf(stdout, "Whole bridge in-process against Mosquitto (killed and restarted on the same port, persistence off); simulator at %d baud with wire timing; poll 1 s. Time from the restart to the first state message at a subscriber that reconnected at once.\n", recoveryBaud)
	fmt.Fprintln(stdout, "\n| restart lands | trials | median | worst |\n|---|---|---|---|")
	for _, c := range cases {
		s := results[c]
		fmt.Fprintf(stdout, "| %s | %d | %s | %s |\n", c, s.N, Ms(s.Median), Ms(s.Max))
	}
	return nil
}

// measureBrokerRestart times, n times, a broker restart to the first state
// message that arrives after it at a (reconnected) subscriber.
func measureBrokerRestart(ctx context.Context, r *rig, c restartCase, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < n; i++ {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		d, err := restartOnce(wctx, r, c)
		cancel()
		if err != nil {
			return out, fmt.Errorf("%s, trial %d: %w", c, i+1, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func restartOnce(ctx context.Context, r *rig, c restartCase) (time.Duration, error) {
	topic := r.Topics.MeterState()
	if _, err := r.HA.Await(ctx, r.HA.Mark(), hass.On(topic, nil)); err != nil {
		return 0, err
	}
	if c == restartIdle {
		if err := waitCtx(ctx, 300*time.Millisecond); err != nil {
			return 0, err
		}
	} else if err := r.Sim.Unplug(); err != nil {
		return 0, err
	}
	mark, at := r.HA.Mark(), time.Now()
	if err := r.restartBroker(ctx); err != nil {
		return 0, err
	}
	if c == restartMidPublish {
		if err := waitCtx(ctx, time.Until(at.Add(50*time.Millisecond))); err != nil {
			return 0, err
		}
		if err := r.Sim.Replug(); err != nil {
			return 0, err
		}
	}
	msg, err := r.HA.Await(ctx, mark, func(m hass.Message) bool { return m.Topic == topic && m.At.After(at) })
	if err != nil {
		return 0, err
	}
	return msg.At.Sub(at), nil
}

package proof

import (
	"context"
	"fmt"
	"time"
)

// RestartCase is where in the bridge's work a broker restart lands.
type RestartCase int

const (
	// RestartIdle restarts the broker a while after a state message, when the
	// bridge publishes nothing.
	RestartIdle RestartCase = iota + 1
	// RestartMidPublish unplugs the meter and restarts the broker at once,
	// while the bridge publishes the link change; the meter is replugged 50 ms later.
	RestartMidPublish
)

func (c RestartCase) String() string {
	if c == RestartMidPublish {
		return "right after an unplug (link change being published), replug 50 ms later"
	}
	return "idle (300 ms after a state message)"
}

// MeasureBrokerRestart times, n times, a broker restart to the first state
// message that arrives after it at a (reconnected) subscriber.
func MeasureBrokerRestart(ctx context.Context, rig *Rig, c RestartCase, n int) ([]time.Duration, error) {
	topic := rig.Topics.MeterState()
	var out []time.Duration
	for i := 0; i < n; i++ {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		d, err := restartOnce(wctx, rig, c, topic)
		cancel()
		if err != nil {
			return out, fmt.Errorf("%s, trial %d: %w", c, i+1, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func restartOnce(ctx context.Context, rig *Rig, c RestartCase, topic string) (time.Duration, error) {
	if _, err := rig.Sub.Wait(ctx, rig.Sub.Mark(), topic, nil); err != nil {
		return 0, err
	}
	if c == RestartIdle {
		if err := waitCtx(ctx, 300*time.Millisecond); err != nil {
			return 0, err
		}
	} else if err := rig.Sim.Unplug(); err != nil {
		return 0, err
	}
	at := time.Now()
	if err := restartBroker(ctx, rig); err != nil {
		return 0, err
	}
	if c == RestartMidPublish {
		if err := waitCtx(ctx, time.Until(at.Add(50*time.Millisecond))); err != nil {
			return 0, err
		}
		if err := rig.Sim.Replug(); err != nil {
			return 0, err
		}
	}
	msg, err := rig.Sub.WaitFunc(ctx, 0, func(m Message) bool { return m.Topic == topic && m.At.After(at) })
	if err != nil {
		return 0, err
	}
	return msg.At.Sub(at), nil
}

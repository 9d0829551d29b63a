// Package demo is the bridge's tour for people without a meter: a simulated EM340, an embedded
// MQTT broker and the bridge in one process, shown on a terminal as Home Assistant would see them.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"golang.org/x/term"

	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/internal/hass"
)

// Options configure Run. The zero value runs until ctx is done, unplugging
// the adapter every 20 s for 6 s.
type Options struct {
	Duration    time.Duration // run this long, then stop; 0 = until ctx is done
	UnplugEvery time.Duration // pull the adapter out this often; 0 = default, < 0 = only on a key press
	Outage      time.Duration // how long it stays out; 0 = default
	Poll        time.Duration // the bridge's poll interval; 0 = default
	Plain       bool          // plain lines even on a terminal
	Version     string        // the bridge's version, as HA shows it
	// Logger gets the logs of the bridge, the simulator and the broker; nil
	// discards them, so the screen tells only the story.
	Logger *slog.Logger
	Stdin  io.Reader // key presses, when it is a terminal
	Stdout io.Writer // the story: a live view on a terminal, plain lines otherwise
}

// Defaults of Options.
const (
	DefaultUnplugEvery = 20 * time.Second
	DefaultOutage      = 6 * time.Second
	DefaultPoll        = 2 * time.Second
	minPoll            = 500 * time.Millisecond // what the bridge's configuration accepts
)

const (
	farewellWait = 500 * time.Millisecond // for the bridge's "offline" to reach HA
	redrawEvery  = 250 * time.Millisecond
)

// withDefaults fills in the zero fields.
func (o Options) withDefaults() Options {
	if o.UnplugEvery == 0 {
		o.UnplugEvery = DefaultUnplugEvery
	}
	if o.Outage == 0 {
		o.Outage = DefaultOutage
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	return o
}

// Check reports options Run would refuse, in a user's words.
func (o Options) Check() error {
	o = o.withDefaults()
	switch {
	case o.Duration < 0:
		return errors.New("the duration must not be negative")
	case o.Outage < 0:
		return errors.New("the outage must be positive")
	case o.UnplugEvery > 0 && o.UnplugEvery <= o.Outage:
		return fmt.Errorf("unplugging every %s leaves no time plugged in after an outage of %s", o.UnplugEvery, o.Outage)
	case o.Poll < minPoll:
		return fmt.Errorf("the bridge polls at most every %s", minPoll)
	}
	return nil
}

// Run runs the demo until ctx is done, Duration has passed or the user quits,
// and closes everything it started before it returns: nil then.
func Run(ctx context.Context, o Options) (err error) {
	if err := o.Check(); err != nil {
		return err
	}
	o = o.withDefaults()
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	scr := &screen{w: o.Stdout, width: 100, start: time.Now()}
	var keys <-chan byte
	if fd, ok := terminalFd(o.Stdout); ok && !o.Plain {
		scr.tty = true
		if w, _, err := term.GetSize(fd); err == nil && w > 20 {
			scr.width = w
		}
		if in, ok := terminalFd(o.Stdin); ok {
			kb, err := openKeyboard(in)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, kb.close()) }()
			keys = kb.keys
		}
	}
	defer scr.close()

	brk, err := startBroker(o.Logger)
	if err != nil {
		return err
	}
	defer brk.close()
	// The rig outlives ctx, so Ctrl-C still closes everything in order.
	rig, err := bridgetest.Start(context.WithoutCancel(ctx), bridgetest.Options{Broker: brk,
		Sim: meterOptions(o.Logger), Env: bridgeEnv(o.Poll), Logger: o.Logger.With("component", "bridge"),
		Bridge: func(b *bridge.Options) {
			b.Version, b.BirthDelay = o.Version, func() time.Duration { return 0 }
		},
		NoBridge: true, ClientID: "demo-home-assistant"})
	if err != nil {
		return fmt.Errorf("the simulated meter and HA's subscriber: %w", err)
	}
	defer func() { err = errors.Join(err, rig.Close()) }()

	scr.write(header(rig.Sim.Path(), brk.port, o, keys != nil)...)
	rig.StartBridge()
	s := &session{scr: scr, ha: hass.New(rig.Config.HADiscoveryPrefix), sub: rig.HA, log: o.Logger.With("component", "hass"),
		cycle: &cycle{adapter: rig.Sim, outage: o.Outage}, keys: keys != nil}
	defer s.cycle.stop()
	bridgeExited, loopErr := s.loop(ctx, o.UnplugEvery, keys, rig.Exited())

	// Shut the bridge down as SIGTERM would, and let HA hear it say goodbye.
	scr.setPanel(nil)
	if !bridgeExited {
		scr.event(time.Now(), "demo", "stopping the bridge as SIGTERM would: it tells HA it is going offline")
	}
	stopErr := rig.StopBridge()
	if bridgeExited {
		stopErr = errors.Join(errors.New("the bridge stopped by itself"), stopErr)
	}
	loopErr = errors.Join(loopErr, stopErr)
	s.farewell()
	s.summary(time.Now())
	return loopErr
}

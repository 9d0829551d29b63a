// Package bridge wires the meter, its serial link and Home Assistant over MQTT
// into the running daemon: polling, publishing, health and shutdown.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
)

// ProjectURL is where users find the project; HA shows it as the origin.
const ProjectURL = "https://github.com/em340-bridge/em340-bridge"

const (
	meterGap        = 40 * time.Millisecond // the EM340's minimum pause after a reply
	healthTick      = time.Second
	shutdownTimeout = 1500 * time.Millisecond // SIGTERM to exit within two seconds
	shutdownPublish = 700 * time.Millisecond  // of which telling HA "offline"
)

// Options configure Run.
type Options struct {
	Config  config.Config
	Version string
	Logger  *slog.Logger
	// BirthDelay is the wait before answering HA's birth message; nil means a
	// random 1–5 s, as HA advises.
	BirthDelay func() time.Duration
	// OnReading, if set, sees every reading handed to the publisher, with the
	// address of the meter it is of (the demo prints them).
	OnReading func(unit uint8, r meter.Reading)
	// OnLinkChange, if set, sees every link state change.
	OnLinkChange func(link.Status)

	beforePoll func(context.Context) // test seam: a deliberately stalled loop
}

// Run runs the bridge until ctx is done (a clean shutdown: "offline" is
// published, the broker connection and the port are closed) or a loop stalls
// (ErrStalled: the caller should exit non-zero so it gets restarted).
func Run(ctx context.Context, opts Options) error {
	cfg, log := opts.Config, opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.BirthDelay == nil {
		opts.BirthDelay = func() time.Duration { return time.Second + rand.N(4*time.Second) }
	}
	origin, err := discovery.NewOrigin(opts.Version, ProjectURL)
	if err != nil {
		return err
	}
	pub, err := newPublisher(cfg, origin, log, opts.BirthDelay)
	if err != nil {
		return err
	}
	mqttCfg, err := mqttConfig(cfg, pub.bridge, pub)
	if err != nil {
		return err
	}

	slots := make([]*slot, 0, len(cfg.ModbusAddresses))
	for _, mc := range cfg.Meters() {
		mlog := log.With("component", "meter", "unit", mc.Address)
		slots = append(slots, &slot{unit: mc.Address, deviceID: mc.DeviceID, log: mlog,
			meter: meter.New(meter.Options{Logger: mlog})})
	}
	linkUp := make(chan struct{}, 1)
	var linkState atomic.Value
	linkState.Store(link.Reconnecting)
	l := link.New(link.Config{
		Device: cfg.SerialDevice,
		Serial: link.Serial{Baud: cfg.SerialBaud, Parity: cfg.SerialParity, StopBits: cfg.SerialStopBits,
			Timeout: cfg.ModbusTimeout},
		Units:        cfg.ModbusAddresses,
		Backoff:      link.ReconnectBackoff{Min: cfg.ReconnectMinDelay, Max: cfg.ReconnectMaxDelay, Factor: cfg.ReconnectFactor},
		OfflineAfter: cfg.OfflineAfter,
		MinGap:       meterGap,
		Prove: func(ctx context.Context, unit uint8, r meter.Reader) error {
			for _, s := range slots {
				if s.unit == unit {
					return s.prove(ctx, r, pub)
				}
			}
			return fmt.Errorf("unit %d: %w", unit, link.ErrUnknownUnit)
		},
		OnChange: func(st link.Status) {
			linkState.Store(st.State)
			pub.linkChanged(st)
			if st.State == link.Online {
				select { // read at once: resuming must not wait for the next tick
				case linkUp <- struct{}{}:
				default:
				}
			}
			if opts.OnLinkChange != nil {
				opts.OnLinkChange(st)
			}
		},
		Logger: log.With("component", "link"),
	})

	mqttCtx, stopMQTT := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMQTT()
	cm, err := autopaho.NewConnection(mqttCtx, mqttCfg)
	if err != nil {
		return fmt.Errorf("MQTT: %w", err)
	}

	work, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var wg sync.WaitGroup
	linkCtx, stopLink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLink()
	var linkDone sync.WaitGroup
	linkDone.Go(func() {
		if err := l.Run(linkCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("serial link stopped", "err", err)
		}
	})

	pollBeat, pubBeat := &heartbeat{name: "poll"}, &heartbeat{name: "publish"}
	pollBeat.beat()
	pubBeat.beat()
	var lastPoll atomic.Int64
	wg.Go(func() {
		poll(work, pollLoop{cfg: cfg, link: l, slots: slots, pub: pub, linkUp: linkUp, beat: pollBeat.beat,
			before: opts.beforePoll, onReading: opts.OnReading, log: log, lastPoll: &lastPoll})
	})
	wg.Go(func() {
		pub.run(work, healthTick, func(connected bool, since time.Time, refusal string) {
			pubBeat.beat()
			st := HealthStatus{PID: os.Getpid(), Updated: time.Now(), MQTTConnected: connected, MQTTSince: since, MQTTRefusal: refusal,
				Link: string(linkState.Load().(link.LinkState)), LastPoll: time.Unix(0, lastPoll.Load()), StallTimeout: cfg.StallTimeout}
			if err := writeStatus(cfg.StatusFile, st); err != nil {
				log.Warn("cannot write status file", "path", cfg.StatusFile, "err", err)
			}
		})
	})

	runErr := watch(ctx, cfg.StallTimeout, pollBeat, pubBeat)
	if runErr != nil {
		log.Error("exiting so the bridge gets restarted", "err", runErr)
	}

	// Shut down in order: stop polling and tell HA (the publisher does as it
	// returns), leave the broker, close the port.
	stopWork()
	if runErr == nil {
		wg.Wait() // a stalled loop may never return; don't wait for it then
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout-shutdownPublish)
	defer cancel()
	if err := cm.Disconnect(sctx); err != nil {
		log.Warn("MQTT disconnect", "err", err)
	}
	stopLink()
	if runErr == nil {
		linkDone.Wait()
	}
	return runErr
}

// watch returns nil when ctx is done, or an ErrStalled error when a loop stops.
func watch(ctx context.Context, limit time.Duration, loops ...*heartbeat) error {
	every := max(limit/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if err := stalled(now, limit, loops...); err != nil {
				return err
			}
		}
	}
}

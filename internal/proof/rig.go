package proof

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// stopTimeout bounds the bridge's shutdown; it only detects a hang.
const stopTimeout = 20 * time.Second

// RigOptions set up a Rig.
type RigOptions struct {
	Sim    emsim.Options // the simulated meter; Serial defaults to 235411W
	Env    []string      // EM340_* settings added after (so overriding) the rig's own
	Logger *slog.Logger  // the bridge's logger; nil discards
}

// LinkEvent is a link state change as the bridge's OnLinkChange saw it.
type LinkEvent struct {
	Status link.Status
	At     time.Time
}

// ReadingEvent is a reading as the bridge's OnReading saw it.
type ReadingEvent struct {
	Taken time.Time // meter.Reading.Time: the meter's last reply of the snapshot
	At    time.Time // when OnReading ran
}

// Rig is the whole bridge in this process (bridge.Run) with real parts around
// it: the simulator on a pty, Mosquitto, and a subscriber in HA's place.
type Rig struct {
	Sim    *emsim.Sim
	Broker *brokertest.Process
	Sub    *Subscriber
	Topics discovery.Topics // of the simulated meter
	Config config.Config

	dir    string
	cancel context.CancelFunc
	done   chan error

	mu       sync.Mutex // guards what follows
	links    []LinkEvent
	readings []ReadingEvent
	changed  chan struct{}
}

// StartRig starts the simulator, the broker, the subscriber and the bridge.
// Close stops them all.
func StartRig(ctx context.Context, o RigOptions) (_ *Rig, err error) {
	if o.Sim.Serial == "" {
		o.Sim.Serial = "235411W"
	}
	dir, err := os.MkdirTemp("", "em340-proof-")
	if err != nil {
		return nil, err
	}
	r := &Rig{dir: dir, changed: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
		}
	}()
	device := filepath.Join(dir, "ttyUSB0")
	r.Sim = emsim.New(o.Sim)
	if err := r.Sim.Start(device); err != nil {
		return nil, err
	}
	if r.Broker, err = brokertest.StartProcess(false); err != nil {
		return nil, err
	}
	if r.Sub, err = Subscribe(ctx, r.Broker.Addr(), "proof-ha"); err != nil {
		return nil, err
	}
	env := append([]string{
		"EM340_SERIAL_DEVICE=" + device,
		"EM340_MQTT_URL=" + r.Broker.URL(),
		"EM340_STATUS_FILE=" + filepath.Join(dir, "status"),
	}, o.Env...)
	if r.Config, err = config.Load(env); err != nil {
		return nil, err
	}
	if r.Topics, err = discovery.NewTopics(r.Config.MQTTBaseTopic, r.Config.HADiscoveryPrefix, o.Sim.Serial); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = cancel, make(chan error, 1)
	opts := bridge.Options{Config: r.Config, Version: "proof", Logger: log,
		BirthDelay:   func() time.Duration { return 50 * time.Millisecond },
		OnReading:    func(_ uint8, rd meter.Reading) { r.onReading(rd) },
		OnLinkChange: r.onLink,
	}
	go func() { r.done <- bridge.Run(runCtx, opts) }()
	return r, nil
}

func (r *Rig) onReading(rd meter.Reading) {
	r.mu.Lock()
	r.readings = append(r.readings, ReadingEvent{Taken: rd.Time, At: time.Now()})
	r.mu.Unlock()
	r.signal()
}

func (r *Rig) onLink(st link.Status) {
	r.mu.Lock()
	r.links = append(r.links, LinkEvent{Status: st, At: time.Now()})
	r.mu.Unlock()
	r.signal()
}

func (r *Rig) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Readings returns the readings taken at or after since.
func (r *Rig) Readings(since time.Time) []ReadingEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ReadingEvent
	for _, e := range r.readings {
		if !e.Taken.Before(since) {
			out = append(out, e)
		}
	}
	return out
}

// Forget drops the recorded link events and readings (for a long soak).
func (r *Rig) Forget() {
	r.mu.Lock()
	r.links, r.readings = nil, nil
	r.mu.Unlock()
}

// WaitLink returns the first link change to state at or after since.
func (r *Rig) WaitLink(ctx context.Context, since time.Time, state link.LinkState) (LinkEvent, error) {
	for {
		r.mu.Lock()
		for _, e := range r.links {
			if !e.At.Before(since) && e.Status.State == state {
				r.mu.Unlock()
				return e, nil
			}
		}
		r.mu.Unlock()
		if err := r.wait(ctx); err != nil {
			return LinkEvent{}, fmt.Errorf("link %s: %w", state, err)
		}
	}
}

// WaitReading returns the first reading taken at or after since.
func (r *Rig) WaitReading(ctx context.Context, since time.Time) (ReadingEvent, error) {
	for {
		if rs := r.Readings(since); len(rs) > 0 {
			return rs[0], nil
		}
		if err := r.wait(ctx); err != nil {
			return ReadingEvent{}, fmt.Errorf("reading: %w", err)
		}
	}
}

func (r *Rig) wait(ctx context.Context) error {
	select {
	case <-r.changed:
		return nil
	case <-time.After(20 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the bridge (as SIGTERM would), then the subscriber, the broker
// and the simulator, and removes the rig's files.
func (r *Rig) Close() error {
	var err error
	if r.cancel != nil {
		r.cancel()
		select {
		case runErr := <-r.done:
			err = runErr
		case <-time.After(stopTimeout):
			err = errors.New("bridge did not stop")
		}
		r.cancel = nil
	}
	if r.Sub != nil {
		r.Sub.Close()
	}
	if r.Broker != nil {
		err = errors.Join(err, r.Broker.Close())
	}
	if r.Sim != nil {
		err = errors.Join(err, r.Sim.Close())
	}
	return errors.Join(err, os.RemoveAll(r.dir))
}

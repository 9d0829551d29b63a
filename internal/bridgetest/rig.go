// Package bridgetest runs the whole bridge in one process against real parts:
// the simulated meter on a pty, an MQTT broker and Home Assistant's subscriber,
// for the bridge's tests, the benchmark command and the demo.
package bridgetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// Serial is the simulated meter's serial number unless Options.Sim names one.
const Serial = "235411W"

const (
	stopTimeout = 20 * time.Second // bounds the bridge's shutdown; only detects a hang
	keepEvents  = 1024             // link events and readings kept, the latest
)

// Broker is where the rig's bridge and subscriber connect: a Mosquitto of
// brokertest, or the demo's embedded broker.
type Broker interface {
	URL() string  // for EM340_MQTT_URL
	Addr() string // host:port of a plain listener, for the subscriber
}

// Options set up a Rig.
type Options struct {
	Broker Broker
	Sim    emsim.Options // the simulated meter; Serial defaults to Serial
	// More are further meters on the same line, each at its own Address;
	// EM340_MODBUS_ADDRESS then lists every meter's, Sim's first.
	More []emsim.Options
	// Gateway, if set, serves the line behind a gateway on loopback in this
	// framing instead of a pty; the bridge is given its URL.
	Gateway   emsim.Framing
	Tree      bool // lay the adapter out as udev does; the bridge uses its by-id link
	Unplugged bool // the adapter starts unplugged
	// Env holds EM340_* settings, added after the rig's own (the device, the
	// broker and a status file), so they may override them.
	Env    []string
	Logger *slog.Logger // the bridge's; nil discards
	// Bridge makes last changes to the bridge's options (hooks, the birth
	// delay, which is 50 ms otherwise); the rig's own hooks still run.
	Bridge   func(*bridge.Options)
	NoBridge bool   // do not start the bridge; StartBridge does
	ClientID string // the subscriber's MQTT client id; "em340-ha" if empty
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

// Rig is the whole bridge in this process (bridge.Run, as the binary runs it)
// with the simulator on a pty, a broker, and a subscriber in HA's place.
type Rig struct {
	Sim     *emsim.Sim
	Sims    []*emsim.Sim   // every meter on the line, Sim first
	Bus     *emsim.Bus     // the line of Sims, when there are several or a gateway; nil: Sim plugs itself
	Gateway *emsim.Gateway // with Options.Gateway
	HA      *hass.Subscriber
	Config  config.Config    // what StartBridge runs with; change it between StopBridge and StartBridge
	Topics  discovery.Topics // of the simulated meter, by its serial number

	dir    string
	opts   Options
	cancel context.CancelFunc
	exited chan struct{}
	runErr error // Run's result, once exited is closed

	mu       sync.Mutex // guards what follows
	links    []LinkEvent
	readings []ReadingEvent
	changed  chan struct{} // closed at the next event, then replaced
}

// Start starts the simulator, the subscriber and (unless o.NoBridge) the
// bridge. Close stops them all; the broker is the caller's.
func Start(ctx context.Context, o Options) (_ *Rig, err error) {
	if o.Sim.Serial == "" {
		o.Sim.Serial = Serial
	}
	if o.ClientID == "" {
		o.ClientID = "em340-ha"
	}
	dir, err := os.MkdirTemp("", "em340-rig-")
	if err != nil {
		return nil, err
	}
	r := &Rig{dir: dir, opts: o, changed: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
		}
	}()
	device, err := r.plug(o)
	if err != nil {
		return nil, err
	}
	if r.HA, err = hass.Dial(ctx, o.Broker.Addr(), o.ClientID, "#"); err != nil {
		return nil, err
	}
	env := []string{
		"EM340_SERIAL_DEVICE=" + device,
		"EM340_MQTT_URL=" + o.Broker.URL(),
		"EM340_STATUS_FILE=" + filepath.Join(dir, "status"),
	}
	if len(o.More) > 0 {
		addrs := make([]string, 0, len(r.Sims))
		for _, so := range append([]emsim.Options{o.Sim}, o.More...) {
			addrs = append(addrs, strconv.Itoa(int(max(so.Address, 1))))
		}
		env = append(env, "EM340_MODBUS_ADDRESS="+strings.Join(addrs, ","))
	}
	env = append(env, o.Env...)
	if r.Config, err = config.Load(env); err != nil {
		return nil, err
	}
	if r.Topics, err = discovery.NewTopics(r.Config.MQTTBaseTopic, r.Config.HADiscoveryPrefix, o.Sim.Serial); err != nil {
		return nil, err
	}
	if !o.NoBridge {
		r.StartBridge()
	}
	return r, nil
}

// plug puts the meters on their line and returns the device the bridge is
// given: a lone meter plugs itself in (a pty, or udev's tree), several share
// a Bus, and a gateway serves the Bus on loopback.
func (r *Rig) plug(o Options) (string, error) {
	r.Sim = emsim.New(o.Sim)
	r.Sims = []*emsim.Sim{r.Sim}
	for _, so := range o.More {
		r.Sims = append(r.Sims, emsim.New(so))
	}
	type plugger interface {
		Start(path string) error
		StartTree(t emsim.DevTree) error
		Unplug() error
		ByIDPath() string
	}
	var line plugger = r.Sim
	if len(r.Sims) > 1 || o.Gateway != 0 {
		bus, err := emsim.NewBus(r.Sims...)
		if err != nil {
			return "", err
		}
		r.Bus, line = bus, bus
	}
	if o.Gateway != 0 {
		gw, err := emsim.ListenTCP("127.0.0.1:0", o.Gateway, r.Bus)
		if err != nil {
			return "", err
		}
		r.Gateway = gw
		return gw.URL(), nil
	}
	device := filepath.Join(r.dir, "ttyUSB0")
	if o.Tree {
		root := filepath.Join(r.dir, "dev")
		if err := os.Mkdir(root, 0o755); err != nil {
			return "", err
		}
		if err := line.StartTree(emsim.DevTree{Root: root}); err != nil {
			return "", err
		}
		device = line.ByIDPath()
	} else if err := line.Start(device); err != nil {
		return "", err
	}
	if o.Unplugged {
		if err := line.Unplug(); err != nil {
			return "", err
		}
	}
	return device, nil
}

// MeterTopics are the topics of the meter with this serial number.
func (r *Rig) MeterTopics(serial string) (discovery.Topics, error) {
	return discovery.NewTopics(r.Config.MQTTBaseTopic, r.Config.HADiscoveryPrefix, serial)
}

// StartBridge runs the bridge with r.Config, as the binary would: with
// Options.NoBridge, or again after StopBridge.
func (r *Rig) StartBridge() {
	log := r.opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := bridge.Options{Config: r.Config, Version: "test", Logger: log,
		BirthDelay: func() time.Duration { return 50 * time.Millisecond }}
	if r.opts.Bridge != nil {
		r.opts.Bridge(&opts)
	}
	onReading, onLink := opts.OnReading, opts.OnLinkChange
	opts.OnReading = func(unit uint8, rd meter.Reading) {
		r.record(func() { r.readings = keep(r.readings, ReadingEvent{Taken: rd.Time, At: time.Now()}) })
		if onReading != nil {
			onReading(unit, rd)
		}
	}
	opts.OnLinkChange = func(st link.Status) {
		r.record(func() { r.links = keep(r.links, LinkEvent{Status: st, At: time.Now()}) })
		if onLink != nil {
			onLink(st)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	r.cancel, r.exited = cancel, exited
	go func() {
		err := bridge.Run(ctx, opts)
		r.mu.Lock()
		r.runErr = err
		r.mu.Unlock()
		close(exited)
	}()
}

// Exited is closed when the bridge's Run has returned; nil before StartBridge.
func (r *Rig) Exited() <-chan struct{} { return r.exited }

// StopBridge stops the bridge as SIGTERM would and returns Run's error (at
// once if it has stopped by itself); nil if it is not running.
func (r *Rig) StopBridge() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case <-r.exited:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.runErr
	case <-time.After(stopTimeout):
		return fmt.Errorf("the bridge did not stop within %s", stopTimeout)
	}
}

func keep[E any](events []E, e E) []E {
	if len(events) >= keepEvents {
		events = append(events[:0], events[len(events)-keepEvents+1:]...)
	}
	return append(events, e)
}

func (r *Rig) record(add func()) {
	r.mu.Lock()
	add()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// Readings returns the readings (of the latest kept) taken at or after since.
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

// LastLink is the link's latest status as the bridge reported it.
func (r *Rig) LastLink() link.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.links) == 0 {
		return link.Status{}
	}
	return r.links[len(r.links)-1].Status
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
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return LinkEvent{}, fmt.Errorf("link %s: %w", state, ctx.Err())
		}
	}
}

// WaitReading returns the first reading taken at or after since.
func (r *Rig) WaitReading(ctx context.Context, since time.Time) (ReadingEvent, error) {
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if rs := r.Readings(since); len(rs) > 0 {
			return rs[0], nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ReadingEvent{}, fmt.Errorf("reading: %w", ctx.Err())
		}
	}
}

// Close stops the bridge, then the subscriber and the simulator, and removes
// the rig's files.
func (r *Rig) Close() error {
	err := r.StopBridge()
	if r.HA != nil {
		r.HA.Close()
	}
	if r.Gateway != nil {
		err = errors.Join(err, r.Gateway.Close())
	}
	switch {
	case r.Bus != nil:
		err = errors.Join(err, r.Bus.Close())
	case r.Sim != nil:
		err = errors.Join(err, r.Sim.Close())
	}
	return errors.Join(err, os.RemoveAll(r.dir))
}

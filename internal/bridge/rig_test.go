package bridge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// wait bounds every expectation: generous, it only detects a hang.
const wait = 20 * time.Second

// rig is the whole bridge with real parts: Mosquitto on a free loopback port,
// the simulator on a pty, and a subscriber that reads what HA would read.
type rig struct {
	t      *testing.T
	broker *brokertest.Broker
	ha     *brokertest.Subscriber
	sim    *emsim.Sim
	cfg    config.Config
	topics discovery.Topics // for the simulator's meter
	cancel context.CancelFunc
	done   chan error
}

type rigOptions struct {
	env       []string // extra EM340_* settings
	sim       emsim.Options
	unplug    bool // start with the adapter unplugged
	hook      func(context.Context)
	onReading func(meter.Reading)
	noBridge  bool
	tls       bool // the bridge talks TLS to the broker (the subscriber stays on the plain listener)
	byID      bool // the adapter is laid out as udev does and the bridge uses its by-id link
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, done: make(chan error, 1)}
	var brokerURL string
	if o.tls {
		r.broker = brokertest.StartTLS(t)
		brokerURL = r.broker.TLSURL()
		o.env = append(o.env, "EM340_MQTT_CA_FILE="+r.broker.CAFile)
	} else {
		r.broker = brokertest.Start(t)
		brokerURL = r.broker.URL()
	}
	r.ha = brokertest.Subscribe(t, r.broker, "#")
	dir := t.TempDir()
	device := filepath.Join(dir, "ttyUSB0")
	if o.sim.Serial == "" {
		o.sim.Serial, o.sim.FineEnergy, o.sim.ProductionYear = "235411W", true, 2021
		o.sim.MeasurementMode, o.sim.FirmwareVersion = meter.MeasurementModeB, 1
	}
	r.sim = emsim.New(o.sim)
	if o.byID {
		root := filepath.Join(dir, "dev")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := r.sim.StartTree(emsim.DevTree{Root: root}); err != nil {
			t.Fatal(err)
		}
		device = r.sim.ByIDPath()
	} else if err := r.sim.Start(device); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.sim.Close() })
	if o.unplug {
		if err := r.sim.Unplug(); err != nil {
			t.Fatal(err)
		}
	}
	env := append([]string{
		"EM340_SERIAL_DEVICE=" + device,
		"EM340_SERIAL_BAUD=115200",
		"EM340_MODBUS_TIMEOUT=600ms",
		"EM340_POLL_INTERVAL=500ms",
		"EM340_MQTT_URL=" + brokerURL,
		"EM340_RECONNECT_MIN_DELAY=50ms",
		"EM340_RECONNECT_MAX_DELAY=1s",
		"EM340_STATUS_FILE=" + filepath.Join(dir, "status"),
		"EM340_STALL_TIMEOUT=5s",
	}, o.env...)
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg = cfg
	r.topics, err = discovery.NewTopics(cfg.MQTTBaseTopic, cfg.HADiscoveryPrefix, "235411W")
	if err != nil {
		t.Fatal(err)
	}
	if !o.noBridge {
		r.start(o.hook, o.onReading)
	}
	return r
}

func (r *rig) start(hook func(context.Context), onReading func(meter.Reading)) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("EM340_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var onUnitReading func(uint8, meter.Reading)
	if onReading != nil {
		onUnitReading = func(_ uint8, rd meter.Reading) { onReading(rd) }
	}
	opts := Options{Config: r.cfg, Version: "test", Logger: log, beforePoll: hook, OnReading: onUnitReading,
		BirthDelay: func() time.Duration { return 50 * time.Millisecond }}
	go func() { r.done <- Run(ctx, opts) }()
	r.t.Cleanup(func() { _ = r.stop() })
}

// stop shuts the bridge down as SIGTERM would and returns Run's error.
func (r *rig) stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(wait):
		r.t.Error("bridge did not stop")
		return nil
	}
}

// state waits for a meter state message after mark and decodes it.
func (r *rig) state(mark int) map[string]any {
	r.t.Helper()
	m := r.ha.Wait(mark, r.topics.MeterState(), nil, wait)
	var v map[string]any
	if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
		r.t.Fatal(err)
	}
	return v
}

// confirmedState waits for a state after mark that carries the energy totals:
// at start the meter confirms them with a second agreeing read, so the first
// state has none.
func (r *rig) confirmedState(mark int) map[string]any {
	r.t.Helper()
	m := r.ha.Wait(mark, r.topics.MeterState(), func(p string) bool { return strings.Contains(p, `"energy_import":`) }, wait)
	var v map[string]any
	if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
		r.t.Fatal(err)
	}
	return v
}

// linkState waits for the link entity to say state after mark.
func (r *rig) linkState(mark int, state string) map[string]any {
	r.t.Helper()
	m := r.ha.Wait(mark, r.topics.Link(), func(p string) bool {
		var v map[string]any
		return json.Unmarshal([]byte(p), &v) == nil && v["state"] == state
	}, wait)
	var v map[string]any
	_ = json.Unmarshal([]byte(m.Payload), &v)
	return v
}

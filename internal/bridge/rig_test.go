package bridge_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// wait bounds every expectation: generous, it only detects a hang.
const wait = 20 * time.Second

// rig is the whole bridge with real parts (bridgetest.Rig) in a test:
// Mosquitto on a free loopback port, the simulator on a pty, and HA's
// subscriber, whose waits fail the test.
type rig struct {
	*bridgetest.Rig
	t      *testing.T
	broker *brokertest.Broker
	ha     *brokertest.Subscriber
}

type rigOptions struct {
	env       []string // extra EM340_* settings
	sim       emsim.Options
	unplug    bool // start with the adapter unplugged
	hook      func(context.Context)
	onReading func(meter.Reading)
	noBridge  bool
	tls       bool            // the bridge talks TLS to the broker (the subscriber stays on the plain listener)
	byID      bool            // the adapter is laid out as udev does and the bridge uses its by-id link
	more      []emsim.Options // further meters on the line (bridgetest.Options.More)
	gateway   emsim.Framing   // the line behind a gateway (bridgetest.Options.Gateway)
}

// testEnv is a quick line and quick retries: tests wait for behaviour, not
// for the defaults' pace.
var testEnv = []string{
	"EM340_SERIAL_BAUD=115200",
	"EM340_MODBUS_TIMEOUT=600ms",
	"EM340_POLL_INTERVAL=500ms",
	"EM340_RECONNECT_MIN_DELAY=50ms",
	"EM340_RECONNECT_MAX_DELAY=1s",
	"EM340_STALL_TIMEOUT=5s",
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t}
	env := append(append([]string(nil), testEnv...), o.env...)
	if o.tls {
		r.broker = brokertest.StartTLS(t)
		env = append(env, "EM340_MQTT_URL="+r.broker.TLSURL(), "EM340_MQTT_CA_FILE="+r.broker.CAFile)
	} else {
		r.broker = brokertest.Start(t)
	}
	if o.sim.Serial == "" {
		o.sim.Serial, o.sim.FineEnergy, o.sim.ProductionYear = bridgetest.Serial, true, 2021
		o.sim.MeasurementMode, o.sim.FirmwareVersion = meter.MeasurementModeB, 1
	}
	var log *slog.Logger
	if os.Getenv("EM340_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	rg, err := bridgetest.Start(ctx, bridgetest.Options{Broker: r.broker, Sim: o.sim, More: o.more, Gateway: o.gateway,
		Tree: o.byID, Unplugged: o.unplug,
		Env: env, Logger: log, NoBridge: o.noBridge, ClientID: "test-ha-" + strings.ReplaceAll(t.Name(), "/", "-"),
		Bridge: func(opts *bridge.Options) {
			bridge.SetBeforePoll(opts, o.hook)
			if o.onReading != nil {
				opts.OnReading = func(_ uint8, rd meter.Reading) { o.onReading(rd) }
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rg.Close(); err != nil {
			t.Errorf("close the rig: %v", err)
		}
	})
	r.Rig, r.ha = rg, brokertest.For(t, rg.HA)
	return r
}

// stop shuts the bridge down as SIGTERM would and returns Run's error.
func (r *rig) stop() error { return r.StopBridge() }

// state waits for a meter state message after mark and decodes it.
func (r *rig) state(mark int) map[string]any {
	r.t.Helper()
	return decode(r.t, r.ha.Wait(mark, r.Topics.MeterState(), nil, wait))
}

// confirmedState waits for a state after mark that carries the energy totals:
// at start the meter confirms them with a second agreeing read, so the first
// state has none.
func (r *rig) confirmedState(mark int) map[string]any {
	r.t.Helper()
	return decode(r.t, r.ha.Wait(mark, r.Topics.MeterState(), func(p string) bool { return strings.Contains(p, `"energy_import":`) }, wait))
}

// linkState waits for the link entity to say state after mark.
func (r *rig) linkState(mark int, state string) map[string]any {
	r.t.Helper()
	return decode(r.t, r.ha.Wait(mark, r.Topics.Link(), func(p string) bool {
		var v map[string]any
		return json.Unmarshal([]byte(p), &v) == nil && v["state"] == state
	}, wait))
}

func decode(t *testing.T, m hass.Message) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
		t.Fatalf("%s: %v", m.Topic, err)
	}
	return v
}

// recorded replays every message the subscriber saw into a model of Home
// Assistant, failing the test on anything HA would warn about (an undefined
// template key, an invalid state), and returns the model.
func (r *rig) recorded() *hass.HA {
	r.t.Helper()
	h := hass.New(r.Config.HADiscoveryPrefix)
	for _, m := range r.ha.Messages(0) {
		if _, err := h.Apply(m); err != nil {
			r.t.Errorf("HA would warn at %s: %v", m.At.Format("15:04:05.000"), err)
		}
	}
	return h
}

// meterEntities are the unique ids of the simulated meter's measurement entities.
func (r *rig) meterEntities() []string {
	var ids []string
	for _, reg := range meter.Registers() {
		ids = append(ids, r.Topics.MeterID()+"_"+reg.Key)
	}
	return ids
}

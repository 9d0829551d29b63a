package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

func TestDiscoveryAndValues(t *testing.T) {
	r := newRig(t, rigOptions{sim: emsim.Options{Serial: "235411W", FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, FirmwareVersion: 1, FirmwareRevision: 2, Static: true}})
	bridgeCfg := r.ha.Wait(0, r.Topics.BridgeConfig(), nil, wait)
	meterCfg := r.ha.Wait(0, r.Topics.MeterConfig(), nil, wait)
	if !bridgeCfg.Retain || !meterCfg.Retain {
		t.Error("discovery configs must be retained")
	}
	var dev struct {
		Dev struct {
			Identifiers []string `json:"identifiers"`
			Model       string   `json:"model"`
			SW          string   `json:"sw_version"`
			Serial      string   `json:"serial_number"`
			Via         string   `json:"via_device"`
		} `json:"dev"`
		Cmps map[string]map[string]any `json:"cmps"`
	}
	if err := json.Unmarshal([]byte(meterCfg.Payload), &dev); err != nil {
		t.Fatal(err)
	}
	if dev.Dev.Model != "EM340" || dev.Dev.SW != "B2" || dev.Dev.Serial != "235411W" || dev.Dev.Via != "em340_bridge_em340" {
		t.Errorf("meter device %+v", dev.Dev)
	}
	for _, reg := range meter.Registers() {
		if _, ok := dev.Cmps[reg.Key]; !ok {
			t.Errorf("no entity for %s", reg.Key)
		}
	}
	if imp := dev.Cmps["energy_import"]; imp["device_class"] != "energy" || imp["state_class"] != "total_increasing" || imp["unit_of_measurement"] != "kWh" {
		t.Errorf("energy_import entity %v", imp)
	}

	// Values equal what the simulator served, scaled by the register table.
	state := r.confirmedState(0)
	for _, reg := range meter.Registers() {
		want := r.Sim.Value(reg.Key)
		if reg.FineAddr != 0 {
			want = r.Sim.FineValue(reg.Key)
		}
		got, ok := state[reg.Key]
		if !ok {
			t.Errorf("%s missing from state", reg.Key)
			continue
		}
		if len(reg.Options) > 0 {
			if got != reg.Options[int(want)] {
				t.Errorf("%s = %v, want %v", reg.Key, got, reg.Options[int(want)])
			}
			continue
		}
		prec := reg.Precision(true)
		if fmt.Sprintf("%.*f", prec, got.(float64)) != strconv.FormatFloat(want, 'f', prec, 64) {
			t.Errorf("%s = %v, simulator served %v", reg.Key, got, want)
		}
	}
	if state[discovery.KeyMeasurementMode] != "B" {
		t.Errorf("measurement mode %v", state[discovery.KeyMeasurementMode])
	}
	r.ha.Wait(0, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	r.ha.Wait(0, r.Topics.BridgeAvailability(), brokertest.Equals("online"), wait)
}

func TestUnplugMakesMeasurementsUnavailableAndReplugResumes(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.ha.Wait(0, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	mark := r.ha.Mark()
	if err := r.Sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	lost := r.linkState(mark, "reconnecting")
	if lost["cause"] != "adapter missing" {
		t.Errorf("cause %v", lost["cause"])
	}
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("offline"), wait)
	time.Sleep(600 * time.Millisecond) // a poll interval or so: nothing may be published meanwhile
	if m, _ := r.ha.Last(r.Topics.MeterState()); m.At.After(time.Now().Add(-400 * time.Millisecond)) {
		t.Errorf("a state was published while unplugged: %s", m.Payload)
	}
	mark = r.ha.Mark()
	if err := r.Sim.Replug(); err != nil {
		t.Fatal(err)
	}
	on := r.linkState(mark, "online")
	if on["reconnects"] != 1.0 || on["last_outage_s"] == nil {
		t.Errorf("link after replug %v", on)
	}
	r.state(mark)
	avail := r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	stateMsg, _ := r.ha.Last(r.Topics.MeterState())
	if avail.At.Before(r.ha.Wait(mark, r.Topics.MeterState(), nil, wait).At) {
		t.Errorf("meter marked available before a fresh reading was published (%v < %v)", avail.At, stateMsg.At)
	}
}

func TestStartedUnpluggedShowsBridgeAtOnce(t *testing.T) {
	r := newRig(t, rigOptions{unplug: true})
	r.ha.Wait(0, r.Topics.BridgeConfig(), nil, wait)
	r.linkState(0, "reconnecting")
	time.Sleep(300 * time.Millisecond)
	if _, ok := r.ha.Last(r.Topics.MeterConfig()); ok {
		t.Fatal("meter announced before it answered")
	}
	if err := r.Sim.Replug(); err != nil {
		t.Fatal(err)
	}
	r.ha.Wait(0, r.Topics.MeterConfig(), nil, wait)
	r.state(0)
}

func TestDeviceIDAnnouncesTheMeterAtOnce(t *testing.T) {
	r := newRig(t, rigOptions{unplug: true, env: []string{"EM340_DEVICE_ID=kitchen"}})
	topics, _ := discovery.NewTopics("em340", "homeassistant", "kitchen")
	r.ha.Wait(0, topics.MeterConfig(), nil, wait)
	r.ha.Wait(0, topics.MeterAvailability(), brokertest.Equals("offline"), wait)
	if err := r.Sim.Replug(); err != nil {
		t.Fatal(err)
	}
	r.ha.Wait(0, topics.MeterState(), nil, wait)
	r.ha.Wait(0, topics.MeterAvailability(), brokertest.Equals("online"), wait)
}

func TestGlitchesAreNeverPublished(t *testing.T) {
	r := newRig(t, rigOptions{})
	first := r.confirmedState(0)
	total := first["energy_import"].(float64)
	mark := r.ha.Mark()
	r.Sim.GlitchEnergy(2)
	if err := r.Sim.Sentinel("voltage_l2_n"); err != nil {
		t.Fatal(err)
	}
	// Several snapshots pass with the glitches in place.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	r.Sim.ClearSentinel()
	r.state(r.ha.Mark()) // the bridge is still publishing
	var seen int
	for _, m := range r.ha.Messages(0)[mark:] {
		if m.Topic != r.Topics.MeterState() {
			continue
		}
		seen++
		var v map[string]any
		if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
			t.Fatal(err)
		}
		if e, ok := v["energy_import"].(float64); ok && (e == 0 || e < total) {
			t.Fatalf("glitch published: energy_import %v after %v", e, total)
		}
		if strings.Contains(m.Payload, "214748364") {
			t.Fatalf("sentinel published: %s", m.Payload)
		}
	}
	if seen < 3 {
		t.Fatalf("only %d states during the glitches", seen)
	}
}

func TestBrokerRestartRepublishes(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.state(0)
	r.broker.Restart()
	ha := brokertest.Subscribe(t, r.broker, "#") // the old subscriber died with the broker
	ha.Wait(0, r.Topics.BridgeConfig(), nil, wait)
	ha.Wait(0, r.Topics.MeterConfig(), nil, wait)
	ha.Wait(0, r.Topics.BridgeAvailability(), brokertest.Equals("online"), wait)
	ha.Wait(0, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	ha.Wait(0, r.Topics.Link(), nil, wait)
	ha.Wait(0, r.Topics.MeterState(), nil, wait)
}

func TestHABirthRepublishesDiscovery(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.ha.Wait(0, r.Topics.MeterConfig(), nil, wait)
	r.state(0)
	mark := r.ha.Mark()
	r.ha.Publish("homeassistant/status", "online", false)
	r.ha.Wait(mark, r.Topics.BridgeConfig(), nil, wait)
	r.ha.Wait(mark, r.Topics.MeterConfig(), nil, wait)
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
}

func TestCleanShutdownPublishesOffline(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.ha.Wait(0, r.Topics.BridgeAvailability(), brokertest.Equals("online"), wait)
	mark := r.ha.Mark()
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s; SIGTERM must end the bridge within two seconds", d)
	}
	m := r.ha.Wait(mark, r.Topics.BridgeAvailability(), brokertest.Equals("offline"), wait)
	if !m.Retain {
		t.Error("offline not retained")
	}
}

func TestStalledLoopExits(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var polls int
	hook := func(ctx context.Context) {
		polls++
		if polls == 3 {
			<-release // the poll loop hangs here, as on a wedged driver
		}
	}
	r := newRig(t, rigOptions{hook: hook, env: []string{"EM340_STALL_TIMEOUT=2s"}})
	select {
	case <-r.Exited():
		err := r.stop()
		if !errors.Is(err, bridge.ErrStalled) || !strings.Contains(err.Error(), "poll") {
			t.Fatalf("Run = %v, want a stalled poll loop", err)
		}
	case <-time.After(wait):
		t.Fatal("the watchdog did not stop a stalled bridge")
	}
}

func TestHealthWhileReconnecting(t *testing.T) {
	r := newRig(t, rigOptions{unplug: true, env: []string{"EM340_STALL_TIMEOUT=2s"}})
	r.linkState(0, "reconnecting")
	deadline := time.Now().Add(wait)
	for {
		st, err := bridge.CheckHealth(r.Config.StatusFile, r.Config.StallTimeout, time.Now())
		if err == nil && st.MQTTConnected && st.Link == "reconnecting" {
			break // healthy: a restart would not bring the adapter back
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %+v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.broker.Stop()
	time.Sleep(2500 * time.Millisecond) // the limit comes from the status file, not the checker's setting
	if _, err := bridge.CheckHealth(r.Config.StatusFile, time.Hour, time.Now()); err == nil || !strings.Contains(err.Error(), "MQTT") {
		t.Fatalf("broker down for longer than the limit, health %v", err)
	}
	_ = r.stop()
	if _, err := bridge.CheckHealth(r.Config.StatusFile, time.Hour, time.Now().Add(3*time.Second)); err == nil {
		t.Fatal("a bridge that stopped reporting is healthy")
	}
}

// Readings taken while the broker is down are dropped, not queued and replayed
// as if they were current when it comes back.
func TestReadingsDuringABrokerOutageAreNotReplayed(t *testing.T) {
	id := meter.Identity{ModelCode: meter.ModelEM340, Serial: "235411W", Firmware: "B0", ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, MaxWords: 50, FineEnergy: true}
	readings := make(chan meter.Reading, 100)
	var hold atomic.Bool
	release := make(chan struct{})
	hook := func(ctx context.Context) {
		if hold.Load() {
			select { // no reading until the test has seen the bridge reconnect
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	r := newRig(t, rigOptions{hook: hook, onReading: func(rd meter.Reading) { readings <- rd },
		env: []string{"EM340_POLL_INTERVAL=3s", "EM340_STALL_TIMEOUT=1m"}})
	r.state(0)
	down := time.Now()
	r.broker.Stop()
	var during meter.Reading
	for during.Time.Before(down.Add(200 * time.Millisecond)) {
		select {
		case during = <-readings: // taken while the bridge is cut off from the broker
		case <-time.After(wait):
			t.Fatal("no reading during the broker outage")
		}
	}
	hold.Store(true)
	r.broker.Restart()
	ha := brokertest.Subscribe(t, r.broker, "#")
	ha.Wait(0, r.Topics.BridgeAvailability(), brokertest.Equals("online"), wait)
	time.Sleep(500 * time.Millisecond) // the reconnect's republishing is done
	close(release)
	ha.Wait(0, r.Topics.MeterState(), nil, wait)
	stale := string(discovery.State(during, id))
	for _, m := range ha.Messages(0) {
		if m.Topic == r.Topics.MeterState() && m.Payload == stale {
			t.Fatalf("the reading taken %s into the broker outage was published after it", during.Time.Sub(down).Round(time.Millisecond))
		}
	}
}

// TLS to the broker, verified against EM340_MQTT_CA_FILE.
func TestTLSBroker(t *testing.T) {
	r := newRig(t, rigOptions{tls: true})
	r.ha.Wait(0, r.Topics.MeterConfig(), nil, wait)
	r.state(0)
}

// A different meter behind the adapter becomes a device of its own; the old
// one goes unavailable instead of showing the new meter's values.
func TestDifferentMeterBecomesItsOwnDevice(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.state(0)
	if err := r.Sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	r.Sim.SetSerial("999999X")
	mark := r.ha.Mark()
	if err := r.Sim.Replug(); err != nil {
		t.Fatal(err)
	}
	other, _ := discovery.NewTopics("em340", "homeassistant", "999999X")
	r.ha.Wait(mark, other.MeterConfig(), nil, wait)
	r.ha.Wait(mark, other.MeterState(), nil, wait)
	r.ha.Wait(mark, other.MeterAvailability(), brokertest.Equals("online"), wait)
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("offline"), wait)
	r.ha.Wait(mark, r.Topics.MeterConfig(), brokertest.Equals(""), wait) // the replaced meter's device is removed
	link := r.linkState(mark, "online")
	if cause, _ := link["cause"].(string); !strings.Contains(cause, "wrong meter") || !strings.Contains(cause, "999999X") {
		t.Errorf("link cause %q", cause)
	}
	for _, m := range r.ha.Messages(0)[mark:] {
		if m.Topic == r.Topics.MeterState() {
			t.Fatalf("the new meter's values went to the old meter's device: %s", m.Payload)
		}
	}
}

// TestReconnectTakesTheFewestRequests: after a replug of the same meter the
// first state needs the serial number and one snapshot (3 reads with the Wh
// registers), nothing more; the rest of the identity follows afterwards. A
// different meter takes the whole identity path first.
func TestReconnectTakesTheFewestRequests(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.confirmedState(0)
	plan, err := meter.Plan(meter.Registers(), true, meter.MaxReadWords)
	if err != nil {
		t.Fatal(err)
	}
	before := func(at time.Time) []emsim.Request {
		var out []emsim.Request
		for _, q := range r.Sim.Requests() {
			if q.Time.Before(at) {
				out = append(out, q)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		serial string
		want   int
	}{
		{"same meter", "", 1 + len(plan)},
		{"different meter", "999999X", 1 + 5 + len(plan)}, // the serial, then the rest of the identity
	} {
		if err := r.Sim.Unplug(); err != nil {
			t.Fatal(err)
		}
		topics := r.Topics
		if tc.serial != "" {
			r.Sim.SetSerial(tc.serial)
			topics, _ = discovery.NewTopics(r.Config.MQTTBaseTopic, r.Config.HADiscoveryPrefix, tc.serial)
		}
		r.Sim.ResetRequests()
		mark := r.ha.Mark()
		if err := r.Sim.Replug(); err != nil {
			t.Fatal(err)
		}
		first := r.ha.Wait(mark, topics.MeterState(), nil, wait)
		// The refresh may start while the state is on its way to the
		// subscriber: at most one request more may precede its arrival.
		reqs := before(first.At)
		if len(reqs) < tc.want || len(reqs) > tc.want+1 {
			t.Fatalf("%s: %d requests before the first state arrived, want %d: %+v", tc.name, len(reqs), tc.want, reqs)
		}
		if reqs[0].Addr != meter.AddrSerialNumber || reqs[0].Count != meter.SerialNumberWords {
			t.Errorf("%s: the first request read %04Xh+%d, want the serial number", tc.name, reqs[0].Addr, reqs[0].Count)
		}
		for i, b := range plan { // and the snapshot right after the proof
			if q := reqs[tc.want-len(plan)+i]; q.Addr != b.Start || q.Count != b.Count {
				t.Errorf("%s: request %d read %04Xh+%d, want the snapshot's %04Xh+%d", tc.name, tc.want-len(plan)+i, q.Addr, q.Count, b.Start, b.Count)
			}
		}
		// The refresh runs before the next poll: once the next state is in,
		// it is done and cannot straddle the next case's unplug.
		r.ha.Wait(r.ha.Mark(), topics.MeterState(), nil, wait)
	}
}

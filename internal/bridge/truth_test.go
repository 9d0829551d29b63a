package bridge_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// restart stops the bridge and starts it again with cfg changed by edit.
func (r *rig) restart(edit func(*config.Config)) {
	r.t.Helper()
	if err := r.stop(); err != nil {
		r.t.Fatal(err)
	}
	if edit != nil {
		edit(&r.Config)
	}
	r.StartBridge()
}

// TestEnergyGlitchRunsNeverReachHA: a run of zero totals of any length (a meter
// booting after a power cut, a garbled run) is never recorded by HA, and the
// true total is published again as soon as the meter reads it.
func TestEnergyGlitchRunsNeverReachHA(t *testing.T) {
	for _, n := range []int{1, 3, 10} {
		t.Run("zeros="+strconv.Itoa(n), func(t *testing.T) {
			r := newRig(t, rigOptions{})
			r.state(0)
			r.state(r.ha.Mark())      // past the start's confirmation
			r.Sim.GlitchEnergy(2 * n) // a snapshot reads the totals twice: the 0.1 kWh and the Wh registers
			for range n + 2 {
				r.state(r.ha.Mark())
			}
			got, ok := r.state(r.ha.Mark())["energy_import"].(float64)
			if want := r.Sim.FineValue("energy_import"); !ok || got < want-0.1 || got > want {
				t.Errorf("energy_import %v (present %v) after the glitch; the meter holds %v", got, ok, want)
			}
			assertTotalsNeverFall(t, r.recorded(), r.meterEntities())
		})
	}
}

// assertTotalsNeverFall: what HA recorded for every total_increasing entity
// never decreases and is never 0 after a non-zero value.
func assertTotalsNeverFall(t *testing.T, h *hass.HA, ids []string) {
	t.Helper()
	for _, id := range ids {
		c, ok := h.Component(id)
		if !ok || c.StateClass != "total_increasing" {
			continue
		}
		prev := -1.0
		for _, s := range h.History(id) {
			v, err := strconv.ParseFloat(s.State, 64)
			if err != nil {
				continue // unavailable/unknown do not enter statistics
			}
			if v < prev || prev > 0 && v == 0 {
				t.Errorf("%s went from %v to %v at %s: HA would book a reset", id, prev, v, s.At.Format("15:04:05.000"))
			}
			prev = v
		}
	}
}

// TestRestartWhileUnreachable: a crashed run left "online" retained for the
// meter and the link; the next run, with the adapter missing, must make every
// measurement entity unavailable from its first message on.
func TestRestartWhileUnreachable(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.ha.Wait(0, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// What a SIGKILL leaves: the will says the bridge is offline, the rest
	// still says online.
	linkOnline := string(discovery.LinkPayload(discovery.Link{State: discovery.LinkOnline, Device: r.Sim.Path()}))
	r.ha.Publish(r.Topics.MeterAvailability(), "online", true)
	r.ha.Publish(r.Topics.Link(), linkOnline, true)
	if err := r.Sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	mark := r.ha.Mark()
	r.StartBridge()
	first := r.ha.Wait(mark, r.Topics.BridgeAvailability(), brokertest.Equals("online"), wait)
	r.linkState(mark, "reconnecting")
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("offline"), wait) // the clean-up's word
	h := r.recorded()
	for _, id := range r.meterEntities() {
		for _, s := range h.History(id) {
			if !s.At.Before(first.At) && s.State != hass.Unavailable {
				t.Errorf("%s shown as %q at %s after the restart, with the meter unreachable", id, s.State, s.At.Format("15:04:05.000"))
			}
		}
		if got := h.State(id, time.Now()); got != hass.Unavailable {
			t.Errorf("%s is %q, want unavailable", id, got)
		}
	}
}

// TestShutdownLeavesNothingOnline: a clean stop resets the retained meter
// availability too, so no "online" outlives the run.
func TestShutdownLeavesNothingOnline(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.ha.Wait(0, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	mark := r.ha.Mark()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("offline"), wait)
	r.ha.Wait(mark, r.Topics.BridgeAvailability(), brokertest.Equals("offline"), wait)
}

// TestFrozenLineGoesUnavailable: a meter that keeps answering, but never with
// a usable snapshot (exception 04, slave device failure, to every request: the
// line is fine, so nothing counts as "no answer"), must not leave its last
// values on show.
func TestFrozenLineGoesUnavailable(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.state(0)
	r.ha.Wait(0, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	mark := r.ha.Mark()
	r.Sim.ExceptionNext(4, 1<<30)
	start := time.Now()
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("offline"), wait)
	if took := time.Since(start); took > bridge.Freshness(r.Config)+2*time.Second {
		t.Errorf("the meter was shown available %s after its last fresh reading (bound %s)", took, bridge.Freshness(r.Config))
	}
	h := r.recorded()
	for _, id := range r.meterEntities() {
		if got := h.State(id, time.Now()); got != hass.Unavailable {
			t.Errorf("%s is %q on a frozen line, want unavailable", id, got)
		}
	}
	// HA's own guard: expire_after would end it even without the bridge's word.
	for _, id := range r.meterEntities() {
		if c, _ := h.Component(id); time.Duration(c.ExpireAfter)*time.Second < bridge.Freshness(r.Config) {
			t.Errorf("%s expires after %d s, less than the freshness bound %s", id, c.ExpireAfter, bridge.Freshness(r.Config))
		}
	}
	r.Sim.ClearFaults()
	r.ha.Wait(r.ha.Mark(), r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
}

// TestRefusedPublishIsRetried: the broker refuses the meter's availability for
// a while (a PUBACK with "not authorized", the connection stays up); the bridge
// keeps trying and HA gets it once the broker takes it.
func TestRefusedPublishIsRetried(t *testing.T) {
	r := newRig(t, rigOptions{noBridge: true})
	if err := r.broker.DenyPublish(r.Topics.MeterAvailability()); err != nil {
		t.Fatal(err)
	}
	r.StartBridge()
	r.state(0) // readings flow meanwhile...
	time.Sleep(time.Second)
	if _, ok := r.ha.Last(r.Topics.MeterAvailability()); ok {
		t.Fatal("the broker took a publication it should have refused")
	}
	mark := r.ha.Mark()
	if err := r.broker.DenyPublish(); err != nil {
		t.Fatal(err)
	}
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait) // ...and the refused one arrives
}

// TestNoGhostsAfterBaseTopicChange: moving to another base topic leaves no
// device of the old one behind, and nothing retained under the old topics.
func TestNoGhostsAfterBaseTopicChange(t *testing.T) {
	r := newRig(t, rigOptions{})
	old := r.Topics
	r.ha.Wait(0, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	mark := r.ha.Mark()
	r.restart(func(c *config.Config) { c.MQTTBaseTopic, c.MQTTClientID = "home/em340", "em340-bridge-home-em340" })
	var err error
	if r.Topics, err = discovery.NewTopics("home/em340", r.Config.HADiscoveryPrefix, "235411W"); err != nil {
		t.Fatal(err)
	}
	r.ha.Wait(mark, r.Topics.MeterAvailability(), brokertest.Equals("online"), wait)
	r.ha.Wait(mark, old.BridgeConfig(), brokertest.Equals(""), wait)
	h := r.recorded()
	want := []string{r.Topics.BridgeConfig(), r.Topics.MeterConfig()}
	slices.Sort(want)
	if got := h.Devices(); !slices.Equal(got, want) {
		t.Errorf("HA has devices %v, want %v", got, want)
	}
	late := brokertest.Subscribe(t, r.broker, old.BridgeAvailability()[:strings.Index(old.BridgeAvailability(), "/")]+"/#")
	time.Sleep(300 * time.Millisecond)
	for _, m := range late.Messages(0) {
		if m.Retain && strings.HasPrefix(m.Topic, "em340/bridge/") {
			t.Errorf("retained %s = %q left under the old base topic", m.Topic, m.Payload)
		}
	}
}

// TestRemovedComponentLeavesHA: a component a previous version published and
// this one no longer does is removed from HA.
func TestRemovedComponentLeavesHA(t *testing.T) {
	r := newRig(t, rigOptions{noBridge: true})
	origin, err := discovery.NewOrigin("old", bridge.ProjectURL)
	if err != nil {
		t.Fatal(err)
	}
	previous := discovery.MeterDevice(r.Topics, origin, meter.Identity{ModelCode: meter.ModelEM340, Serial: "235411W"}, meter.Registers(), 0)
	previous.Components["retired_value"] = discovery.Component{Platform: "sensor", UniqueID: r.Topics.MeterID() + "_retired_value",
		Name: "Retired", ValueTemplate: "{{ value_json.retired_value | default('') }}", Unit: "V", DeviceClass: "voltage"}
	msg := previous.Message()
	r.ha.Publish(msg.Topic, string(msg.Payload), true)
	r.StartBridge()
	r.state(0)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if _, ok := r.recorded().Component(r.Topics.MeterID() + "_retired_value"); !ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Error("the retired component is still in HA")
}

// TestPowerCycleNeverReachesHA: the meter goes silent, boots reading zero
// totals for several snapshots, then reads its true totals again.
func TestPowerCycleNeverReachesHA(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.confirmedState(0)
	r.Sim.PowerCycle(1500*time.Millisecond, 8)
	time.Sleep(1500 * time.Millisecond)
	mark := r.ha.Mark()
	got := r.confirmedState(mark)["energy_import"].(float64)
	if want := r.Sim.FineValue("energy_import"); got < want-0.1 || got > want {
		t.Errorf("energy_import %v after the power cycle; the meter holds %v", got, want)
	}
	assertTotalsNeverFall(t, r.recorded(), r.meterEntities())
}

// TestLateReplyAndWrongLengthAreNeverData: after a reply that comes after the
// timeout and replies of the wrong length, the line resynchronises: snapshots
// go on, and every value HA records is the one the (static) meter holds.
func TestLateReplyAndWrongLengthAreNeverData(t *testing.T) {
	r := newRig(t, rigOptions{sim: emsim.Options{Serial: "235411W", FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, Static: true}})
	r.confirmedState(0)
	r.Sim.LateNext(1, r.Config.ModbusTimeout+150*time.Millisecond)
	r.Sim.WrongLengthNext(1, 1)
	for range 4 {
		r.state(r.ha.Mark())
	}
	h := r.recorded()
	for _, reg := range meter.Registers() {
		if reg.Total || len(reg.Options) > 0 {
			continue
		}
		want := r.Sim.Value(reg.Key)
		for _, s := range h.History(r.Topics.MeterID() + "_" + reg.Key) {
			if v, err := strconv.ParseFloat(s.State, 64); err == nil && v != want {
				t.Errorf("HA recorded %s = %v; the meter holds %v", reg.Key, v, want)
			}
		}
	}
	if st := r.linkState(0, "online"); st["state"] != "online" {
		t.Errorf("link %v", st)
	}
}

// TestReplacedMeterUnderFixedDeviceID: with EM340_DEVICE_ID set, a meter with
// another serial and lower totals feeds the same entities; none of them may
// fall in HA (HA would book the new meter's whole total as consumption).
func TestReplacedMeterUnderFixedDeviceID(t *testing.T) {
	r := newRig(t, rigOptions{env: []string{"EM340_DEVICE_ID=main"}})
	var err error
	if r.Topics, err = discovery.NewTopics(r.Config.MQTTBaseTopic, r.Config.HADiscoveryPrefix, "main"); err != nil {
		t.Fatal(err)
	}
	r.confirmedState(0)
	if err := r.Sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	r.Sim.SetSerial("999999X")
	for _, reg := range meter.Registers() {
		if reg.Total {
			if err := r.Sim.Set(reg.Key, 10); err != nil {
				t.Fatal(err)
			}
		}
	}
	mark := r.ha.Mark()
	if err := r.Sim.Replug(); err != nil {
		t.Fatal(err)
	}
	link := r.linkState(mark, "online")
	if cause, _ := link["cause"].(string); !strings.Contains(cause, "wrong meter") {
		t.Errorf("link cause %q", link["cause"])
	}
	for range 3 {
		r.state(r.ha.Mark())
	}
	assertTotalsNeverFall(t, r.recorded(), r.meterEntities())
}

package bridge_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// busRig is the whole bridge reading several simulated meters on one line
// (udev's tree, or a gateway on loopback): the test rig with more meters.
type busRig struct {
	*rig
	opts []emsim.Options
}

func newBusRig(t *testing.T, opts []emsim.Options, gateway emsim.Framing) *busRig {
	t.Helper()
	r := newRig(t, rigOptions{sim: opts[0], more: opts[1:], gateway: gateway, byID: gateway == 0,
		env: []string{"EM340_STALL_TIMEOUT=10s"}})
	return &busRig{rig: r, opts: opts}
}

// meterOpts is a meter of the family at addr, serial derived from it.
func meterOpts(addr byte, model uint16, system uint16) emsim.Options {
	return emsim.Options{Address: addr, ModelCode: model, MeasuringSystem: system, Serial: fmt.Sprintf("%06dW", 100000+int(addr)),
		FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB, FirmwareVersion: 1}
}

func (r *busRig) topics(i int) discovery.Topics {
	r.t.Helper()
	tp, err := r.MeterTopics(r.opts[i].Serial)
	if err != nil {
		r.t.Fatal(err)
	}
	return tp
}

// confirmed waits, after mark, for a state of meter i with its energy totals.
func (r *busRig) confirmed(mark, i int) map[string]any {
	r.t.Helper()
	return decode(r.t, r.ha.Wait(mark, r.topics(i).MeterState(), func(p string) bool { return strings.Contains(p, `"energy_import":`) }, wait))
}

func (r *busRig) availability(mark, i int, want string) {
	r.t.Helper()
	r.ha.Wait(mark, r.topics(i).MeterAvailability(), brokertest.Equals(want), wait)
}

// Three meters on one bus are three HA devices via the bridge; every poll
// reads each meter's planned blocks and nothing else.
func TestThreeMetersOnOneBus(t *testing.T) {
	r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0), meterOpts(5, 0, 0)}, 0)
	for i := range r.Sims {
		r.availability(0, i, "online")
		r.confirmed(0, i)
	}
	// Each meter its own values: not another meter's reply under its name.
	for i, s := range r.Sims {
		if err := s.Set("power", float64(1000*(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	mark := r.ha.Mark()
	for i := range r.Sims {
		want := fmt.Sprintf(`"power":%d.0`, 1000*(i+1))
		r.ha.Wait(mark, r.topics(i).MeterState(), func(p string) bool { return strings.Contains(p, want) }, wait)
	}

	// Steady state: each meter's poll is its three blocks, one meter after
	// the other, so a poll costs the sum of their minimum.
	for _, s := range r.Sims {
		s.ResetRequests()
	}
	mark = r.ha.Mark()
	for range 4 { // three whole polls at least
		mark = indexAfter(r.ha, mark, r.ha.Wait(mark, r.topics(2).MeterState(), nil, wait))
	}
	var all []emsim.Request
	for i, s := range r.Sims {
		reqs := s.Requests()
		var own []emsim.Request
		for _, q := range reqs {
			if q.Slave == r.Config.ModbusAddresses[i] {
				own = append(own, q)
			}
		}
		if len(own) < 6 {
			t.Fatalf("meter %d: %d requests in 5 polls", i, len(own))
		}
		for j, q := range own {
			plan := []uint16{0x0000, 0x0032, 0x0400}
			if want := plan[(j+indexOf(plan, own[0].Addr))%3]; q.Addr != want {
				t.Fatalf("meter %d request %d read %04Xh, want %04Xh (only its snapshot blocks): %+v", i, j, q.Addr, want, own)
			}
		}
		all = append(all, own...)
	}
	slices.SortFunc(all, func(a, b emsim.Request) int { return a.Time.Compare(b.Time) })
	// Between two snapshots of the first meter, each other meter is read once.
	var starts []int
	for k, q := range all {
		if q.Slave == r.Config.ModbusAddresses[0] && q.Addr == 0 {
			starts = append(starts, k)
		}
	}
	for k := 1; k < len(starts); k++ {
		if n := starts[k] - starts[k-1]; n != 9 {
			t.Errorf("poll %d took %d requests, want 9 (3 meters × 3 blocks): %+v", k, n, all[starts[k-1]:starts[k]])
		}
	}

	h := r.recorded()
	var meterDevices int
	for _, d := range h.Devices() {
		if d != r.topics(0).BridgeConfig() {
			meterDevices++
		}
	}
	if meterDevices != 3 {
		t.Errorf("HA has %d meter devices, want 3: %v", meterDevices, h.Devices())
	}
}

func indexOf(s []uint16, v uint16) int {
	if i := slices.Index(s, v); i >= 0 {
		return i
	}
	return 0
}

// A meter that stops answering goes unavailable alone, its status says why,
// the link stays online and names it, and the other meters keep publishing;
// it comes back by itself.
func TestMutedMeterLeavesTheOthers(t *testing.T) {
	r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0), meterOpts(5, 0, 0)}, 0)
	for i := range r.Sims {
		r.availability(0, i, "online")
	}
	mark := r.ha.Mark()
	r.Sims[1].Mute(true)
	r.availability(mark, 1, "offline")
	r.ha.Wait(mark, r.topics(1).MeterStatus(), brokertest.Equals("meter not answering"), wait)
	link := r.ha.Wait(mark, r.topics(0).Link(), func(p string) bool { return strings.Contains(p, "address 2") }, wait)
	var lp map[string]any
	if err := json.Unmarshal([]byte(link.Payload), &lp); err != nil || lp["state"] != "online" ||
		!strings.Contains(lp["cause"].(string), "meter not answering") {
		t.Errorf("link while one meter is silent: %s", link.Payload)
	}
	after := r.ha.Mark()
	for _, i := range []int{0, 2} {
		for range 3 {
			m := r.ha.Wait(after, r.topics(i).MeterState(), nil, wait)
			after = indexAfter(r.ha, after, m)
		}
	}

	h := r.recorded()
	now := time.Now()
	for _, reg := range meter.Registers() {
		if got := h.State(r.topics(1).MeterID()+"_"+reg.Key, now); got != hass.Unavailable {
			t.Errorf("silent meter's %s is %q, want unavailable", reg.Key, got)
		}
		if got := h.State(r.topics(0).MeterID()+"_voltage_l1_n", now); got == hass.Unavailable || got == hass.Unknown {
			t.Fatalf("a meter that answers shows %q", got)
		}
	}
	if got := h.State(r.topics(1).MeterID()+"_"+discovery.KeyMeterStatus, now); got != "meter not answering" {
		t.Errorf("silent meter's status entity shows %q", got)
	}

	mark = r.ha.Mark()
	r.Sims[1].Mute(false)
	r.availability(mark, 1, "online")
	r.ha.Wait(mark, r.topics(1).MeterStatus(), brokertest.Equals("online"), wait)
	r.ha.Wait(mark, r.topics(1).MeterState(), nil, wait)
}

// indexAfter is the mark just after m, which came after mark.
func indexAfter(s *brokertest.Subscriber, mark int, m brokertest.Message) int {
	for i, got := range s.Messages(mark) {
		if got.At.Equal(m.At) && got.Topic == m.Topic {
			return mark + i + 1
		}
	}
	return s.Mark()
}

// Unplugging the adapter takes every meter down; the replug brings every one back.
func TestUnplugTakesEveryMeterDown(t *testing.T) {
	r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0), meterOpts(5, 0, 0)}, 0)
	for i := range r.Sims {
		r.availability(0, i, "online")
	}
	mark := r.ha.Mark()
	if err := r.Bus.Unplug(); err != nil {
		t.Fatal(err)
	}
	for i := range r.Sims {
		r.availability(mark, i, "offline")
		r.ha.Wait(mark, r.topics(i).MeterStatus(), func(p string) bool { return strings.HasPrefix(p, "link reconnecting") }, wait)
	}
	mark = r.ha.Mark()
	if err := r.Bus.Replug(); err != nil {
		t.Fatal(err)
	}
	for i := range r.Sims {
		r.availability(mark, i, "online")
		r.ha.Wait(mark, r.topics(i).MeterState(), nil, wait)
	}
}

// Every model of the family is named by its model code, read in its word
// order, and announced with what it has: an entity it cannot fill is never
// created, and every one it has gets a value.
func TestEachModelOfTheFamily(t *testing.T) {
	// Per phase, the values a meter wired for fewer phases lacks (the document's table 2.4).
	phase := func(n int) []string {
		l := "l" + strconv.Itoa(n)
		return []string{"voltage_" + l + "_n", "current_" + l, "power_" + l, "apparent_power_" + l,
			"reactive_power_" + l, "power_factor_" + l, "energy_import_" + l}
	}
	onePhase := slices.Concat(phase(2), phase(3), []string{"voltage_l1_l2", "voltage_l2_l3", "voltage_l3_l1", "voltage_ll", "phase_sequence"})
	twoPhase := slices.Concat(phase(3), []string{"voltage_l2_l3", "voltage_l3_l1", "phase_sequence"})
	cases := []struct {
		model, system uint16
		name          string
		without       []string // keys the meter does not have
	}{
		{341, 0, "EM340", nil},
		{340, 0, "EM340 (engineering sample)", nil},
		{346, 0, "EM341", nil},
		{345, 0, "ET340", nil},
		{331, 3, "EM330", onePhase},
		{332, 2, "EM330", twoPhase},
		{355, 1, "EM331", nil},
		{335, 0, "ET330", nil},
		{336, 0, "ET330", nil},
	}
	var opts []emsim.Options
	for i, c := range cases {
		opts = append(opts, meterOpts(byte(i+1), c.model, c.system))
	}
	r := newBusRig(t, opts, 0)
	for i := range cases {
		r.confirmed(0, i)
	}
	h := r.recorded()
	now := time.Now()
	for i, c := range cases {
		t.Run(c.name+"/"+strconv.Itoa(int(c.model)), func(t *testing.T) {
			tp := r.topics(i)
			cfgMsg, ok := r.ha.Last(tp.MeterConfig())
			if !ok {
				t.Fatal("no discovery config")
			}
			var cfg struct {
				Dev struct {
					Model   string `json:"model"`
					ModelID string `json:"model_id"`
				} `json:"dev"`
				Cmps map[string]json.RawMessage `json:"cmps"`
			}
			if err := json.Unmarshal([]byte(cfgMsg.Payload), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Dev.Model != c.name || cfg.Dev.ModelID != strconv.Itoa(int(c.model)) {
				t.Errorf("device model %q (%s), want %q (%d)", cfg.Dev.Model, cfg.Dev.ModelID, c.name, c.model)
			}
			for _, reg := range meter.Registers() {
				_, announced := cfg.Cmps[reg.Key]
				if lacks := slices.Contains(c.without, reg.Key); announced == lacks {
					t.Errorf("%s announced: %v; measuring system %d has it: %v", reg.Key, announced, c.system, !lacks)
				}
			}
			state := r.confirmed(0, i)
			for _, reg := range meter.Registers() {
				if slices.Contains(c.without, reg.Key) {
					continue
				}
				got := h.State(tp.MeterID()+"_"+reg.Key, now)
				if got == hass.Unknown || got == hass.Unavailable || got == "" {
					t.Errorf("%s shows %q", reg.Key, got)
				}
			}
			// The values are the meter's, so its word order was read right.
			want := r.Sims[i].Value("voltage_l1_n")
			if v, _ := state["voltage_l1_n"].(float64); v < want-5 || v > want+5 {
				t.Errorf("voltage_l1_n published %v, the meter holds about %v", state["voltage_l1_n"], want)
			}
		})
	}
}

// Meters behind a gateway, in either framing: published as on a local
// adapter; a gateway reboot shows as the link's "connection refused" and the
// meters resume when it is back.
func TestMetersBehindAGateway(t *testing.T) {
	for _, f := range []emsim.Framing{emsim.RTUOverTCP, emsim.ModbusTCP} {
		t.Run(f.String(), func(t *testing.T) {
			r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0)}, f)
			gw := r.Gateway
			for i := range r.Sims {
				r.availability(0, i, "online")
				r.confirmed(0, i)
			}
			mark := r.ha.Mark()
			if err := gw.Stop(); err != nil {
				t.Fatal(err)
			}
			r.ha.Wait(mark, r.topics(0).Link(), func(p string) bool { return strings.Contains(p, `"cause":"connection refused"`) }, wait)
			for i := range r.Sims {
				r.availability(mark, i, "offline")
			}
			mark = r.ha.Mark()
			if err := gw.Restart(); err != nil {
				t.Fatal(err)
			}
			for i := range r.Sims {
				r.availability(mark, i, "online")
			}
			r.recorded()
		})
	}
}

// An existing single-meter installation keeps, end to end, every entity it
// had (discovery/testdata/entity-ids-16eae21.txt): an upgrade renames nothing.
func TestSingleMeterKeepsItsEntities(t *testing.T) {
	r := newRig(t, rigOptions{byID: true})
	r.confirmedState(0)
	h := r.recorded()
	f, err := os.Open("../../discovery/testdata/entity-ids-16eae21.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	have := h.Entities()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		n++
		if !slices.Contains(have, fields[1]) {
			t.Errorf("HA lost %s after the upgrade", fields[1])
		}
	}
	if n < 50 {
		t.Fatalf("read %d ids from the fixture", n)
	}
}

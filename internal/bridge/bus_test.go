package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// busRig is the whole bridge reading several simulated meters on one line:
// a pty in udev's tree, or a gateway on loopback, with Mosquitto and a
// subscriber that reads what HA would read.
type busRig struct {
	t      *testing.T
	broker *brokertest.Broker
	ha     *brokertest.Subscriber
	bus    *emsim.Bus
	sims   []*emsim.Sim // in EM340_MODBUS_ADDRESS's order
	cfg    config.Config
	cancel context.CancelFunc
	done   chan error
}

// newBusRig starts a bridge for the meters opts describe; plug puts the bus
// on a line and returns the EM340_SERIAL_DEVICE for it (nil: udev's tree and
// its by-id link).
func newBusRig(t *testing.T, opts []emsim.Options, plug func(*emsim.Bus) string, env ...string) *busRig {
	t.Helper()
	r := &busRig{t: t, done: make(chan error, 1)}
	r.broker = brokertest.Start(t)
	r.ha = brokertest.Subscribe(t, r.broker, "#")
	var addrs []string
	for _, o := range opts {
		s := emsim.New(o)
		r.sims = append(r.sims, s)
		addrs = append(addrs, strconv.Itoa(int(o.Address)))
	}
	var err error
	if r.bus, err = emsim.NewBus(r.sims...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.bus.Close() })
	dir := t.TempDir()
	if plug == nil {
		plug = func(b *emsim.Bus) string {
			root := filepath.Join(dir, "dev")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := b.StartTree(emsim.DevTree{Root: root}); err != nil {
				t.Fatal(err)
			}
			return b.ByIDPath()
		}
	}
	env = append([]string{
		"EM340_SERIAL_DEVICE=" + plug(r.bus),
		"EM340_MODBUS_ADDRESS=" + strings.Join(addrs, ","),
		"EM340_SERIAL_BAUD=115200",
		"EM340_MODBUS_TIMEOUT=600ms",
		"EM340_POLL_INTERVAL=500ms",
		"EM340_MQTT_URL=" + r.broker.URL(),
		"EM340_RECONNECT_MIN_DELAY=50ms",
		"EM340_RECONNECT_MAX_DELAY=1s",
		"EM340_STATUS_FILE=" + filepath.Join(dir, "status"),
		"EM340_STALL_TIMEOUT=10s",
	}, env...)
	if r.cfg, err = config.Load(env); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("EM340_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	opts2 := Options{Config: r.cfg, Version: "test", Logger: log, BirthDelay: func() time.Duration { return 0 }}
	go func() { r.done <- Run(ctx, opts2) }()
	t.Cleanup(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(wait):
			t.Error("bridge did not stop")
		}
	})
	return r
}

// meterOpts is a meter of the family at addr, serial derived from it.
func meterOpts(addr byte, model uint16, system uint16) emsim.Options {
	return emsim.Options{Address: addr, ModelCode: model, MeasuringSystem: system, Serial: fmt.Sprintf("%06dW", 100000+int(addr)),
		FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB, FirmwareVersion: 1}
}

func (r *busRig) topics(i int) discovery.Topics {
	r.t.Helper()
	s := fmt.Sprintf("%06dW", 100000+int(r.cfg.ModbusAddresses[i]))
	tp, err := discovery.NewTopics(r.cfg.MQTTBaseTopic, r.cfg.HADiscoveryPrefix, s)
	if err != nil {
		r.t.Fatal(err)
	}
	return tp
}

// recorded is what HA has from every message so far; a warning HA would log fails the test.
func (r *busRig) recorded() *hass.HA {
	r.t.Helper()
	h := hass.New(r.cfg.HADiscoveryPrefix)
	for _, m := range r.ha.Messages() {
		if err := h.Apply(hass.Message{Topic: m.Topic, Payload: []byte(m.Payload), Retain: m.Retain, At: m.At}); err != nil {
			r.t.Errorf("HA would warn at %s: %v", m.At.Format("15:04:05.000"), err)
		}
	}
	return h
}

// confirmed waits, after mark, for a state of meter i with its energy totals.
func (r *busRig) confirmed(mark, i int) map[string]any {
	r.t.Helper()
	m := r.ha.Wait(mark, r.topics(i).MeterState(), func(p string) bool { return strings.Contains(p, `"energy_import":`) }, wait)
	var v map[string]any
	if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
		r.t.Fatal(err)
	}
	return v
}

func (r *busRig) availability(mark, i int, want string) {
	r.t.Helper()
	r.ha.Wait(mark, r.topics(i).MeterAvailability(), brokertest.Equals(want), wait)
}

// Three meters on one bus are three HA devices via the bridge; every poll
// reads each meter's planned blocks and nothing else.
func TestThreeMetersOnOneBus(t *testing.T) {
	r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0), meterOpts(5, 0, 0)}, nil)
	for i := range r.sims {
		r.availability(0, i, "online")
		r.confirmed(0, i)
	}
	// Each meter its own values: not another meter's reply under its name.
	for i, s := range r.sims {
		if err := s.Set("power", float64(1000*(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	mark := r.ha.Mark()
	for i := range r.sims {
		want := fmt.Sprintf(`"power":%d.0`, 1000*(i+1))
		r.ha.Wait(mark, r.topics(i).MeterState(), func(p string) bool { return strings.Contains(p, want) }, wait)
	}

	// Steady state: each meter's poll is its three blocks, one meter after
	// the other, so a poll costs the sum of their minimum.
	for _, s := range r.sims {
		s.ResetRequests()
	}
	mark = r.ha.Mark()
	for range 4 { // three whole polls at least
		mark = indexAfter(r.ha, r.ha.Wait(mark, r.topics(2).MeterState(), nil, wait))
	}
	var all []emsim.Request
	for i, s := range r.sims {
		reqs := s.Requests()
		var own []emsim.Request
		for _, q := range reqs {
			if q.Slave == r.cfg.ModbusAddresses[i] {
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
		if q.Slave == r.cfg.ModbusAddresses[0] && q.Addr == 0 {
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
		if d != r.topicsBridgeConfig() {
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

func (r *busRig) topicsBridgeConfig() string { return r.topics(0).BridgeConfig() }

// A meter that stops answering goes unavailable alone, its status says why,
// the link stays online and names it, and the other meters keep publishing;
// it comes back by itself.
func TestMutedMeterLeavesTheOthers(t *testing.T) {
	r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0), meterOpts(5, 0, 0)}, nil)
	for i := range r.sims {
		r.availability(0, i, "online")
	}
	mark := r.ha.Mark()
	r.sims[1].Mute(true)
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
			after = indexAfter(r.ha, m)
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
	r.sims[1].Mute(false)
	r.availability(mark, 1, "online")
	r.ha.Wait(mark, r.topics(1).MeterStatus(), brokertest.Equals("online"), wait)
	r.ha.Wait(mark, r.topics(1).MeterState(), nil, wait)
}

// indexAfter is the mark just after m.
func indexAfter(s *brokertest.Subscriber, m brokertest.Message) int {
	msgs := s.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].At.Equal(m.At) && msgs[i].Topic == m.Topic {
			return i + 1
		}
	}
	return len(msgs)
}

// Unplugging the adapter takes every meter down; the replug brings every one back.
func TestUnplugTakesEveryMeterDown(t *testing.T) {
	r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0), meterOpts(5, 0, 0)}, nil)
	for i := range r.sims {
		r.availability(0, i, "online")
	}
	mark := r.ha.Mark()
	if err := r.bus.Unplug(); err != nil {
		t.Fatal(err)
	}
	for i := range r.sims {
		r.availability(mark, i, "offline")
		r.ha.Wait(mark, r.topics(i).MeterStatus(), func(p string) bool { return strings.HasPrefix(p, "link reconnecting") }, wait)
	}
	mark = r.ha.Mark()
	if err := r.bus.Replug(); err != nil {
		t.Fatal(err)
	}
	for i := range r.sims {
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
	r := newBusRig(t, opts, nil)
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
			want := r.sims[i].Value("voltage_l1_n")
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
			var gw *emsim.Gateway
			r := newBusRig(t, []emsim.Options{meterOpts(1, 0, 0), meterOpts(2, 0, 0)}, func(b *emsim.Bus) string {
				g, err := emsim.ListenTCP("127.0.0.1:0", f, b)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = g.Close() })
				gw = g
				return g.URL()
			})
			for i := range r.sims {
				r.availability(0, i, "online")
				r.confirmed(0, i)
			}
			mark := r.ha.Mark()
			if err := gw.Stop(); err != nil {
				t.Fatal(err)
			}
			r.ha.Wait(mark, r.topics(0).Link(), func(p string) bool { return strings.Contains(p, `"cause":"connection refused"`) }, wait)
			for i := range r.sims {
				r.availability(mark, i, "offline")
			}
			mark = r.ha.Mark()
			if err := gw.Restart(); err != nil {
				t.Fatal(err)
			}
			for i := range r.sims {
				r.availability(mark, i, "online")
			}
			r.recorded()
		})
	}
}

// An existing single-meter installation keeps, end to end, every entity it
// had (discovery/testdata/entity-ids-16eae21.txt): an upgrade renames nothing.
func TestSingleMeterKeepsItsEntities(t *testing.T) {
	opts := emsim.Options{Address: 1, Serial: "235411W", FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB}
	r := newBusRig(t, []emsim.Options{opts}, nil)
	tp, _ := discovery.NewTopics(r.cfg.MQTTBaseTopic, r.cfg.HADiscoveryPrefix, "235411W")
	r.ha.Wait(0, tp.MeterState(), func(p string) bool { return strings.Contains(p, `"energy_import":`) }, wait)
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

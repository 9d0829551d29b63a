package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
)

// The Home Assistant contract: everything the bridge tells HA, when, and what
// happens when a publish fails. All of it is QoS 1.
//
//	topic                              retained  content, when
//	<base>/<old meter>/availability    yes       offline, for a meter replaced or left from a previous run
//	<base>/<meter>/availability        yes       online only after a fresh reading, offline the moment the
//	                                             link leaves online or the meter stops answering or no
//	                                             fresh reading came for the freshness bound, and on shutdown
//	<base>/<meter>/status              yes       what the meter is doing in words (online, not answering, …)
//	<base>/bridge/link                 yes       the link's state, on every change
//	<base>/bridge/availability         yes       online on connect; offline on shutdown and as the will
//	<prefix>/device/<bridge>/config    yes       on connect and HA's birth
//	<prefix>/device/<meter>/config     yes       once the meter is known; on connect and HA's birth; a
//	                                             component it no longer has is removed first
//	clean-up of outdated configs       yes       after the retained configs seen on connect settle
//	<base>/<meter>/state               no        each fresh reading while the meter is online
//
// Every configured meter (EM340_MODBUS_ADDRESS) has its own topics, device and
// availability; one that stops answering goes unavailable alone.
//
// The retained messages are a desired state, derived from what the bridge knows
// and published in the order above; each is published until the broker
// acknowledges it on the current connection, so a failed publish is retried,
// never dropped, and a new connection (a broker without persistence has lost
// them) publishes all of them again. Availability and the link come before the
// configs and readings, so a restart with the meter unreachable turns the
// previous run's entities unavailable with the first message. A reading is
// never retried: one that could not be delivered at once is stale.
const (
	publishTimeout = 5 * time.Second
	// configSettle is how long the retained discovery configs the broker sends
	// on subscribing may take to arrive, before outdated ones are cleaned up.
	configSettle = time.Second
	inboxSize    = 256
)

// publisher owns what Home Assistant sees. Other goroutines hand it events as
// functions that its one goroutine (run) applies to the state it alone holds.
type publisher struct {
	log        *slog.Logger
	cfg        config.Config
	origin     discovery.Origin
	bridge     discovery.Topics // bridge topics; the device id part is unused
	birthDelay func() time.Duration
	freshness  time.Duration // longest a reading counts as current in HA
	inbox      chan func(*haState)
}

// haState is what the bridge has told HA and what it should tell it. Only the
// publisher's run goroutine touches it.
type haState struct {
	conn    *brokerConn       // nil while the broker is down
	since   time.Time         // when conn last changed
	refusal string            // why the last connection attempt failed, with what to do; "" once connected
	acked   map[string]string // retained payloads the broker acknowledged on conn
	refused map[string]string // topics the broker refused, with the reason last logged

	linkStatus link.Status
	meters     []*meterHA         // one per configured meter, in EM340_MODBUS_ADDRESS's order
	retired    []discovery.Topics // meters whose entities must stay unavailable

	seenConfigs map[string][]byte // retained discovery configs found on connect
	settleAt    time.Time
	cleanup     []discovery.Message // removals, published in order until acknowledged
	cleaned     string              // the meter config topics the clean-up last ran for
}

// meterHA is one meter as HA sees it.
type meterHA struct {
	unit      uint8
	deviceID  string            // configured; "" = the meter's serial number
	topics    *discovery.Topics // nil until the meter's id is known
	identity  meter.Identity
	registers []meter.Register // what the meter has; the whole table until it answered

	online      bool      // HA shows its readings: a fresh one came since it was last offline
	lastFresh   time.Time // when the last reading reached HA
	staleLogged bool

	reading    meter.Reading
	readingDue bool
}

// brokerConn is one MQTT connection; gone is closed when it drops, so a
// publish waiting for its acknowledgement gives up at once.
type brokerConn struct {
	cm   *autopaho.ConnectionManager
	gone <-chan struct{}
}

func newPublisher(cfg config.Config, origin discovery.Origin, log *slog.Logger, birthDelay func() time.Duration) (*publisher, error) {
	bridgeTopics, err := discovery.NewTopics(cfg.MQTTBaseTopic, cfg.HADiscoveryPrefix, "meter")
	if err != nil {
		return nil, err
	}
	p := &publisher{log: log, cfg: cfg, origin: origin, bridge: bridgeTopics, birthDelay: birthDelay,
		freshness: Freshness(cfg), inbox: make(chan func(*haState), inboxSize)}
	for _, m := range cfg.Meters() {
		if m.DeviceID == "" {
			continue
		}
		if _, err := discovery.NewTopics(cfg.MQTTBaseTopic, cfg.HADiscoveryPrefix, m.DeviceID); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Freshness is how long a reading counts as current: three polls missed in a
// row, plus a request timing out for each meter on the line (a poll reads
// them one after the other). HA's expire_after and the bridge's own check on
// each meter's availability both use it.
func Freshness(cfg config.Config) time.Duration {
	return 3*cfg.PollInterval + time.Duration(max(len(cfg.ModbusAddresses), 1))*cfg.ModbusTimeout
}

// send hands an event to the run goroutine; it blocks only while the inbox is
// full, which a publisher stuck on a broker for publishTimeout cannot reach.
func (p *publisher) send(ctx context.Context, f func(*haState)) {
	select {
	case p.inbox <- f:
	case <-ctx.Done():
	}
}

func (p *publisher) brokerUp(cm *autopaho.ConnectionManager, gone <-chan struct{}) {
	p.send(context.Background(), func(s *haState) {
		s.conn, s.since, s.acked, s.refusal = &brokerConn{cm: cm, gone: gone}, time.Now(), map[string]string{}, ""
		s.seenConfigs, s.settleAt, s.cleaned = map[string][]byte{}, time.Time{}, ""
		p.log.Info("MQTT connected", "url", p.cfg.MQTTURL)
	})
}

// brokerFailed records why a connection attempt failed, for the health check
// to say (the log says it once per change).
func (p *publisher) brokerFailed(why string) {
	p.send(context.Background(), func(s *haState) { s.refusal = why })
}

func (p *publisher) brokerDown() {
	p.send(context.Background(), func(s *haState) {
		s.conn, s.since = nil, time.Now()
		p.log.Warn("MQTT connection lost", "url", p.cfg.MQTTURL)
	})
}

// linkChanged: a meter's entities go unavailable the moment the link is not
// online or the link says that meter stopped answering, so HA never shows
// its last reading as current.
func (p *publisher) linkChanged(st link.Status) {
	p.send(context.Background(), func(s *haState) {
		s.linkStatus = st
		for _, m := range s.meters {
			if u, _ := st.Unit(m.unit); st.State != link.Online || !u.Answering {
				m.online, m.readingDue = false, false
			}
		}
	})
}

// meterIdentified records what the meter at unit is and has. A different
// meter (without a configured device id) becomes a device of its own; the
// old one is retired.
func (p *publisher) meterIdentified(unit uint8, id meter.Identity, registers []meter.Register) {
	registers = slices.Clone(registers)
	p.send(context.Background(), func(s *haState) {
		if m := s.meter(unit); m != nil {
			if err := p.setMeter(s, m, id, registers); err != nil {
				p.log.Error("cannot announce the meter", "unit", unit, "serial", id.Serial, "err", err)
			}
		}
	})
}

func (p *publisher) setMeter(s *haState, m *meterHA, id meter.Identity, registers []meter.Register) error {
	deviceID := m.deviceID
	if deviceID == "" {
		deviceID = id.Serial
	}
	topics, err := discovery.NewTopics(p.cfg.MQTTBaseTopic, p.cfg.HADiscoveryPrefix, deviceID)
	if err != nil {
		return err
	}
	if m.topics != nil && m.topics.MeterID() != topics.MeterID() {
		// Offline first (it is retained state), then its config goes.
		s.retired = append(s.retired, *m.topics)
		s.cleanup = append(s.cleanup, discovery.Removal(m.topics.MeterConfig()))
	}
	if m.topics == nil || m.topics.MeterID() != topics.MeterID() {
		m.online = false // a new device: online after its first fresh reading
	}
	m.identity, m.registers, m.topics = id, registers, &topics
	return nil
}

// meter is the configured meter at unit; nil if there is none.
func (s *haState) meter(unit uint8) *meterHA {
	for _, m := range s.meters {
		if m.unit == unit {
			return m
		}
	}
	return nil
}

// readingTaken queues a reading of the meter at unit; it reaches HA only if
// it is still current when the broker can take it.
func (p *publisher) readingTaken(unit uint8, r meter.Reading) {
	p.send(context.Background(), func(s *haState) {
		if m := s.meter(unit); m != nil {
			m.reading, m.readingDue = r, true
		}
	})
}

// haBirth: HA restarted and lost its entities. Its advice is to resend after a
// random delay, so a fleet of bridges does not answer at the same instant.
func (p *publisher) haBirth() {
	time.AfterFunc(p.birthDelay(), func() {
		p.send(context.Background(), func(s *haState) {
			clear(s.acked)
			for _, m := range s.meters {
				m.readingDue = m.online
			}
		})
	})
}

// retainedConfig records a retained discovery config the broker sent on
// subscribing. It runs on the MQTT client's goroutine and must not block it:
// with the inbox full, the config is only not cleaned up this time.
func (p *publisher) retainedConfig(topic string, payload []byte) {
	select {
	case p.inbox <- func(s *haState) {
		if s.seenConfigs != nil {
			s.seenConfigs[topic] = payload
		}
	}:
	default:
		p.log.Debug("retained discovery config not examined: inbox full", "topic", topic)
	}
}

// run applies events and publishes what is due until ctx is done, then tells
// HA the bridge and the meter are gone. beat runs at every tick, with the
// broker connection's state and, while down, why the last attempt failed.
func (p *publisher) run(ctx context.Context, tick time.Duration, beat func(mqttUp bool, since time.Time, refusal string)) {
	s := &haState{since: time.Now(), acked: map[string]string{}, refused: map[string]string{},
		linkStatus: link.Status{State: link.Reconnecting, Cause: link.CauseStarting, Device: p.cfg.SerialDevice}}
	for _, mc := range p.cfg.Meters() {
		m := &meterHA{unit: mc.Address, deviceID: mc.DeviceID}
		s.meters = append(s.meters, m)
		if mc.DeviceID != "" {
			// Named by configuration: announce the meter at once, as the EM340
			// it is expected to be, and complete it when the meter first answers.
			_ = p.setMeter(s, m, meter.Identity{ModelCode: meter.ModelEM340}, meter.Registers())
		}
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var connCtx context.Context
	var dropConn context.CancelFunc = func() {}
	defer func() { dropConn() }()
	var current *brokerConn
	for {
		if s.conn != current { // a new connection, or none
			dropConn()
			current = s.conn
			if current != nil {
				connCtx, dropConn = connectionContext(ctx, current.gone)
				p.subscribe(connCtx, s)
			}
		}
		if current != nil {
			p.sync(connCtx, s)
		}
		beat(s.conn != nil, s.since, s.refusal)
		select {
		case <-ctx.Done():
			p.shutdown(s)
			return
		case f := <-p.inbox:
			f(s)
			for drained := false; !drained; { // apply everything queued before publishing
				select {
				case f := <-p.inbox:
					f(s)
				default:
					drained = true
				}
			}
		case <-t.C:
		}
		p.checkFreshness(s, time.Now())
	}
}

// connectionContext is done when ctx is or when the connection drops.
func connectionContext(ctx context.Context, gone <-chan struct{}) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-gone:
			cancel()
		case <-c.Done():
		}
	}()
	return c, cancel
}

// subscribe listens for HA's birth and, once per connection, collects the
// retained discovery configs so that outdated ones of this bridge are removed.
func (p *publisher) subscribe(ctx context.Context, s *haState) {
	sctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err := s.conn.cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: p.cfg.HAStatusTopic, QoS: 1},
		{Topic: p.cfg.HADiscoveryPrefix + "/device/+/config", QoS: 1},
	}})
	if err != nil {
		p.log.Warn("cannot subscribe to Home Assistant's birth and discovery topics", "err", err)
		return
	}
	s.settleAt = time.Now().Add(configSettle)
}

// retained is the desired retained state, in publication order.
func (p *publisher) retained(s *haState) []discovery.Message {
	var msgs []discovery.Message
	for _, old := range s.retired {
		msgs = append(msgs, discovery.MeterAvailability(old, false))
	}
	for _, m := range s.meters {
		if m.topics != nil {
			msgs = append(msgs, discovery.MeterAvailability(*m.topics, m.online),
				discovery.MeterStatusMessage(*m.topics, meterStatus(m, s.linkStatus)))
		}
	}
	msgs = append(msgs,
		discovery.LinkMessage(p.bridge, linkPayload(s.linkStatus, s.meters)),
		discovery.BridgeAvailability(p.bridge, true),
		discovery.BridgeDevice(p.bridge, p.origin).Message())
	for _, m := range s.meters {
		if m.topics != nil {
			msgs = append(msgs, p.meterConfig(m).Message())
		}
	}
	return msgs
}

func (p *publisher) meterConfig(m *meterHA) discovery.DeviceConfig {
	return discovery.MeterDevice(*m.topics, p.origin, m.identity, m.registers, p.freshness)
}

// sync publishes what the broker does not hold yet, in order; it stops at the
// first failure and is called again at the next event or tick.
func (p *publisher) sync(ctx context.Context, s *haState) {
	if !p.syncRetained(ctx, s) {
		return
	}
	p.planCleanup(s)
	for len(s.cleanup) > 0 {
		m := s.cleanup[0]
		if !p.publish(ctx, s, m) {
			return
		}
		s.cleanup = s.cleanup[1:]
	}
	if s.linkStatus.State != link.Online {
		return
	}
	for _, m := range s.meters {
		if !p.publishReading(ctx, s, m) {
			return
		}
	}
}

// publishReading publishes a meter's due reading while it is current; false
// when the connection went meanwhile.
func (p *publisher) publishReading(ctx context.Context, s *haState, m *meterHA) bool {
	if !m.readingDue || m.topics == nil {
		return true
	}
	m.readingDue = false
	// A reading is current for one poll interval, and one taken before this
	// connection came up is never replayed as if it were current.
	if time.Since(m.reading.Time) >= p.cfg.PollInterval || m.reading.Time.Before(s.since) {
		return true
	}
	if !p.publish(ctx, s, discovery.StateMessage(*m.topics, m.reading, m.identity)) {
		return ctx.Err() == nil
	}
	m.lastFresh, m.staleLogged = time.Now(), false
	if !m.online {
		m.online = true // after the state, so HA never shows the old value as current
		return p.syncRetained(ctx, s)
	}
	return true
}

// syncRetained publishes the retained messages the broker does not hold yet.
// A connection that drops ends it; a message the broker refuses (a PUBACK
// error: its ACL, say) is retried next time but does not hold up the rest, or
// one misconfigured topic would silence the bridge.
func (p *publisher) syncRetained(ctx context.Context, s *haState) bool {
	for _, m := range p.retained(s) {
		previous, published := s.acked[m.Topic]
		if published && previous == string(m.Payload) {
			continue
		}
		if mh := s.meterWithConfig(m.Topic); published && mh != nil && !p.dropComponents(ctx, s, mh, previous) {
			return false
		}
		if !p.publish(ctx, s, m) && ctx.Err() != nil {
			return false
		}
	}
	return true
}

// meterWithConfig is the current meter whose discovery config is on topic; nil if none.
func (s *haState) meterWithConfig(topic string) *meterHA {
	for _, m := range s.meters {
		if m.topics != nil && m.topics.MeterConfig() == topic {
			return m
		}
	}
	return nil
}

// dropComponents removes from HA the entities that a meter's previous config
// on this connection had and its new one lacks (a mode A meter loses export,
// a meter announced before it answered loses what it turns out not to have):
// a device config that merely leaves a component out does not remove it.
func (p *publisher) dropComponents(ctx context.Context, s *haState, m *meterHA, previous string) bool {
	current := p.meterConfig(m)
	stale, err := discovery.StaleComponents([]byte(previous), current)
	if err != nil || len(stale) == 0 {
		return true
	}
	return p.publish(ctx, s, current.WithRemovedComponents(stale...).Message()) || ctx.Err() == nil
}

// publish sends m and records the acknowledgement of a retained message.
func (p *publisher) publish(ctx context.Context, s *haState, m discovery.Message) bool {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err := s.conn.cm.Publish(pctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain})
	if err != nil {
		if !errors.Is(err, autopaho.ConnectionDownError) && ctx.Err() == nil && s.refused[m.Topic] != err.Error() {
			s.refused[m.Topic] = err.Error() // logged once per topic and reason
			p.log.Warn("MQTT publish failed; retrying", "topic", m.Topic, "err", err)
		}
		return false
	}
	delete(s.refused, m.Topic)
	if m.Retain {
		s.acked[m.Topic] = string(m.Payload)
	}
	return true
}

// checkFreshness takes a meter's entities offline when no reading reached HA
// for the freshness bound although the link stays up: a line that answers
// nothing usable must not leave frozen values on show.
func (p *publisher) checkFreshness(s *haState, now time.Time) {
	for _, m := range s.meters {
		if !m.online || now.Sub(m.lastFresh) <= p.freshness {
			continue
		}
		m.online = false
		if !m.staleLogged {
			m.staleLogged = true
			p.log.Warn("no fresh reading; the meter's entities are shown unavailable until one arrives",
				"unit", m.unit, "for", now.Sub(m.lastFresh).Round(time.Millisecond), "bound", p.freshness)
		}
	}
}

// planCleanup decides, once the retained configs have settled, which of this
// bridge's own configs are outdated: components the meter's config no longer
// has, meters via this bridge that are not the current one, and the bridge
// device of a previous base topic that the current meter was announced under.
// Configs of other bridges and other software are never touched.
func (p *publisher) planCleanup(s *haState) {
	if s.settleAt.IsZero() || time.Now().Before(s.settleAt) {
		return
	}
	var current []string // config topics of the meters known now
	for _, m := range s.meters {
		if m.topics != nil {
			current = append(current, m.topics.MeterConfig())
		}
	}
	// Another meter's config is removed only once every configured meter is
	// known: until then it may be one of them, under its serial number.
	allKnown := len(current) == len(s.meters)
	key := "meters:" + strings.Join(current, " ") // never "", what a new connection starts from
	if s.cleaned == key {
		return
	}
	s.cleaned = key
	var plan cleanupPlan
	configs := parseConfigs(s.seenConfigs)
	bridgeID := p.bridge.BridgeID()
	for _, c := range configs {
		mine := s.meterWithConfig(c.topic)
		switch {
		case mine != nil:
			current := p.meterConfig(mine)
			if stale, err := discovery.StaleComponents(c.raw, current); err == nil && len(stale) > 0 {
				plan.add(current.WithRemovedComponents(stale...).Message(), current.Message())
			}
			if c.via != "" && c.via != bridgeID {
				plan.oldBridges = append(plan.oldBridges, c.via)
			}
			delete(s.seenConfigs, c.topic) // dealt with
		case c.via == bridgeID:
			// A meter announced via this bridge that is none of the current
			// ones: offline at once; removed once every current one is known.
			for _, a := range c.meterAvailability(p.bridge) {
				plan.add(discovery.Message{Topic: a, Payload: []byte(discovery.PayloadOffline), Retain: true, QoS: 1})
			}
			if allKnown {
				plan.add(discovery.Removal(c.topic))
				for _, a := range c.meterAvailability(p.bridge) {
					plan.add(discovery.Removal(a))
				}
				delete(s.seenConfigs, c.topic)
			}
		}
	}
	for _, c := range configs {
		if c.topic != p.bridge.BridgeConfig() && slices.Contains(plan.oldBridges, c.id) {
			plan.add(discovery.Removal(c.topic))
			for _, a := range c.availability {
				plan.add(discovery.Removal(a))
			}
			if c.state != "" {
				plan.add(discovery.Removal(c.state))
			}
			delete(s.seenConfigs, c.topic)
		}
	}
	if len(plan.msgs) > 0 {
		p.log.Info("removing outdated discovery configs of this bridge", "messages", len(plan.msgs))
	}
	s.cleanup = append(s.cleanup, plan.msgs...)
}

type cleanupPlan struct {
	msgs       []discovery.Message
	oldBridges []string
}

func (c *cleanupPlan) add(m ...discovery.Message) { c.msgs = append(c.msgs, m...) }

// seenConfig is the part of a retained device config the clean-up reads.
type seenConfig struct {
	topic, id, via, state string
	availability          []string
	raw                   []byte
}

// meterAvailability is the config's own availability topic under this
// bridge's base topic: not the bridge's availability, not its link.
func (c seenConfig) meterAvailability(bridge discovery.Topics) []string {
	var out []string
	for _, a := range c.availability {
		if a != bridge.BridgeAvailability() && a != bridge.Link() && strings.HasSuffix(a, "/availability") {
			out = append(out, a)
		}
	}
	return out
}

// parseConfigs keeps the configs this software published, sorted by topic.
func parseConfigs(seen map[string][]byte) []seenConfig {
	var out []seenConfig
	for topic, raw := range seen {
		var cfg struct {
			Dev struct {
				Identifiers []string `json:"identifiers"`
				ViaDevice   string   `json:"via_device"`
			} `json:"dev"`
			O struct {
				Name string `json:"name"`
			} `json:"o"`
			StateTopic   string `json:"state_topic"`
			Availability []struct {
				Topic string `json:"topic"`
			} `json:"availability"`
		}
		if len(raw) == 0 || json.Unmarshal(raw, &cfg) != nil || cfg.O.Name != discovery.OriginName || len(cfg.Dev.Identifiers) == 0 {
			continue
		}
		c := seenConfig{topic: topic, id: cfg.Dev.Identifiers[0], via: cfg.Dev.ViaDevice, state: cfg.StateTopic, raw: raw}
		for _, a := range cfg.Availability {
			c.availability = append(c.availability, a.Topic)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b seenConfig) int { return strings.Compare(a.topic, b.topic) })
	return out
}

// shutdown tells HA the meter and the bridge are going away (the will only
// covers a crash), so no retained "online" outlives this run.
func (p *publisher) shutdown(s *haState) {
	if s.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownPublish)
	defer cancel()
	var msgs []discovery.Message
	for _, m := range s.meters {
		if m.topics != nil {
			msgs = append(msgs, discovery.MeterAvailability(*m.topics, false))
		}
	}
	msgs = append(msgs, discovery.BridgeAvailability(p.bridge, false))
	for _, m := range msgs {
		if !p.publish(ctx, s, m) {
			p.log.Warn("cannot publish offline", "topic", m.Topic)
			return
		}
	}
}

// linkPayload is the link's status in Home Assistant's words. The details that
// help a user act (which meter answered, which group is missing) go with the
// cause; with several meters, it says which of them do not answer.
func linkPayload(st link.Status, meters []*meterHA) discovery.Link {
	cause := string(st.Cause)
	switch st.Cause {
	case link.CausePermissionDenied:
		cause += " (is the bridge's user in the dialout group?)"
	case link.CauseDeviceNotAllowed:
		cause += " (does the container's device_cgroup_rules allow it?)"
	case link.CauseWrongMeter:
		cause += ": " + st.Detail
	}
	if st.State == link.Online && len(st.Units) > 1 {
		cause = unitsCause(st.Units, meters)
	}
	return discovery.Link{State: discovery.LinkState(st.State), Cause: cause, Since: st.Since,
		Reconnects: st.Reconnects, LastOutage: st.LastOutage, Device: st.Device}
}

// unitsCause says which meters of an online line are not well: "meter at
// address 2 not answering; meter at address 5 wrong meter: …".
func unitsCause(units []link.UnitStatus, meters []*meterHA) string {
	var parts []string
	for _, u := range units {
		if u.Cause == link.CauseNone {
			continue
		}
		name := "meter at address " + strconv.Itoa(int(u.Unit))
		for _, m := range meters {
			if m.unit == u.Unit && m.topics != nil {
				name += " (" + m.topics.DeviceID() + ")"
			}
		}
		what := string(u.Cause)
		if u.Cause == link.CauseWrongMeter {
			what += ": " + u.Detail
		}
		parts = append(parts, name+" "+what)
	}
	return strings.Join(parts, "; ")
}

// meterStatus is what a meter's status entity says: why its readings are or
// are not shown.
func meterStatus(m *meterHA, st link.Status) string {
	u, _ := st.Unit(m.unit)
	switch {
	case st.State != link.Online:
		return "link " + string(st.State) + ": " + string(st.Cause)
	case !u.Answering:
		return string(link.CauseMeterSilent)
	case u.Cause == link.CauseWrongMeter:
		return string(u.Cause) + ": " + u.Detail
	case m.online:
		return "online"
	}
	return "waiting for a fresh reading"
}

package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
)

const publishTimeout = 5 * time.Second

// due marks what the next flush publishes. Everything is due after a broker
// (re)connect, since a broker without persistence has lost the retained messages.
type due struct {
	all, bridgeConfig, meterConfig, link, meterAvailability, reading bool
	replacedMeters                                                   []discovery.Topics
}

// publisher owns what Home Assistant sees. Other goroutines report events to it
// (broker up, link change, identity, reading, HA birth); its loop publishes
// them in order, so HA never gets a reading before the config that describes it.
type publisher struct {
	log        *slog.Logger
	cfg        config.Config
	origin     discovery.Origin
	bridge     discovery.Topics // bridge topics; the device id part is unused
	birthDelay func() time.Duration
	wake       chan struct{}

	mu          sync.Mutex
	cm          *autopaho.ConnectionManager // nil while the broker is down
	connected   context.Context             // done when this connection drops: a publish waiting for its ack gives up then
	dropped     context.CancelFunc
	brokerSince time.Time // when cm last changed
	due         due
	link        discovery.Link
	identity    meter.Identity
	meter       *discovery.Topics // nil until the meter's id is known
	meterOnline bool              // what HA is told about the measurement entities
	reading     meter.Reading
	hasReading  bool
	readingLive bool // taken while the broker was connected
}

func newPublisher(cfg config.Config, origin discovery.Origin, log *slog.Logger, birthDelay func() time.Duration) (*publisher, error) {
	bridgeTopics, err := discovery.NewTopics(cfg.MQTTBaseTopic, cfg.HADiscoveryPrefix, "meter")
	if err != nil {
		return nil, err
	}
	p := &publisher{log: log, cfg: cfg, origin: origin, bridge: bridgeTopics, birthDelay: birthDelay,
		wake: make(chan struct{}, 1), brokerSince: time.Now(),
		link: discovery.Link{State: discovery.LinkReconnecting, Cause: string(link.CauseStarting), Device: cfg.SerialDevice}}
	if cfg.DeviceID != "" {
		// Named by configuration: announce the meter at once, as the EM340 it
		// is expected to be, and complete it when the meter first answers.
		if err := p.setMeter(meter.Identity{ModelCode: meter.ModelEM340}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *publisher) brokerUp(cm *autopaho.ConnectionManager) {
	p.mu.Lock()
	p.cm, p.brokerSince, p.due.all = cm, time.Now(), true
	p.connected, p.dropped = context.WithCancel(context.Background())
	p.mu.Unlock()
	p.log.Info("MQTT connected", "url", p.cfg.MQTTURL)
	p.signal()
}

func (p *publisher) brokerDown() {
	p.mu.Lock()
	p.cm, p.brokerSince = nil, time.Now()
	if p.dropped != nil {
		p.dropped()
	}
	p.mu.Unlock()
	p.log.Warn("MQTT connection lost", "url", p.cfg.MQTTURL)
}

func (p *publisher) broker() (connected bool, since time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cm != nil, p.brokerSince
}

// linkChanged: the measurement entities go unavailable the moment the link is
// not online, so HA never shows the last reading as current.
func (p *publisher) linkChanged(st link.Status) {
	p.mu.Lock()
	p.link = linkPayload(st)
	p.due.link = true
	if st.State != link.Online && p.meterOnline {
		p.meterOnline, p.due.meterAvailability = false, true
	}
	p.mu.Unlock()
	p.signal()
}

// meterIdentified records what the meter said at connect. A different meter
// (without EM340_DEVICE_ID) becomes a device of its own; the old one is marked
// unavailable rather than fed another meter's values.
func (p *publisher) meterIdentified(id meter.Identity) {
	p.mu.Lock()
	err := p.setMeter(id)
	p.mu.Unlock()
	if err != nil {
		p.log.Error("cannot announce the meter", "serial", id.Serial, "err", err)
	}
	p.signal()
}

// setMeter is called with mu held (or before the publisher is shared).
func (p *publisher) setMeter(id meter.Identity) error {
	deviceID := p.cfg.DeviceID
	if deviceID == "" {
		deviceID = id.Serial
	}
	topics, err := discovery.NewTopics(p.cfg.MQTTBaseTopic, p.cfg.HADiscoveryPrefix, deviceID)
	if err != nil {
		return err
	}
	if p.meter != nil && p.meter.MeterID() != topics.MeterID() {
		p.due.replacedMeters = append(p.due.replacedMeters, *p.meter)
	}
	p.identity, p.meter = id, &topics
	p.meterOnline = false
	p.due.meterConfig, p.due.meterAvailability = true, true
	return nil
}

func (p *publisher) readingTaken(r meter.Reading) {
	p.mu.Lock()
	p.reading, p.hasReading, p.due.reading = r, true, true
	p.readingLive = p.cm != nil
	if !p.meterOnline && p.link.State == discovery.LinkOnline && p.meter != nil {
		p.meterOnline, p.due.meterAvailability = true, true
	}
	p.mu.Unlock()
	p.signal()
}

// haBirth: HA restarted and lost its entities. Its advice is to resend after a
// random delay, so a fleet of bridges does not answer at the same instant.
func (p *publisher) haBirth() {
	time.AfterFunc(p.birthDelay(), func() {
		p.mu.Lock()
		p.due.bridgeConfig, p.due.meterConfig, p.due.link, p.due.meterAvailability, p.due.reading = true, true, true, true, true
		p.mu.Unlock()
		p.signal()
	})
}

// run publishes what is due whenever something happens, and at least every tick.
func (p *publisher) run(ctx context.Context, tick time.Duration, beat func()) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		beat()
		p.flush(ctx)
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-t.C:
		}
	}
}

func (p *publisher) flush(ctx context.Context) {
	p.mu.Lock()
	cm, d, connected := p.cm, p.due, p.connected
	if cm == nil {
		p.mu.Unlock()
		return // all of it is published again on connect
	}
	p.due = due{}
	// A reading is current only for one poll interval, and one taken while the
	// broker was down is never replayed as if it were current.
	fresh := p.hasReading && p.readingLive && p.meterOnline && time.Since(p.reading.Time) < p.cfg.PollInterval
	var msgs []discovery.Message
	if d.all || d.bridgeConfig {
		msgs = append(msgs, discovery.BridgeAvailability(p.bridge, true), discovery.BridgeDevice(p.bridge, p.origin).Message())
	}
	if d.all || d.link {
		msgs = append(msgs, discovery.LinkMessage(p.bridge, p.link))
	}
	for _, old := range d.replacedMeters {
		msgs = append(msgs, discovery.MeterAvailability(old, false))
	}
	if p.meter != nil {
		if d.all || d.meterConfig {
			msgs = append(msgs, discovery.MeterDevice(*p.meter, p.origin, p.identity, meter.Registers()).Message())
		}
		if (d.reading || d.all) && fresh {
			msgs = append(msgs, discovery.StateMessage(*p.meter, p.reading, p.identity))
		}
		if d.all || d.meterAvailability {
			msgs = append(msgs, discovery.MeterAvailability(*p.meter, p.meterOnline))
		}
	}
	p.mu.Unlock()

	// Waiting for acknowledgements ends with the connection: what is left is
	// published again, all of it, when the broker is back.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-connected.Done():
			stop()
		case <-ctx.Done():
		}
	}()
	if d.all {
		sctx, cancel := context.WithTimeout(ctx, publishTimeout)
		if err := subscribeBirth(sctx, cm, p.cfg.HAStatusTopic); err != nil {
			p.log.Warn("cannot subscribe to Home Assistant's birth topic", "topic", p.cfg.HAStatusTopic, "err", err)
		}
		cancel()
	}
	for _, m := range msgs {
		if err := publish(ctx, cm, m); err != nil {
			if errors.Is(err, autopaho.ConnectionDownError) || connected.Err() != nil {
				return // republished on reconnect
			}
			p.log.Warn("MQTT publish failed", "topic", m.Topic, "err", err)
		}
	}
}

func publish(ctx context.Context, cm *autopaho.ConnectionManager, m discovery.Message) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err := cm.Publish(ctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain})
	return err
}

// shutdown tells HA the bridge is going away: the will only covers a crash.
func (p *publisher) shutdown(ctx context.Context) {
	p.mu.Lock()
	cm := p.cm
	p.mu.Unlock()
	if cm == nil {
		return
	}
	if err := publish(ctx, cm, discovery.BridgeAvailability(p.bridge, false)); err != nil {
		p.log.Warn("cannot publish offline", "err", err)
	}
}

// linkPayload is the link's status in Home Assistant's words. The details that
// help a user act (which meter answered, which group is missing) go with the cause.
func linkPayload(st link.Status) discovery.Link {
	cause := string(st.Cause)
	switch st.Cause {
	case link.CausePermissionDenied:
		cause += " (is the bridge's user in the dialout group?)"
	case link.CauseWrongMeter:
		cause += ": " + st.Detail
	}
	return discovery.Link{State: discovery.LinkState(st.State), Cause: cause, Since: st.Since,
		Reconnects: st.Reconnects, LastOutage: st.LastOutage, Device: st.Device}
}

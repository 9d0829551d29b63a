package bridge

import (
	"context"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/config"
)

// Broker reconnects are quick and bounded: a restarted broker is back within
// seconds, and the serial backoff settings are about the adapter, not the broker.
const (
	brokerRetryMin     = 250 * time.Millisecond
	brokerRetryInitial = 500 * time.Millisecond
	brokerRetryMax     = 10 * time.Second
	brokerKeepAlive    = 30 // seconds
)

// mqttConfig builds autopaho's configuration: the retained "offline" will on the
// bridge availability topic, credentials and TLS, and the callbacks that tell
// the publisher when the broker is (re)connected and when HA announces itself.
func mqttConfig(cfg config.Config, topics discovery.Topics, pub *publisher) (autopaho.ClientConfig, error) {
	server, err := url.Parse(cfg.MQTTURL)
	if err != nil {
		return autopaho.ClientConfig{}, err
	}
	tlsCfg, err := cfg.TLSConfig()
	if err != nil {
		return autopaho.ClientConfig{}, err
	}
	will := discovery.BridgeAvailability(topics, false)
	c := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{server},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     brokerKeepAlive,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(brokerRetryMin, brokerRetryMax, brokerRetryInitial, 2),
		ConnectTimeout:                5 * time.Second,
		WillMessage:                   &paho.WillMessage{Topic: will.Topic, Payload: will.Payload, QoS: will.QoS, Retain: will.Retain},
		ConnectUsername:               cfg.MQTTUsername,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			pub.brokerUp(cm)
		},
		OnConnectionDown: func() bool {
			pub.brokerDown()
			return true
		},
		OnConnectError: func(err error) { pub.log.Warn("MQTT connection failed", "url", cfg.MQTTURL, "err", err) },
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.MQTTClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					if pr.Packet.Topic == cfg.HAStatusTopic && string(pr.Packet.Payload) == discovery.PayloadOnline {
						pub.haBirth()
					}
					return true, nil
				},
			},
		},
	}
	if pw := cfg.MQTTPassword.Reveal(); pw != "" {
		c.ConnectPassword = []byte(pw)
	}
	return c, nil
}

// subscribeBirth subscribes to HA's birth topic; called on every connection,
// since the session is not kept.
func subscribeBirth(ctx context.Context, cm *autopaho.ConnectionManager, topic string) error {
	_, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
	return err
}

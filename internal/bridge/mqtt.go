package bridge

import (
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
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
	configs := cfg.HADiscoveryPrefix + "/device/"
	var gone chan struct{}          // closed when the current connection drops
	var lastConnectErr atomic.Value // string; connect errors are logged once per change
	c := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{server},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     brokerKeepAlive,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(brokerRetryMin, brokerRetryMax, brokerRetryInitial, 2),
		ConnectTimeout:                5 * time.Second,
		WillMessage:                   &paho.WillMessage{Topic: will.Topic, Payload: will.Payload, QoS: will.QoS, Retain: will.Retain},
		ConnectUsername:               cfg.MQTTUsername,
		// autopaho calls these two in turn from one goroutine, never at once.
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			gone = make(chan struct{})
			lastConnectErr.Store("")
			pub.brokerUp(cm, gone)
		},
		OnConnectionDown: func() bool {
			if gone != nil {
				close(gone) // a publish waiting for its ack gives up now
				gone = nil
			}
			pub.brokerDown()
			return true
		},
		OnConnectError: func(err error) {
			if msg := err.Error(); lastConnectErr.Swap(msg) != msg {
				pub.log.Warn("MQTT connection failed; retrying", "url", cfg.MQTTURL, "err", err, "hint", connectHint(err))
				pub.brokerFailed(connectHint(err))
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.MQTTClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					switch topic := pr.Packet.Topic; {
					case topic == cfg.HAStatusTopic && string(pr.Packet.Payload) == discovery.PayloadOnline:
						pub.haBirth()
					case pr.Packet.Retain && strings.HasPrefix(topic, configs) && strings.HasSuffix(topic, "/config"):
						// Retain is set only on what the broker held before we
						// subscribed; our own publications arrive without it.
						pub.retainedConfig(topic, pr.Packet.Payload)
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

// connectHint says what a user can do about a failed connection. autopaho
// speaks MQTT 5 only, so a refusal carries a v5 reason code.
func connectHint(err error) string {
	var refused *autopaho.ConnackError
	if errors.As(err, &refused) {
		switch refused.ReasonCode {
		case 0x86, 0x87: // bad user name or password, not authorized (Mosquitto answers 0x87)
			return "the broker refused the login: check EM340_MQTT_USERNAME and EM340_MQTT_PASSWORD (or EM340_MQTT_PASSWORD_FILE)"
		case 0x85: // client identifier not valid
			return "the broker refused the client id: check EM340_MQTT_CLIENT_ID"
		}
		return "the broker refused the connection"
	}
	return "is the broker running and EM340_MQTT_URL right?"
}

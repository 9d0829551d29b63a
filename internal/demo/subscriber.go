package demo

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// message is one publication as Home Assistant's MQTT client receives it.
type message struct {
	topic   string
	payload []byte
	at      time.Time // when it arrived at the subscriber
}

// subscriber stands where Home Assistant's MQTT integration does: a client of
// its own on the broker, subscribed to everything. What it receives is handed,
// in order, to the demo's loop on messages.
type subscriber struct {
	client   *paho.Client
	messages chan message
	stop     chan struct{}
}

// subscribe connects over TCP, like HA would, and subscribes to filter.
func subscribe(ctx context.Context, address, filter string) (*subscriber, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	s := &subscriber{messages: make(chan message, 256), stop: make(chan struct{})}
	s.client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			m := message{topic: pr.Packet.Topic, payload: pr.Packet.Payload, at: time.Now()}
			select {
			case s.messages <- m:
			case <-s.stop: // the demo is ending; nobody reads any more
			}
			return true, nil
		}},
	})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.client.Connect(cctx, &paho.Connect{ClientID: "demo-home-assistant", CleanStart: true, KeepAlive: 30}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("subscriber: connect: %w", err)
	}
	if _, err := s.client.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		s.close()
		return nil, fmt.Errorf("subscriber: subscribe to %s: %w", filter, err)
	}
	return s, nil
}

// close disconnects; the client's goroutines have ended when it returns.
func (s *subscriber) close() {
	close(s.stop)
	_ = s.client.Disconnect(&paho.Disconnect{ReasonCode: 0})
}

package proof

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Message is one publication as Home Assistant would have seen it.
type Message struct {
	Topic   string
	Payload string
	At      time.Time // arrival at the subscriber
}

// Subscriber is a plain MQTT v5 client subscribed to every topic of the broker,
// recording what arrives with its arrival time.
type Subscriber struct {
	addr string
	id   string

	mu     sync.Mutex // guards what follows
	msgs   []Message
	client *paho.Client
	conn   net.Conn
	added  chan struct{}
}

// Subscribe connects to the broker at addr (host:port) and subscribes to "#".
func Subscribe(ctx context.Context, addr, clientID string) (*Subscriber, error) {
	s := &Subscriber{addr: addr, id: clientID, added: make(chan struct{}, 1)}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Subscriber) connect(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	client := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.record(Message{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload), At: time.Now()})
			return true, nil
		}},
	})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := client.Connect(cctx, &paho.Connect{ClientID: s.id, CleanStart: true, KeepAlive: 30}); err != nil {
		return errors.Join(fmt.Errorf("subscriber connect: %w", err), conn.Close())
	}
	if _, err := client.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}}); err != nil {
		return errors.Join(fmt.Errorf("subscriber subscribe: %w", err), client.Disconnect(&paho.Disconnect{}), conn.Close())
	}
	s.mu.Lock()
	s.client, s.conn = client, conn
	s.mu.Unlock()
	return nil
}

func (s *Subscriber) record(m Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	select {
	case s.added <- struct{}{}:
	default:
	}
}

// Reconnect drops the connection (after a broker restart it is dead anyway)
// and connects afresh; the message log is kept.
func (s *Subscriber) Reconnect(ctx context.Context) error {
	s.drop()
	return s.connect(ctx)
}

func (s *Subscriber) drop() {
	s.mu.Lock()
	client, conn := s.client, s.conn
	s.client, s.conn = nil, nil
	s.mu.Unlock()
	if client != nil {
		_ = client.Disconnect(&paho.Disconnect{})
		_ = conn.Close()
	}
}

// Close disconnects.
func (s *Subscriber) Close() { s.drop() }

// Mark is a position in the message log.
func (s *Subscriber) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Messages returns a copy of the log from mark on.
func (s *Subscriber) Messages(mark int) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs[min(mark, len(s.msgs)):]...)
}

// Wait returns the first message after mark on topic whose payload satisfies
// ok (nil: any), or ctx's error.
func (s *Subscriber) Wait(ctx context.Context, mark int, topic string, ok func(string) bool) (Message, error) {
	m, err := s.WaitFunc(ctx, mark, func(m Message) bool { return m.Topic == topic && (ok == nil || ok(m.Payload)) })
	if err != nil {
		return m, fmt.Errorf("no message on %s: %w", topic, err)
	}
	return m, nil
}

// WaitFunc returns the first message after mark that satisfies ok, or ctx's error.
func (s *Subscriber) WaitFunc(ctx context.Context, mark int, ok func(Message) bool) (Message, error) {
	for {
		s.mu.Lock()
		for _, m := range s.msgs[min(mark, len(s.msgs)):] {
			if ok(m) {
				s.mu.Unlock()
				return m, nil
			}
		}
		s.mu.Unlock()
		select {
		case <-s.added:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

// Trim forgets every message so far (a long soak would otherwise keep them
// all); marks taken earlier become invalid.
func (s *Subscriber) Trim() {
	s.mu.Lock()
	s.msgs = nil
	s.mu.Unlock()
}

// Equals is a Wait predicate for an exact payload.
func Equals(want string) func(string) bool { return func(p string) bool { return p == want } }

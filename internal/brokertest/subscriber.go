package brokertest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Message is one publication as a subscriber saw it.
type Message struct {
	Topic   string
	Payload string
	Retain  bool
	At      time.Time
}

// Subscriber records every message on a filter, as Home Assistant would see it.
type Subscriber struct {
	t      testing.TB
	client *paho.Client
	mu     sync.Mutex
	msgs   []Message
	added  chan struct{}
}

// Subscribe connects a plain MQTT v5 client to the broker and subscribes to
// filter ("#" for everything). It disconnects when the test ends.
func Subscribe(t testing.TB, b *Broker, filter string) *Subscriber {
	t.Helper()
	s := &Subscriber{t: t, added: make(chan struct{}, 1)}
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	s.client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.mu.Lock()
			s.msgs = append(s.msgs, Message{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload), Retain: pr.Packet.Retain, At: time.Now()})
			s.mu.Unlock()
			select {
			case s.added <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.client.Connect(ctx, &paho.Connect{ClientID: "test-ha-" + strings.ReplaceAll(t.Name(), "/", "-"), CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1, RetainAsPublished: true}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.client.Disconnect(&paho.Disconnect{}) })
	return s
}

// Publish sends a message as another client would (HA's birth, say).
func (s *Subscriber) Publish(topic, payload string, retain bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.client.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain}); err != nil {
		s.t.Fatal(err)
	}
}

// Messages returns what arrived so far.
func (s *Subscriber) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Mark is a position in the message log; Wait can look only after it.
func (s *Subscriber) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Wait returns the first message after mark on topic that satisfies ok, failing
// the test after timeout (a generous bound that only detects a hang).
func (s *Subscriber) Wait(mark int, topic string, ok func(payload string) bool, timeout time.Duration) Message {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, m := range s.msgs[min(mark, len(s.msgs)):] {
			if m.Topic == topic && (ok == nil || ok(m.Payload)) {
				s.mu.Unlock()
				return m
			}
		}
		s.mu.Unlock()
		select {
		case <-s.added:
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			s.t.Fatalf("no message on %s within %s", topic, timeout)
		}
	}
}

// Last returns the latest message on topic and whether there was one.
func (s *Subscriber) Last(topic string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if s.msgs[i].Topic == topic {
			return s.msgs[i], true
		}
	}
	return Message{}, false
}

// Equals is a Wait predicate for an exact payload.
func Equals(want string) func(string) bool { return func(p string) bool { return p == want } }

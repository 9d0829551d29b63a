package hass

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// connectTimeout bounds the subscriber's connect and subscribe.
const connectTimeout = 5 * time.Second

// Subscriber stands where Home Assistant's MQTT integration does: a plain MQTT
// v5 client of its own on the broker, subscribed to a filter, that logs every
// message with its arrival time. Positions in the log (marks) count every
// message since Dial, so they stay valid after Forget.
type Subscriber struct {
	addr, id, filter string
	login            *Login

	mu      sync.Mutex // guards what follows
	client  *paho.Client
	conn    net.Conn
	msgs    []Message // from message number base on
	base    int
	arrived chan struct{} // closed at the next message, then replaced
}

// Login is a user name and password for a broker that wants one, as HA's
// MQTT integration is configured with.
type Login struct{ User, Password string }

// Dial connects to the broker at addr (host:port) as clientID, with login if
// given, and subscribes to filter ("#" for everything). Close disconnects.
func Dial(ctx context.Context, addr, clientID, filter string, login ...Login) (*Subscriber, error) {
	s := &Subscriber{addr: addr, id: clientID, filter: filter, arrived: make(chan struct{})}
	if len(login) > 0 {
		s.login = &login[0]
	}
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
			s.record(Message{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload), Retain: pr.Packet.Retain, At: time.Now()})
			return true, nil
		}},
	})
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c := &paho.Connect{ClientID: s.id, CleanStart: true, KeepAlive: 30}
	if s.login != nil {
		c.UsernameFlag, c.Username = true, s.login.User
		c.PasswordFlag, c.Password = true, []byte(s.login.Password)
	}
	if _, err := client.Connect(cctx, c); err != nil {
		return errors.Join(fmt.Errorf("subscriber: connect: %w", err), conn.Close())
	}
	sub := &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: s.filter, QoS: 1, RetainAsPublished: true}}}
	if _, err := client.Subscribe(cctx, sub); err != nil {
		return errors.Join(fmt.Errorf("subscriber: subscribe to %s: %w", s.filter, err), client.Disconnect(&paho.Disconnect{}), conn.Close())
	}
	s.mu.Lock()
	s.client, s.conn = client, conn
	s.mu.Unlock()
	return nil
}

func (s *Subscriber) record(m Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
	s.mu.Unlock()
}

// Reconnect drops the connection (after a broker restart it is dead anyway)
// and connects afresh; the log is kept.
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

// Close disconnects; the client's goroutines have ended when it returns.
func (s *Subscriber) Close() { s.drop() }

// Publish sends a message as another client would (HA's birth, say), at QoS 1.
func (s *Subscriber) Publish(ctx context.Context, topic, payload string, retain bool) error {
	s.mu.Lock()
	client := s.client
	s.mu.Unlock()
	if client == nil {
		return errors.New("subscriber: not connected")
	}
	_, err := client.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain})
	return err
}

// Mark is the position after the last message so far.
func (s *Subscriber) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base + len(s.msgs)
}

// Messages returns the messages from mark on that are still kept.
func (s *Subscriber) Messages(mark int) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs[s.index(mark):]...)
}

// index is mark's place in msgs; the caller holds mu.
func (s *Subscriber) index(mark int) int { return min(max(mark-s.base, 0), len(s.msgs)) }

// Forget drops the messages before mark: a long run would otherwise keep
// them all. Marks stay valid.
func (s *Subscriber) Forget(mark int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.index(mark)
	s.msgs = append([]Message(nil), s.msgs[i:]...)
	s.base += i
}

// Last returns the latest message kept on topic, and whether there is one.
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

// After returns a channel that is closed once a message after mark has arrived
// (at once if one has).
func (s *Subscriber) After(mark int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base+len(s.msgs) > mark {
		done := make(chan struct{})
		close(done)
		return done
	}
	return s.arrived
}

// Await returns the first message from mark on that satisfies match, or
// ctx's error.
func (s *Subscriber) Await(ctx context.Context, mark int, match func(Message) bool) (Message, error) {
	for {
		s.mu.Lock()
		for _, m := range s.msgs[s.index(mark):] {
			if match(m) {
				s.mu.Unlock()
				return m, nil
			}
		}
		next, arrived := s.base+len(s.msgs), s.arrived
		s.mu.Unlock()
		select {
		case <-arrived:
			mark = max(mark, next)
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

// On matches a message on topic whose payload satisfies ok (nil: any).
func On(topic string, ok func(payload string) bool) func(Message) bool {
	return func(m Message) bool { return m.Topic == topic && (ok == nil || ok(m.Payload)) }
}

package brokertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/hass"
)

// Message is one publication as the subscriber saw it.
type Message = hass.Message

// Subscriber is Home Assistant's subscriber (hass.Subscriber) in a test: Wait
// fails the test instead of returning an error.
type Subscriber struct {
	*hass.Subscriber
	t testing.TB
}

// Subscribe connects a subscriber to the broker's plain listener and
// subscribes to filter ("#" for everything). It disconnects when the test ends.
func Subscribe(t testing.TB, b *Broker, filter string) *Subscriber {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := hass.Dial(ctx, b.Addr(), "test-ha-"+strings.ReplaceAll(t.Name(), "/", "-"), filter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return For(t, s)
}

// For is s in the test t (the caller closes s).
func For(t testing.TB, s *hass.Subscriber) *Subscriber { return &Subscriber{Subscriber: s, t: t} }

// Wait returns the first message from mark on, on topic, whose payload
// satisfies ok (nil: any), failing the test after timeout (a generous bound
// that only detects a hang).
func (s *Subscriber) Wait(mark int, topic string, ok func(payload string) bool, timeout time.Duration) Message {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := s.Await(ctx, mark, hass.On(topic, ok))
	if err != nil {
		s.t.Fatalf("no message on %s within %s", topic, timeout)
	}
	return m
}

// Publish sends a message as another client would (HA's birth, say).
func (s *Subscriber) Publish(topic, payload string, retain bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Subscriber.Publish(ctx, topic, payload, retain); err != nil {
		s.t.Fatal(err)
	}
}

// Equals is a Wait predicate for an exact payload.
func Equals(want string) func(string) bool { return func(p string) bool { return p == want } }

package hass_test

import (
	"context"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/hass"
)

// TestSubscriber: messages arrive in order with their retain flag, marks stay
// valid after Forget, After and Await wake on the next message, and a
// Reconnect after a broker restart keeps the log.
func TestSubscriber(t *testing.T) {
	b := brokertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := hass.Dial(ctx, b.Addr(), "subscriber-test", "#")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other := brokertest.Subscribe(t, b, "none/#") // a second client to publish from

	other.Publish("a", "1", true)
	first, err := s.Await(ctx, 0, hass.On("a", nil))
	if err != nil || first.Payload != "1" || !first.Retain {
		t.Fatalf("first message %+v, %v", first, err)
	}
	mark := s.Mark()
	after := s.After(mark)
	select {
	case <-after:
		t.Fatal("After fired with nothing new")
	default:
	}
	other.Publish("b", "2", false)
	select {
	case <-after:
	case <-ctx.Done():
		t.Fatal("After did not fire")
	}
	s.Forget(mark)
	if got := s.Messages(0); len(got) != 1 || got[0].Topic != "b" || got[0].Retain {
		t.Fatalf("after Forget: %+v", got)
	}
	if s.Mark() != mark+1 {
		t.Fatalf("mark %d after Forget, want %d", s.Mark(), mark+1)
	}
	if _, err := s.Await(ctx, mark, hass.On("b", func(p string) bool { return p == "2" })); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 100*time.Millisecond)
	defer stop()
	if _, err := s.Await(short, 0, hass.On("a", nil)); err == nil {
		t.Fatal("a forgotten message was found")
	}

	b.Restart()
	if err := s.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	mark = s.Mark()
	if err := s.Publish(ctx, "c", "3", false); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Await(ctx, mark, hass.On("c", nil)); err != nil || m.Payload != "3" {
		t.Fatalf("after the restart: %+v, %v", m, err)
	}
	if last, ok := s.Last("b"); !ok || last.Payload != "2" {
		t.Errorf("Last(b) = %+v, %v", last, ok)
	}
}

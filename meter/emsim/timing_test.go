package emsim

import (
	"errors"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

// With WireTiming the reply comes no sooner than the request and the reply
// take on the line at the meter's speed. Only a lower bound is asserted.
func TestWireTiming(t *testing.T) {
	_, path := startSim(t, Options{Static: true, WireTiming: true, Baud: 9600, Latency: 5 * time.Millisecond})
	c := dial(t, path, 2*time.Second)
	mustRead(t, c, 0, 1)
	// 8 request bytes + 5+100 reply bytes at 10 bits a byte, plus the latency.
	want := time.Duration(10*(8+105))*time.Second/9600 + 5*time.Millisecond
	start := time.Now()
	mustRead(t, c, 0, 50)
	if d := time.Since(start); d < want {
		t.Fatalf("50-register read at 9600 took %v, want at least %v", d, want)
	} else if d > 5*time.Second {
		t.Fatalf("50-register read hangs: %v", d)
	}
}

// A query sooner than IgnoreWithin after the previous reply gets no answer.
func TestIgnoreWindow(t *testing.T) {
	s, path := startSim(t, Options{Static: true, IgnoreWithin: 40 * time.Millisecond})
	c := dial(t, path, 150*time.Millisecond)
	mustRead(t, c, 0, 2)
	if _, err := c.ReadRegisters(0, 2, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrRequestTimedOut) {
		t.Fatalf("query right after a reply: %v, want a timeout", err)
	}
	time.Sleep(50 * time.Millisecond)
	mustRead(t, c, 0, 2)
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[1].Outcome != OutcomeIgnored || reqs[1].Answered() || reqs[2].Outcome != OutcomeReply {
		t.Fatalf("log %+v", reqs)
	}
}

func TestRequestLog(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	c := dial(t, path, testTimeout)
	image(t, c)
	_, _ = c.ReadRegisters(0x0200, 1, modbus.INPUT_REGISTER)
	_ = c.WriteRegister(0x1103, 1)
	reqs := s.Requests()
	want := []Request{
		{Slave: 1, Function: 3, Addr: 0x0000, Count: 50, Outcome: OutcomeReply},
		{Slave: 1, Function: 3, Addr: 0x0032, Count: 32, Outcome: OutcomeReply},
		{Slave: 1, Function: 4, Addr: 0x0200, Count: 1, Outcome: OutcomeException, Exception: 2},
		{Slave: 1, Function: 6, Addr: 0x1103, Count: 1, Value: 1, Outcome: OutcomeReply},
	}
	if len(reqs) != len(want) {
		t.Fatalf("%d requests logged, want %d: %+v", len(reqs), len(want), reqs)
	}
	for i, r := range reqs {
		if r.Time.IsZero() || (i > 0 && r.Time.Before(reqs[i-1].Time)) {
			t.Errorf("request %d time %v", i, r.Time)
		}
		r.Time = time.Time{}
		if r != want[i] || !r.Answered() {
			t.Errorf("request %d: %+v, want %+v", i, r, want[i])
		}
	}
	s.ResetRequests()
	if n := len(s.Requests()); n != 0 {
		t.Fatalf("%d requests after reset", n)
	}
}

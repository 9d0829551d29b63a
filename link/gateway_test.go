package link

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

func TestParseGateway(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Gateway // zero: an error
	}{
		{"rtuovertcp://192.0.2.7:4196", Gateway{RTUOverTCP, "192.0.2.7:4196"}},
		{"tcp://gateway.lan", Gateway{ModbusTCP, "gateway.lan:502"}},
		{"TCP://[2001:db8::7]:1502", Gateway{ModbusTCP, "[2001:db8::7]:1502"}},
		{"tcp://gateway.lan/", Gateway{ModbusTCP, "gateway.lan:502"}},
		{"udp://gateway.lan:502", Gateway{}},
		{"tcp://:502", Gateway{}},
		{"tcp://gateway.lan:0", Gateway{}},
		{"tcp://gateway.lan:70000", Gateway{}},
		{"tcp://u:p@gateway.lan", Gateway{}},
		{"tcp://gateway.lan/modbus", Gateway{}},
		{"tcp://gateway.lan?x=1", Gateway{}},
		{"/dev/ttyUSB0", Gateway{}},
	} {
		got, err := ParseGateway(tt.in)
		if (err != nil) != (tt.want == Gateway{}) || got != tt.want {
			t.Errorf("ParseGateway(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// gatewayPlug serves the bus behind a gateway on loopback in framing.
func gatewayPlug(t *testing.T, framing emsim.Framing, gw **emsim.Gateway) func(*emsim.Bus) string {
	return func(b *emsim.Bus) string {
		g, err := emsim.ListenTCP("127.0.0.1:0", framing, b)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		*gw = g
		return g.URL()
	}
}

var framings = []emsim.Framing{emsim.RTUOverTCP, emsim.ModbusTCP}

// Meters behind a gateway read as on a local adapter, in either framing.
func TestGatewayReads(t *testing.T) {
	for _, f := range framings {
		t.Run(f.String(), func(t *testing.T) {
			var gw *emsim.Gateway
			r := newBusRig(t, []uint8{1, 2}, gatewayPlug(t, f, &gw), Config{})
			st := r.waitFor("both meters", func(s Status) bool { return s.State == Online && answering(s, 1) && answering(s, 2) })
			if st.Device != gw.URL() {
				t.Errorf("device %q, want %q", st.Device, gw.URL())
			}
			for _, u := range []uint8{1, 2} {
				if err := r.read(u); err != nil {
					t.Errorf("unit %d: %v", u, err)
				}
			}
		})
	}
}

// What happens to the gateway's connection is the link's cause, in a user's
// words; the link resumes at once when the gateway answers again. The
// backoff is longer than the hang guard, so only the redial cap can bring
// the link back within it.
func TestGatewayOutages(t *testing.T) {
	slow := ReconnectBackoff{Min: time.Minute, Max: time.Minute, Factor: 1}
	for _, f := range framings {
		t.Run(f.String(), func(t *testing.T) {
			var gw *emsim.Gateway
			r := newBusRig(t, []uint8{1}, gatewayPlug(t, f, &gw), Config{Backoff: slow})
			online := func(s Status) bool { return s.State == Online }
			r.waitFor("online", online)

			gw.ResetConnections()
			_ = r.read(1)
			r.waitFor("connection reset", func(s Status) bool { return s.State == Reconnecting && s.Cause == CauseGatewayReset })
			r.waitFor("online after the reset", online)

			gw.DropConnections()
			_ = r.read(1)
			r.waitFor("connection closed", func(s Status) bool { return s.State == Reconnecting && s.Cause == CauseGatewayClosed })
			r.waitFor("online after the close", online)

			// A reboot: nothing listens for a while, then the gateway is back.
			if err := gw.Stop(); err != nil {
				t.Fatal(err)
			}
			_ = r.read(1)
			r.waitFor("connection refused", func(s Status) bool { return s.Cause == CauseGatewayRefused })
			if err := gw.Restart(); err != nil {
				t.Fatal(err)
			}
			r.waitFor("online after the reboot", online)
			if err := r.read(1); err != nil {
				t.Fatalf("after the reboot: %v", err)
			}
		})
	}
}

// A gateway that accepts and never answers, and one that closes in the
// middle of a reply: neither is ever data, and both end in a reconnect.
func TestGatewayMisbehaves(t *testing.T) {
	for _, f := range framings {
		t.Run(f.String(), func(t *testing.T) {
			var gw *emsim.Gateway
			r := newBusRig(t, []uint8{1}, gatewayPlug(t, f, &gw), Config{})
			online := func(s Status) bool { return s.State == Online }
			r.waitFor("online", online)

			gw.Silent(true)
			for range 3 {
				if err := r.read(1); err == nil {
					t.Fatal("a snapshot through a silent gateway succeeded")
				}
			}
			r.waitFor("meter not answering", func(s Status) bool { return s.State == Reconnecting && s.Cause == CauseMeterSilent })
			gw.Silent(false)
			r.waitFor("online once it answers", online)

			gw.CloseMidReplyNext(1)
			err := r.read(1)
			if err == nil {
				t.Fatal("a reply cut in the middle was taken")
			}
			r.waitFor("the cut connection", func(s Status) bool { return s.State == Reconnecting && s.Cause == CauseGatewayClosed })
			r.waitFor("online after the cut", online)
			if err := r.read(1); err != nil {
				t.Fatalf("after the cut: %v", err)
			}
		})
	}
}

// Behind a Modbus TCP gateway a silent meter is the gateway's exception 0Bh:
// that meter does not answer, the other one does, the line stays up.
func TestGatewayTargetFailure(t *testing.T) {
	var gw *emsim.Gateway
	r := newBusRig(t, []uint8{1, 2}, gatewayPlug(t, emsim.ModbusTCP, &gw), Config{})
	r.waitFor("both meters", func(s Status) bool { return s.State == Online && answering(s, 1) && answering(s, 2) })
	gw.SetTargetTimeout(50 * time.Millisecond)
	r.sims[2].Mute(true)
	for range 3 {
		if err := r.read(2); !errors.Is(err, modbus.ErrGWTargetFailedToRespond) {
			t.Fatalf("muted meter behind the gateway: %v, want exception 0Bh", err)
		}
	}
	st := r.waitFor("unit 2 silent", func(s Status) bool { return !answering(s, 2) })
	if st.State != Online || !answering(st, 1) {
		t.Fatalf("%+v", st)
	}
	if err := r.read(1); err != nil {
		t.Errorf("unit 1: %v", err)
	}
}

// A late reply behind a Modbus TCP gateway carries an old transaction id and
// is dropped: the next request reads its own reply.
func TestModbusTCPLateReplyIsDropped(t *testing.T) {
	sim := emsim.New(emsim.Options{Static: true, FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB})
	bus, err := emsim.NewBus(sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	gw, err := emsim.ListenTCP("127.0.0.1:0", emsim.ModbusTCP, bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	gw.SetTargetTimeout(time.Second)
	g, _ := ParseGateway(gw.URL())
	p, err := dialGateway(context.Background(), g, Serial{Timeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx := context.Background()
	want, err := p.ReadRegisters(ctx, 1, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	sim.LateNext(1, 300*time.Millisecond)
	if _, err := p.ReadRegisters(ctx, 1, 0, 10); !errors.Is(err, modbus.ErrRequestTimedOut) {
		t.Fatalf("late reply: %v, want a timeout", err)
	}
	time.Sleep(300 * time.Millisecond) // the late reply arrives now, for the old transaction
	got, err := p.ReadRegisters(ctx, 1, 0, 10)
	if err != nil || len(got) != len(want) {
		t.Fatalf("the request after a late reply: %v, %v", got, err)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("the request after a late reply read %v, want %v", got, want)
		}
	}
}

// Nothing listening at start is "connection refused", not a meter problem.
func TestGatewayRefusedAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	states := make(chan Status, 64)
	l := New(Config{Device: "tcp://" + addr, Serial: Serial{Timeout: 300 * time.Millisecond},
		Backoff: ReconnectBackoff{Min: time.Minute, Max: time.Minute, Factor: 1}, OnChange: func(s Status) { states <- s }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.After(hangGuard)
	for {
		select {
		case s := <-states:
			if s.Cause == CauseGatewayRefused {
				if s.State != Reconnecting || s.Device != "tcp://"+addr {
					t.Errorf("%+v", s)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no connection refused; now %+v", l.Status())
		}
	}
}

// The errors a dial and a connection really give are named as a user reads them.
func TestClassifyGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := ln.Addr().String()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	refusing := closed.Addr().String()
	_ = closed.Close()
	defer ln.Close()
	dial := func(addr string, timeout time.Duration) error {
		c, err := (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	for _, tt := range []struct {
		name string
		err  error
		want Cause
	}{
		{"nothing listens", dial(refusing, time.Second), CauseGatewayRefused},
		{"no answer in time", dial(open, time.Nanosecond), CauseGatewayTimeout},
		{"closed by the gateway", gatewayError(io.EOF), CauseGatewayClosed},
		{"not Modbus TCP", errGatewayOutOfStep, CauseGatewayClosed},
	} {
		if tt.err == nil {
			t.Fatalf("%s: the dial succeeded", tt.name)
		}
		if got := classifyGateway(tt.err); got != tt.want {
			t.Errorf("%s (%v): %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

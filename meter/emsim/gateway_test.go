package emsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

var framings = []Framing{RTUOverTCP, ModbusTCP}

// startGateway serves a bus of Static meters at these addresses through a
// gateway on a loopback port, closed when the test ends.
func startGateway(t *testing.T, framing Framing, opts Options, addrs ...byte) (*Gateway, []*Sim) {
	t.Helper()
	b, sims := busOf(t, opts, addrs...)
	g, err := ListenTCP("127.0.0.1:0", framing, b)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("close gateway: %v", err)
		}
	})
	return g, sims
}

// dialGateway opens a simonvetter client on the gateway's URL, closed when
// the test ends.
func dialGateway(t *testing.T, g *Gateway, timeout time.Duration) *modbus.ModbusClient {
	t.Helper()
	c, err := modbus.NewClient(&modbus.ClientConfiguration{URL: g.URL(), Timeout: timeout, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatalf("open %s: %v", g.URL(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawTCP is a connection to the gateway written to by hand.
type rawTCP struct {
	t *testing.T
	net.Conn
}

func dialRaw(t *testing.T, g *Gateway) *rawTCP {
	t.Helper()
	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawTCP{t: t, Conn: c}
}

func (r *rawTCP) send(b []byte) {
	r.t.Helper()
	if _, err := r.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// expect reads exactly len(want) bytes and compares.
func (r *rawTCP) expect(want []byte) {
	r.t.Helper()
	got := make([]byte, len(want))
	_ = r.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
		r.t.Fatalf("reply % X (%v), want % X", got, err, want)
	}
}

// rest reads until the connection ends or d passes.
func (r *rawTCP) rest(d time.Duration) ([]byte, error) {
	_ = r.SetReadDeadline(time.Now().Add(d))
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}

// mbap is an MBAP ADU by hand: transaction id, protocol 0, length, unit, PDU.
func mbap(txid uint16, unit byte, pdu ...byte) []byte {
	n := len(pdu) + 1
	return append([]byte{byte(txid >> 8), byte(txid), 0, 0, byte(n >> 8), byte(n), unit}, pdu...)
}

// The gateway's URL names its framing; a client reads every meter on the
// bus through it, and each meter logs what it heard.
func TestGatewayServes(t *testing.T) {
	for _, f := range framings {
		t.Run(f.String(), func(t *testing.T) {
			g, sims := startGateway(t, f, Options{}, 1, 2, 5)
			if want := f.String() + "://127.0.0.1:"; !strings.HasPrefix(g.URL(), want) || !strings.HasSuffix(g.URL(), g.Addr()) {
				t.Fatalf("URL %q, Addr %q", g.URL(), g.Addr())
			}
			c := dialGateway(t, g, time.Second)
			for _, unit := range []byte{1, 2, 5, 2} {
				if got, err := serialAt(c, unit); err != nil || got != fmt.Sprintf("BUS%d", unit) {
					t.Fatalf("unit %d: %q, %v", unit, got, err)
				}
			}
			for i, s := range sims {
				var replies, others int
				for _, r := range s.Requests() {
					switch r.Outcome {
					case OutcomeReply:
						replies++
					case OutcomeOtherSlave:
						others++
					}
				}
				if want := []int{1, 2, 1}[i]; replies != want || others != 4-want {
					t.Errorf("meter %d: %d replies, %d for others; want %d, %d", s.opts.Address, replies, others, want, 4-want)
				}
			}
			if n := g.Connections(); n != 1 {
				t.Fatalf("%d connections, want 1", n)
			}
		})
	}
}

// On the wire: RTU over TCP carries the RTU frame with its CRC; Modbus TCP
// echoes the transaction id, protocol 0, the length of unit id and PDU, the
// unit id, and no CRC.
func TestGatewayFraming(t *testing.T) {
	tests := []struct {
		name    string
		framing Framing
		send    []byte
		want    []byte
	}{
		{"rtu", RTUOverTCP, frame(0x02, 0x03, 0x00, 0x00, 0x00, 0x01), frame(0x02, 0x03, 0x02, 0x08, 0xFC)},
		{"rtu exception", RTUOverTCP, frame(0x02, 0x03, 0x60, 0x00, 0x00, 0x01), frame(0x02, 0x83, 0x02)},
		{"mbap", ModbusTCP, mbap(0xBEEF, 0x02, 0x03, 0x00, 0x00, 0x00, 0x01), mbap(0xBEEF, 0x02, 0x03, 0x02, 0x08, 0xFC)},
		{"mbap exception", ModbusTCP, mbap(7, 0x02, 0x03, 0x60, 0x00, 0x00, 0x01), mbap(7, 0x02, 0x83, 0x02)},
		{"mbap write echo", ModbusTCP, mbap(8, 0x02, 0x06, 0x11, 0x03, 0x00, 0x01), mbap(8, 0x02, 0x06, 0x11, 0x03, 0x00, 0x01)},
		{"mbap silent meter: 0Bh", ModbusTCP, mbap(9, 0x03, 0x03, 0x00, 0x00, 0x00, 0x01), mbap(9, 0x03, 0x83, 0x0B)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := startGateway(t, tt.framing, Options{}, 1, 2)
			g.SetTargetTimeout(50 * time.Millisecond)
			r := dialRaw(t, g)
			r.send(tt.send)
			r.expect(tt.want)
		})
	}
}

// Requests that are no Modbus: an ADU of another protocol is skipped and the
// connection serves on; a length no ADU can have ends the connection.
func TestGatewayBadMBAP(t *testing.T) {
	g, sims := startGateway(t, ModbusTCP, Options{}, 1)
	r := dialRaw(t, g)
	other := mbap(1, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01)
	other[3] = 1 // protocol 1
	r.send(append(other, mbap(2, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01)...))
	r.expect(mbap(2, 0x01, 0x03, 0x02, 0x08, 0xFC))
	if n := len(sims[0].Requests()); n != 1 {
		t.Fatalf("meter heard %d requests, want 1", n)
	}
	r.send([]byte{0, 3, 0, 0, 0x01, 0x00, 0x01}) // length 256
	if got, err := r.rest(2 * time.Second); len(got) != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after a bad length: % X, %v; want the end of the stream", got, err)
	}
}

// A meter that stays silent: Modbus TCP answers 0Bh after the target
// timeout, or, told not to, nothing; RTU over TCP relays the silence.
func TestGatewaySilentMeter(t *testing.T) {
	tests := []struct {
		name      string
		framing   Framing
		noAnswer  bool
		wantErr   error
		minWait   time.Duration
		clientTTL time.Duration
	}{
		{"mbap 0Bh", ModbusTCP, false, modbus.ErrGWTargetFailedToRespond, DefaultTargetTimeout, time.Second},
		{"mbap without 0Bh", ModbusTCP, true, modbus.ErrRequestTimedOut, 0, 400 * time.Millisecond},
		{"rtu over tcp", RTUOverTCP, false, modbus.ErrRequestTimedOut, 0, 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, sims := startGateway(t, tt.framing, Options{}, 1, 2)
			g.AnswerTargetFailure(!tt.noAnswer)
			c := dialGateway(t, g, tt.clientTTL)
			sims[1].Mute(true)
			start := time.Now()
			if _, err := serialAt(c, 2); !errors.Is(err, tt.wantErr) {
				t.Fatalf("muted meter: %v, want %v", err, tt.wantErr)
			}
			if d := time.Since(start); d < tt.minWait {
				t.Fatalf("answer after %v, before the target timeout %v", d, tt.minWait)
			}
			if got := lastOutcome(sims[1]); got != OutcomeMuted {
				t.Fatalf("muted meter logged %v", got)
			}
			if got, err := serialAt(c, 1); err != nil || got != "BUS1" {
				t.Fatalf("the other meter: %q, %v", got, err)
			}
		})
	}
}

// A gateway that accepts and never answers: the client times out and the
// meters hear nothing; back to normal, it answers on the same connection.
func TestGatewaySilent(t *testing.T) {
	for _, f := range framings {
		t.Run(f.String(), func(t *testing.T) {
			g, sims := startGateway(t, f, Options{}, 1)
			c := dialGateway(t, g, 400*time.Millisecond)
			g.Silent(true)
			if _, err := serialAt(c, 1); !errors.Is(err, modbus.ErrRequestTimedOut) {
				t.Fatalf("silent gateway: %v, want a timeout", err)
			}
			if n := len(sims[0].Requests()); n != 0 {
				t.Fatalf("the meter heard %d requests through a silent gateway", n)
			}
			g.Silent(false)
			if got, err := serialAt(c, 1); err != nil || got != "BUS1" {
				t.Fatalf("after silence: %q, %v", got, err)
			}
		})
	}
}

// CloseMidReplyNext: the client gets the first half of a reply, then the end
// of the stream; the next connection is served whole.
func TestGatewayCloseMidReply(t *testing.T) {
	tests := []struct {
		framing Framing
		send    []byte
		whole   []byte
	}{
		{RTUOverTCP, frame(0x01, 0x03, 0x00, 0x00, 0x00, 0x01), frame(0x01, 0x03, 0x02, 0x08, 0xFC)},
		{ModbusTCP, mbap(3, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01), mbap(3, 0x01, 0x03, 0x02, 0x08, 0xFC)},
	}
	for _, tt := range tests {
		t.Run(tt.framing.String(), func(t *testing.T) {
			g, _ := startGateway(t, tt.framing, Options{}, 1)
			g.CloseMidReplyNext(1)
			r := dialRaw(t, g)
			r.send(tt.send)
			got, err := r.rest(2 * time.Second)
			if !errors.Is(err, io.EOF) || !bytes.Equal(got, tt.whole[:len(tt.whole)/2]) {
				t.Fatalf("cut reply % X (%v), want % X then the end", got, err, tt.whole[:len(tt.whole)/2])
			}
			if !waitFor(time.Second, func() bool { return g.Connections() == 0 }) {
				t.Fatalf("%d connections after the cut", g.Connections())
			}
			r = dialRaw(t, g)
			r.send(tt.send)
			r.expect(tt.whole)
		})
	}
}

// DropConnections ends every connection (the client reads the end of the
// stream), ResetConnections aborts them (connection reset); either way the
// gateway goes on listening.
func TestGatewayDropConnections(t *testing.T) {
	tests := []struct {
		name string
		drop func(*Gateway)
		want error
	}{
		{"drop", (*Gateway).DropConnections, io.EOF},
		{"reset", (*Gateway).ResetConnections, syscall.ECONNRESET},
	}
	for _, f := range framings {
		for _, tt := range tests {
			t.Run(f.String()+" "+tt.name, func(t *testing.T) {
				g, _ := startGateway(t, f, Options{}, 1)
				rs := []*rawTCP{dialRaw(t, g), dialRaw(t, g)}
				if !waitFor(time.Second, func() bool { return g.Connections() == 2 }) {
					t.Fatalf("%d connections, want 2", g.Connections())
				}
				tt.drop(g)
				for _, r := range rs {
					if got, err := r.rest(2 * time.Second); len(got) != 0 || !errors.Is(err, tt.want) {
						t.Fatalf("read after %s: % X, %v; want %v", tt.name, got, err, tt.want)
					}
				}
				if n := g.Connections(); n != 0 {
					t.Fatalf("%d connections after %s", n, tt.name)
				}
				if got, err := serialAt(dialGateway(t, g, time.Second), 1); err != nil || got != "BUS1" {
					t.Fatalf("a new connection: %q, %v", got, err)
				}
			})
		}
	}
}

// Stop is a gateway rebooting: connections end and a connect is refused
// until Restart, on the same port.
func TestGatewayStopRestart(t *testing.T) {
	for _, f := range framings {
		t.Run(f.String(), func(t *testing.T) {
			g, sims := startGateway(t, f, Options{}, 1, 2)
			addr := g.Addr()
			r := dialRaw(t, g)
			if err := g.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := g.Stop(); err != nil {
				t.Fatalf("second stop: %v", err)
			}
			if got, err := r.rest(2 * time.Second); len(got) != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("connection across Stop: % X, %v", got, err)
			}
			if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect while stopped: %v, want connection refused", err)
			}
			sims[1].SetSerial("NEW2") // the meters carry on meanwhile
			if err := g.Restart(); err != nil {
				t.Fatal(err)
			}
			if err := g.Restart(); err == nil {
				t.Fatal("restart while listening succeeded")
			}
			if g.Addr() != addr {
				t.Fatalf("back on %s, was %s", g.Addr(), addr)
			}
			c := dialGateway(t, g, time.Second)
			if got, err := serialAt(c, 2); err != nil || got != "NEW2" {
				t.Fatalf("after restart: %q, %v", got, err)
			}
		})
	}
}

// A bus is on a pty or behind a gateway, never both; the framing must be
// known; a closed gateway stays closed and hands the bus back.
func TestGatewayErrors(t *testing.T) {
	b, _ := busOf(t, Options{}, 1)
	if _, err := ListenTCP("127.0.0.1:0", Framing(9), b); err == nil {
		t.Fatal("unknown framing accepted")
	}
	if _, err := ListenTCP("256.0.0.1:0", ModbusTCP, b); err == nil {
		t.Fatal("impossible address accepted")
	}
	g, err := ListenTCP("127.0.0.1:0", ModbusTCP, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListenTCP("127.0.0.1:0", RTUOverTCP, b); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("second gateway on one bus: %v", err)
	}
	path := filepath.Join(t.TempDir(), "ttyUSB0")
	if err := b.Start(path); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("start a bus a gateway serves: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := g.Restart(); err == nil {
		t.Fatal("restart after close succeeded")
	}
	if _, err := net.Dial("tcp", g.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect after close: %v", err)
	}
	if err := b.Start(path); err != nil { // handed back
		t.Fatalf("start after the gateway closed: %v", err)
	}
	if _, err := ListenTCP("127.0.0.1:0", ModbusTCP, b); err == nil {
		t.Fatal("gateway on a bus plugged in on a pty")
	}
}

// A broadcast through Modbus TCP reaches every meter; nobody answers it.
func TestGatewayBroadcast(t *testing.T) {
	g, sims := startGateway(t, ModbusTCP, Options{}, 1, 2)
	r := dialRaw(t, g)
	r.send(mbap(1, 0x00, 0x06, 0x11, 0x03, 0x00, 0x01))
	if got, err := r.rest(DefaultTargetTimeout + 100*time.Millisecond); len(got) != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("broadcast answered: % X, %v", got, err)
	}
	for _, s := range sims {
		if got := outcomes(s); len(got) != 1 || got[0] != OutcomeBroadcast {
			t.Fatalf("meter %d logged %v", s.opts.Address, got)
		}
	}
	r.send(mbap(2, 0x02, 0x03, 0x11, 0x03, 0x00, 0x01))
	r.expect(mbap(2, 0x02, 0x03, 0x02, 0x00, 0x01))
}

// Close leaves no goroutine behind: with clients connected, a request
// waiting for a silent meter, and after a Stop and Restart.
func TestGatewayNoLeaks(t *testing.T) {
	for _, f := range framings {
		t.Run(f.String(), func(t *testing.T) {
			baseG := goroutines()
			b, sims := busOf(t, Options{}, 1, 2)
			g, err := ListenTCP("127.0.0.1:0", f, b)
			if err != nil {
				t.Fatal(err)
			}
			sims[1].Slow(time.Hour)
			c := dialGateway(t, g, 100*time.Millisecond)
			_, _ = serialAt(c, 1)
			_, _ = serialAt(c, 2)
			if err := g.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := g.Restart(); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				r := dialRaw(t, g)
				r.send(mbap(1, 0x02, 0x03, 0x00, 0x00, 0x00, 0x01))
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if !waitFor(2*time.Second, func() bool { return goroutines() <= baseG }) {
				t.Errorf("goroutines: %d after, %d before", goroutines(), baseG)
			}
		})
	}
}

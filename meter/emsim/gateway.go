package emsim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Framing is how a gateway carries Modbus on TCP.
type Framing uint8

const (
	// RTUOverTCP carries the RTU frames, CRC and all, on the TCP stream: a
	// transparent gateway, which relays whatever the line says to the
	// connection that spoke last.
	RTUOverTCP Framing = iota + 1
	// ModbusTCP carries MBAP-framed requests (no CRC): the gateway puts each
	// on the line as an RTU frame and answers with the meter's reply under
	// the request's transaction id, or with exception 0Bh when the meter
	// stays silent.
	ModbusTCP
)

// String is the URL scheme of the framing, as simonvetter/modbus spells it.
func (f Framing) String() string {
	switch f {
	case RTUOverTCP:
		return "rtuovertcp"
	case ModbusTCP:
		return "tcp"
	}
	return fmt.Sprintf("framing(%d)", uint8(f))
}

// DefaultTargetTimeout is how long a ModbusTCP gateway waits for the
// addressed meter before it answers exception 0Bh (gateway target device
// failed to respond). Gateways let it be set, typically between 100 ms and
// a few seconds; 300 ms leaves a meter at 9600 bit/s time for a 50-register
// read (about 120 ms on the wire) and a client with a 500 ms timeout, the
// meter's documented limit, time to see the exception.
const DefaultTargetTimeout = 300 * time.Millisecond

// exGatewayTarget is exception 0Bh: gateway target device failed to respond.
const exGatewayTarget byte = 0x0B

// Gateway is an RS485-to-Ethernet gateway in front of a bus: a TCP listener
// whose connections' requests all go onto the bus's one line, in the order
// they come (in ModbusTCP framing each waits for the previous one's answer or
// target timeout). Its faults (Silent, CloseMidReplyNext, DropConnections,
// ResetConnections, Stop and Restart) are the gateway's; the meters keep
// theirs and log what they hear. Its methods are safe for concurrent use.
type Gateway struct {
	bus     *Bus
	framing Framing
	addr    string // host:port listened on; Restart listens there again
	log     *slog.Logger
	line    *line

	requests chan gatewayRequest // the connections' readers → run
	replies  chan []byte         // the line's transmitter → run
	done     chan struct{}       // closed by Close
	exited   chan struct{}       // closed when run returns
	readers  sync.WaitGroup      // the accept loop's and the connections' goroutines

	stopMu sync.Mutex // serialises Stop, Restart and Close

	mu        sync.Mutex // guards what follows
	ln        net.Listener
	accepting chan struct{} // closed when the accept loop of ln returns
	conns     map[*gatewayConn]struct{}
	silent    bool
	midReply  int
	timeout   time.Duration
	noTarget  bool // no 0Bh: a silent meter gets no answer
	closed    bool
}

// gatewayRequest is a frame from a client, as the gateway puts it on the line.
type gatewayRequest struct {
	from  *gatewayConn
	txid  uint16 // ModbusTCP
	frame []byte // RTU, CRC included
	at    time.Time
}

// gatewayConn is one client's TCP connection.
type gatewayConn struct {
	net.Conn
	gone chan struct{} // closed with the connection
	once sync.Once
}

// shut closes the connection once; with reset, as an RST (linger 0), so that
// the client sees "connection reset by peer" rather than an end of stream.
func (c *gatewayConn) shut(reset bool) {
	c.once.Do(func() {
		if tc, ok := c.Conn.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
		_ = c.Conn.Close()
		close(c.gone)
	})
}

// ListenTCP serves bus through a gateway listening on addr (e.g.
// "127.0.0.1:0") in the given framing, until Close. The bus must not be
// plugged in on a pty, nor served by another gateway.
func ListenTCP(addr string, framing Framing, bus *Bus) (*Gateway, error) {
	if framing != RTUOverTCP && framing != ModbusTCP {
		return nil, fmt.Errorf("emsim: listen: unknown %v", framing)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("emsim: listen: %w", err)
	}
	g := &Gateway{
		bus: bus, framing: framing, addr: ln.Addr().String(), log: bus.log,
		requests: make(chan gatewayRequest), replies: make(chan []byte, 1),
		done: make(chan struct{}), exited: make(chan struct{}),
		conns: map[*gatewayConn]struct{}{}, timeout: DefaultTargetTimeout,
	}
	if err := bus.attach(g); err != nil {
		return nil, errors.Join(fmt.Errorf("emsim: listen: %w", err), ln.Close())
	}
	g.line = newLine(bus.sims, g.fromLine)
	go g.run()
	g.serve(ln)
	g.log.Info("gateway listening", "url", g.URL())
	return g, nil
}

// Addr is the host:port the gateway listens on, also while stopped.
func (g *Gateway) Addr() string { return g.addr }

// URL is the gateway as a client names it: rtuovertcp://host:port or tcp://host:port.
func (g *Gateway) URL() string { return g.framing.String() + "://" + g.addr }

// Connections is the number of client connections open now.
func (g *Gateway) Connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Silent makes the gateway accept connections and read requests but neither
// put them on the line nor answer: a hung gateway. Off, it serves again.
func (g *Gateway) Silent(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.silent = on
}

// CloseMidReplyNext makes the next n replies to clients stop halfway: the
// gateway sends the first half of the reply and closes that connection.
func (g *Gateway) CloseMidReplyNext(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.midReply = max(n, 0)
}

// SetTargetTimeout sets how long a ModbusTCP gateway waits for the addressed
// meter's reply (0 means DefaultTargetTimeout); a reply that comes later is
// dropped. RTU over TCP relays whatever comes, whenever it comes.
func (g *Gateway) SetTargetTimeout(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d <= 0 {
		d = DefaultTargetTimeout
	}
	g.timeout = d
}

// AnswerTargetFailure says whether a ModbusTCP gateway answers exception 0Bh
// when the addressed meter stays silent past the target timeout (the
// default); off, the client gets no answer and its own timeout expires.
func (g *Gateway) AnswerTargetFailure(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noTarget = !on
}

// DropConnections closes every client connection, as a gateway that ends
// idle or surplus connections does: the client reads the end of the stream.
// The gateway goes on listening.
func (g *Gateway) DropConnections() { g.shutAll(false) }

// ResetConnections aborts every client connection with an RST: the client
// sees "connection reset by peer". The gateway goes on listening.
func (g *Gateway) ResetConnections() { g.shutAll(true) }

func (g *Gateway) shutAll(reset bool) {
	g.mu.Lock()
	conns := make([]*gatewayConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	clear(g.conns)
	g.mu.Unlock()
	for _, c := range conns {
		c.shut(reset)
	}
}

// Stop is the gateway going away, as when it reboots: it stops listening
// (a client's connect is refused) and closes every connection. The meters
// stay on the line. Stopping a stopped gateway does nothing.
func (g *Gateway) Stop() error {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	if err := g.stop(); err != nil {
		return fmt.Errorf("emsim: stop gateway: %w", err)
	}
	return nil
}

// stop closes the listener and the connections and waits for their
// goroutines; stopMu is held.
func (g *Gateway) stop() error {
	g.mu.Lock()
	ln, accepting := g.ln, g.accepting
	g.ln = nil
	g.mu.Unlock()
	if ln == nil {
		return nil
	}
	err := ln.Close()
	<-accepting
	g.shutAll(false)
	g.readers.Wait()
	g.log.Info("gateway stopped", "url", g.URL())
	return err
}

// Restart listens again on the same address after Stop.
func (g *Gateway) Restart() error {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	g.mu.Lock()
	closed, listening := g.closed, g.ln != nil
	g.mu.Unlock()
	switch {
	case closed:
		return errors.New("emsim: restart gateway: closed")
	case listening:
		return errors.New("emsim: restart gateway: already listening")
	}
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return fmt.Errorf("emsim: restart gateway: %w", err)
	}
	g.serve(ln)
	g.log.Info("gateway restarted", "url", g.URL())
	return nil
}

// Close stops the gateway for good and hands the bus back: every goroutine
// of the gateway has returned when Close returns.
func (g *Gateway) Close() error {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	err := g.stop()
	close(g.done)
	<-g.exited
	g.line.end()
	g.bus.detach()
	if err != nil {
		return fmt.Errorf("emsim: close gateway: %w", err)
	}
	return nil
}

// serve accepts connections on ln until it is closed; stopMu is held.
func (g *Gateway) serve(ln net.Listener) {
	accepting := make(chan struct{})
	g.mu.Lock()
	g.ln, g.accepting = ln, accepting
	g.mu.Unlock()
	go func() {
		defer close(accepting)
		for {
			nc, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				g.log.Warn("gateway accept failed", "err", err)
				time.Sleep(ioRetry)
				continue
			}
			c := &gatewayConn{Conn: nc, gone: make(chan struct{})}
			g.mu.Lock()
			g.conns[c] = struct{}{}
			g.readers.Add(1)
			g.mu.Unlock()
			go g.read(c)
		}
	}()
}

// read takes requests off one connection and hands them to run, until the
// connection ends.
func (g *Gateway) read(c *gatewayConn) {
	defer g.readers.Done()
	defer g.drop(c, false)
	forward := func(txid uint16, frame []byte, at time.Time) {
		select {
		case g.requests <- gatewayRequest{from: c, txid: txid, frame: frame, at: at}:
		case <-c.gone:
		case <-g.done:
		}
	}
	if g.framing == RTUOverTCP {
		readFrames(c, c.gone, g.log, func(error) bool { return true }, func(frame []byte, at time.Time) {
			forward(0, frame, at)
		})
		return
	}
	var buf []byte
	chunk := make([]byte, mbapMaxADU)
	for {
		n, err := c.Read(chunk)
		at := time.Now()
		buf = append(buf, chunk[:n]...)
		for {
			adu, used, perr := nextMBAP(buf)
			if errors.Is(perr, errMBAPLength) {
				g.log.Warn("gateway dropped a connection: MBAP length out of range", "client", c.RemoteAddr())
				return
			}
			if used == 0 {
				break
			}
			buf = buf[used:]
			if perr != nil {
				g.log.Debug("gateway skipped an ADU", "err", perr)
				continue
			}
			forward(adu.txid, appendCRC(append([]byte{adu.unit}, adu.pdu...)), at)
		}
		buf = append([]byte(nil), buf...) // keep what is left, not what was read
		if err != nil {
			return
		}
	}
}

// drop closes a connection and forgets it.
func (g *Gateway) drop(c *gatewayConn, reset bool) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	c.shut(reset)
}

// fromLine is how the line's transmitter hands a meter's reply to run.
func (g *Gateway) fromLine(reply []byte) {
	select {
	case g.replies <- reply:
	case <-g.done:
	}
}

// run is the gateway's side of the line: the one goroutine that puts
// requests on it and answers clients.
func (g *Gateway) run() {
	defer close(g.exited)
	var last *gatewayConn // RTU over TCP: the connection that spoke last
	for {
		select {
		case <-g.done:
			return
		case req := <-g.requests:
			if g.isSilent() {
				continue
			}
			if g.framing == RTUOverTCP {
				last = req.from
				g.line.hear(req.frame, req.at)
				continue
			}
			g.exchange(req)
		case reply := <-g.replies:
			if g.framing == RTUOverTCP && last != nil && !g.isSilent() {
				g.answer(last, reply)
			}
			// ModbusTCP: a reply after the target timeout, dropped as gateways do.
		}
	}
}

// exchange puts a ModbusTCP request on the line and answers it with the
// addressed meter's reply, or 0Bh after the target timeout. A garbled reply
// (bad CRC) or one from another meter is dropped, as gateways do.
func (g *Gateway) exchange(req gatewayRequest) {
drain: // replies that came after their own request's timeout
	for {
		select {
		case <-g.replies:
		default:
			break drain
		}
	}
	g.line.hear(req.frame, req.at)
	unit, fc := req.frame[0], req.frame[1]
	if unit == broadcastAddress {
		return // nobody answers a broadcast
	}
	g.mu.Lock()
	timeout, noTarget := g.timeout, g.noTarget
	g.mu.Unlock()
	expire := time.NewTimer(timeout)
	defer expire.Stop()
	for {
		select {
		case <-g.done:
			return
		case r := <-g.replies:
			if !crcOK(r) || r[0] != unit || r[1]&0x7F != fc {
				continue
			}
			g.answer(req.from, appendMBAP(nil, mbapADU{txid: req.txid, unit: unit, pdu: r[1 : len(r)-2]}))
			return
		case <-expire.C:
			if !noTarget {
				g.answer(req.from, appendMBAP(nil, mbapADU{txid: req.txid, unit: unit, pdu: exception(fc, exGatewayTarget)}))
			}
			return
		}
	}
}

// answer sends b to a client, or half of it before closing the connection
// (CloseMidReplyNext). A connection that is gone loses it.
func (g *Gateway) answer(c *gatewayConn, b []byte) {
	g.mu.Lock()
	mid := g.midReply > 0
	if mid {
		g.midReply--
	}
	g.mu.Unlock()
	if mid {
		b = b[:max(len(b)/2, 1)]
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = c.Write(b)
	if mid {
		g.drop(c, false)
	}
}

func (g *Gateway) isSilent() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.silent
}

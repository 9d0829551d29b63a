package link

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/simonvetter/modbus"
)

// Framing is how Modbus travels over a TCP connection to a gateway.
type Framing string

const (
	// RTUOverTCP: RTU frames, CRC included, on a TCP stream; the gateway
	// copies bytes to and from the RS485 bus, so the meter's answer window
	// and late replies are the link's business as on a local adapter.
	RTUOverTCP Framing = "rtuovertcp"
	// ModbusTCP: an MBAP header (transaction id, length, unit) instead of the
	// CRC; the gateway runs the RS485 side itself and answers exception 0Bh
	// when the meter stays silent.
	ModbusTCP Framing = "tcp"
)

// defaultGatewayPort is Modbus TCP's registered port, which RTU-over-TCP
// gateways also use by default.
const defaultGatewayPort = "502"

// Gateway is a Modbus gateway (RS485 to Ethernet) in front of the meters,
// named in Config.Device as rtuovertcp://host[:port] or tcp://host[:port].
type Gateway struct {
	Framing Framing
	Address string // host:port
}

// String is the URL form Config.Device takes.
func (g Gateway) String() string { return string(g.Framing) + "://" + g.Address }

// IsGatewayURL reports whether device is meant as a gateway URL (it has a
// scheme), so that its errors are a gateway's and not a path's.
func IsGatewayURL(device string) bool { return strings.Contains(device, "://") }

// ParseGateway parses rtuovertcp://host[:port] or tcp://host[:port]; the
// port defaults to 502, the scheme is case-insensitive.
func ParseGateway(device string) (Gateway, error) {
	scheme, rest, ok := strings.Cut(device, "://")
	if !ok {
		return Gateway{}, fmt.Errorf("%q is not a gateway URL", device)
	}
	f := Framing(strings.ToLower(scheme))
	if f != RTUOverTCP && f != ModbusTCP {
		return Gateway{}, fmt.Errorf("unknown scheme %q: a gateway is rtuovertcp://host:port or tcp://host:port", scheme)
	}
	u, err := url.Parse(string(f) + "://" + rest)
	if err != nil {
		return Gateway{}, fmt.Errorf("not a URL: %w", errors.Unwrap(err))
	}
	switch {
	case u.User != nil:
		return Gateway{}, errors.New("a gateway takes no user:password@")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return Gateway{}, errors.New("a gateway URL has only a host and a port")
	case u.Hostname() == "":
		return Gateway{}, errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = defaultGatewayPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Gateway{}, fmt.Errorf("port %q is not 1–65535", port)
	}
	return Gateway{Framing: f, Address: net.JoinHostPort(u.Hostname(), port)}, nil
}

// errGatewayClosed: the gateway ended the connection (EOF), as one does when
// it reboots or serves another client.
var errGatewayClosed = errors.New("the gateway closed the connection")

// dialGateway connects to g within the request timeout and returns the
// Modbus master for its framing.
func dialGateway(ctx context.Context, g Gateway, s Serial) (port, error) {
	d := net.Dialer{Timeout: s.timeout()}
	conn, err := d.DialContext(ctx, "tcp", g.Address)
	if err != nil {
		return nil, err
	}
	l := tcpLine{conn: conn, writeTimeout: s.timeout()}
	if g.Framing == ModbusTCP {
		return newMBAPPort(l, s), nil
	}
	return newRTUPort(l, s), nil
}

// tcpLine is a TCP connection to a gateway, read in slices like a serial port.
type tcpLine struct {
	conn         net.Conn
	writeTimeout time.Duration
}

func (l tcpLine) Read(b []byte) (int, error) {
	_ = l.conn.SetReadDeadline(time.Now().Add(readSlice))
	n, err := l.conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, nil
	}
	return n, gatewayError(err)
}

func (l tcpLine) Write(b []byte) (int, error) {
	_ = l.conn.SetWriteDeadline(time.Now().Add(l.writeTimeout))
	n, err := l.conn.Write(b)
	return n, gatewayError(err)
}

// flushWait is how long Flush waits for more bytes before it calls the
// input drained: what the gateway had already sent is in the socket buffer.
const flushWait = time.Millisecond

// Flush reads and drops what has arrived, until the socket has nothing more.
func (l tcpLine) Flush() error {
	var buf [256]byte
	for range 1024 { // a gateway streaming garbage must not hold the request forever
		_ = l.conn.SetReadDeadline(time.Now().Add(flushWait))
		n, err := l.conn.Read(buf[:])
		if errors.Is(err, os.ErrDeadlineExceeded) && n == 0 {
			return nil
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return gatewayError(err)
		}
	}
	return nil
}

func (l tcpLine) Close() error { return l.conn.Close() }

// gatewayError names an EOF for what it means on a gateway connection.
func gatewayError(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", errGatewayClosed, err)
	}
	return err
}

// mbapHeaderLen is the MBAP header: transaction id, protocol id (0), length
// of what follows, unit id.
const mbapHeaderLen = 7

// mbapPort is a Modbus TCP master for function 03. A reply carries the
// request's transaction id, so a late reply to an earlier request is
// recognised and dropped: unlike RTU, there is no answer window to wait out.
type mbapPort struct {
	master
	tid uint16 // transaction id of the last request (under mu)
}

func newMBAPPort(l line, s Serial) *mbapPort { return &mbapPort{master: newMaster(l, s)} }

// ReadRegisters reads quantity holding registers (function 03) at addr.
func (p *mbapPort) ReadRegisters(ctx context.Context, unit uint8, addr, quantity uint16) ([]uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := checkQuantity(addr, quantity); err != nil {
		return nil, err
	}
	p.tid++
	req := make([]byte, mbapHeaderLen, mbapHeaderLen+5)
	binary.BigEndian.PutUint16(req[0:], p.tid)
	binary.BigEndian.PutUint16(req[4:], 6) // unit + the 5-byte PDU
	req[6] = unit
	req = append(req, 0x03, byte(addr>>8), byte(addr), byte(quantity>>8), byte(quantity))
	sent := time.Now()
	if _, err := p.line.Write(req); err != nil {
		return nil, fmt.Errorf("write request for %04Xh: %w", addr, err)
	}
	words, err := p.readReply(ctx, unit, quantity, sent.Add(p.timeout))
	if err != nil {
		return nil, fmt.Errorf("read %d registers at %04Xh: %w", quantity, addr, err)
	}
	return words, nil
}

// readReply reads replies until the one to the current transaction; any
// reply to it that is not exactly what was asked is an error, never data.
func (p *mbapPort) readReply(ctx context.Context, unit uint8, quantity uint16, deadline time.Time) ([]uint16, error) {
	var buf [mbapHeaderLen + 253]byte
	for {
		head := buf[:mbapHeaderLen]
		if err := readFull(ctx, p.line, p.closing, head, deadline, true); err != nil {
			return nil, err
		}
		tid, proto, n := binary.BigEndian.Uint16(head[0:]), binary.BigEndian.Uint16(head[2:]), int(binary.BigEndian.Uint16(head[4:]))
		if proto != 0 || n < 3 || n > 254 {
			// Not an MBAP frame: the stream is out of step and no later
			// byte can be trusted to start a frame.
			return nil, fmt.Errorf("MBAP header protocol %d, length %d: %w", proto, n, errGatewayOutOfStep)
		}
		body := buf[mbapHeaderLen : mbapHeaderLen+n-1]
		if err := readFull(ctx, p.line, p.closing, body, deadline, false); err != nil {
			return nil, err
		}
		if tid != p.tid {
			continue // the late reply to an earlier request
		}
		if head[6] != unit {
			return nil, fmt.Errorf("reply from unit %d, want %d: %w", head[6], unit, modbus.ErrBadUnitId)
		}
		switch body[0] {
		case 0x03:
		case 0x83:
			return nil, exceptionError(body[1])
		default:
			return nil, fmt.Errorf("reply with function %02Xh, want 03h: %w", body[0], modbus.ErrProtocolError)
		}
		if int(body[1]) != 2*int(quantity) || len(body) != 2+2*int(quantity) {
			return nil, fmt.Errorf("reply of %d bytes for %d registers: %w", body[1], quantity, modbus.ErrProtocolError)
		}
		words := make([]uint16, quantity)
		for i := range words {
			words[i] = binary.BigEndian.Uint16(body[2+2*i:])
		}
		return words, nil
	}
}

// errGatewayOutOfStep: bytes that cannot start an MBAP frame came; the
// connection is reopened, which is the only way to find a frame start again.
var errGatewayOutOfStep = errors.New("gateway stream out of step")

// classifyGateway turns a dial or connection error into the cause a user can act on.
func classifyGateway(err error) Cause {
	var ne net.Error
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseGatewayRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return CauseGatewayReset
	case errors.Is(err, errGatewayClosed), errors.Is(err, errGatewayOutOfStep):
		return CauseGatewayClosed
	case errors.As(err, &dns):
		return CauseGatewayUnknownHost
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return CauseGatewayUnreachable
	case errors.As(err, &ne) && ne.Timeout():
		return CauseGatewayTimeout
	}
	return CauseError
}

package link

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/simonvetter/modbus"
)

// answerWindow is how long after a request the meter may still answer it
// (REGISTERS.md: "the meter answers within 500 ms"). After a request that
// failed without a complete, valid reply, the next one waits until the window
// has passed and flushes what arrived, so no request ever reads another's reply.
const answerWindow = 500 * time.Millisecond

// rtuPort is a Modbus RTU master for function 03 on a line: a serial port,
// or a TCP connection to a gateway that passes RTU frames (CRC included).
// Requests are serialised by mu; Close stops one in flight within a slice.
type rtuPort struct {
	master
	window     time.Duration
	settleFrom time.Time // a late reply may arrive until this time; zero: the line is clean (under mu)
}

func newRTUPort(l line, s Serial) *rtuPort {
	return &rtuPort{master: newMaster(l, s), window: answerWindow}
}

// master is what every Modbus master on a line shares: one request at a
// time, and a Close that ends the one in flight within a read slice.
type master struct {
	line      line
	timeout   time.Duration
	mu        sync.Mutex // held for a whole request and by Close
	closing   chan struct{}
	closeOnce sync.Once
}

func newMaster(l line, s Serial) master {
	return master{line: l, timeout: s.timeout(), closing: make(chan struct{})}
}

// Close ends a request in flight within a read slice and closes the line.
func (m *master) Close() error {
	m.closeOnce.Do(func() { close(m.closing) })
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.line.Close()
}

// checkQuantity: function 03 reads 1 to 125 registers.
func checkQuantity(addr, quantity uint16) error {
	if quantity < 1 || quantity > 125 {
		return fmt.Errorf("read %d registers at %04Xh: %w", quantity, addr, modbus.ErrUnexpectedParameters)
	}
	return nil
}

// ReadRegisters reads quantity holding registers (function 03) at addr.
func (p *rtuPort) ReadRegisters(ctx context.Context, unit uint8, addr, quantity uint16) ([]uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := checkQuantity(addr, quantity); err != nil {
		return nil, err
	}
	if err := p.settle(ctx); err != nil {
		return nil, err
	}
	req := appendCRC([]byte{unit, 0x03, byte(addr >> 8), byte(addr), byte(quantity >> 8), byte(quantity)})
	sent := time.Now()
	if _, err := p.line.Write(req); err != nil {
		p.settleFrom = sent.Add(p.window)
		return nil, fmt.Errorf("write request for %04Xh: %w", addr, err)
	}
	words, err := p.readReply(ctx, unit, quantity, sent.Add(p.timeout))
	if err != nil && !isException(err) {
		// No complete, valid reply: whatever the meter still sends belongs to this request.
		p.settleFrom = sent.Add(p.window)
	}
	if err != nil {
		return nil, fmt.Errorf("read %d registers at %04Xh: %w", quantity, addr, err)
	}
	return words, nil
}

// settle waits out the answer window of a failed request, then flushes the
// input. It flushes before every request too: it costs one ioctl, and noise
// on the line between requests must not become the start of a reply.
func (p *rtuPort) settle(ctx context.Context) error {
	if wait := time.Until(p.settleFrom); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closing:
			return os.ErrClosed
		}
	}
	p.settleFrom = time.Time{}
	if err := p.line.Flush(); err != nil {
		return fmt.Errorf("flush input: %w", err)
	}
	return nil
}

// readReply reads and checks one reply to a function 03 request for quantity
// registers: anything but a frame of exactly 2×quantity bytes from our unit,
// with a good CRC, is an error and never data.
func (p *rtuPort) readReply(ctx context.Context, unit uint8, quantity uint16, deadline time.Time) ([]uint16, error) {
	var buf [3 + 250 + 2]byte
	head := buf[:3]
	if err := readFull(ctx, p.line, p.closing, head, deadline, true); err != nil {
		return nil, err
	}
	if head[0] != unit {
		return nil, fmt.Errorf("reply from unit %d, want %d: %w", head[0], unit, modbus.ErrBadUnitId)
	}
	switch head[1] {
	case 0x03:
	case 0x83:
		frame := buf[:5]
		if err := readFull(ctx, p.line, p.closing, frame[3:], deadline, false); err != nil {
			return nil, err
		}
		if !checkCRC(frame) {
			return nil, modbus.ErrBadCRC
		}
		return nil, exceptionError(frame[2])
	default:
		return nil, fmt.Errorf("reply with function %02Xh, want 03h: %w", head[1], modbus.ErrProtocolError)
	}
	n := int(head[2])
	if n > 250 {
		return nil, fmt.Errorf("reply of %d bytes: %w", n, modbus.ErrProtocolError)
	}
	frame := buf[:3+n+2]
	if err := readFull(ctx, p.line, p.closing, frame[3:], deadline, false); err != nil {
		return nil, err
	}
	if !checkCRC(frame) {
		return nil, modbus.ErrBadCRC
	}
	if n != 2*int(quantity) {
		return nil, fmt.Errorf("reply of %d bytes for %d registers: %w", n, quantity, modbus.ErrProtocolError)
	}
	words := make([]uint16, quantity)
	for i := range words {
		words[i] = uint16(frame[3+2*i])<<8 | uint16(frame[4+2*i])
	}
	return words, nil
}

// readFull fills b from l in read slices until the deadline, ctx or closing;
// first says no byte of the reply has come yet (a timeout then is "no
// answer", not a short frame).
func readFull(ctx context.Context, l line, closing <-chan struct{}, b []byte, deadline time.Time, first bool) error {
	for got := 0; got < len(b); {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-closing:
			return os.ErrClosed
		default:
		}
		if !time.Now().Before(deadline) {
			if first && got == 0 {
				return modbus.ErrRequestTimedOut
			}
			return fmt.Errorf("%d of %d bytes before the timeout: %w", got, len(b), modbus.ErrShortFrame)
		}
		n, err := l.Read(b[got:])
		got += n
		if err != nil {
			return err
		}
	}
	return nil
}

func exceptionError(code byte) error {
	errs := map[byte]error{
		0x01: modbus.ErrIllegalFunction, 0x02: modbus.ErrIllegalDataAddress, 0x03: modbus.ErrIllegalDataValue,
		0x04: modbus.ErrServerDeviceFailure, 0x05: modbus.ErrAcknowledge, 0x06: modbus.ErrServerDeviceBusy,
		0x08: modbus.ErrMemoryParityError, 0x0A: modbus.ErrGWPathUnavailable, 0x0B: modbus.ErrGWTargetFailedToRespond,
	}
	if err, ok := errs[code]; ok {
		return fmt.Errorf("exception %02Xh: %w", code, err)
	}
	return fmt.Errorf("exception %02Xh: %w", code, modbus.ErrProtocolError)
}

// crc16 is the Modbus CRC (polynomial A001h, initial FFFFh).
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// appendCRC appends the CRC, low byte first as RTU sends it.
func appendCRC(b []byte) []byte {
	crc := crc16(b)
	return append(b, byte(crc), byte(crc>>8))
}

func checkCRC(frame []byte) bool {
	n := len(frame) - 2
	crc := crc16(frame[:n])
	return frame[n] == byte(crc) && frame[n+1] == byte(crc>>8)
}

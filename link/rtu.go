package link

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/simonvetter/modbus"
	"go.bug.st/serial"
)

// answerWindow is how long after a request the meter may still answer it
// (REGISTERS.md: "the meter answers within 500 ms"). After a request that
// failed without a complete, valid reply, the next one waits until the window
// has passed and flushes what arrived, so no request ever reads another's reply.
const answerWindow = 500 * time.Millisecond

// readSlice bounds one blocking read: between slices the request checks its
// ctx, its deadline and Close, so none of them waits for the line. A slice
// that returns nothing is a select timeout, not a busy loop.
const readSlice = 20 * time.Millisecond

// errHungUp: a read returned 0 bytes without an error (go.bug.st/serial says
// "port closed"), which on a tty means the line hung up: the adapter is gone.
var errHungUp = errors.New("serial line hung up")

// rtuPort is a Modbus RTU master for function 03 on a go.bug.st/serial port.
// Requests are serialised by mu; Close stops one in flight within a slice.
type rtuPort struct {
	sp      serial.Port
	unit    uint8
	timeout time.Duration
	window  time.Duration

	mu         sync.Mutex // held for a whole request and by Close
	settleFrom time.Time  // a late reply may arrive until this time; zero: the line is clean
	closing    chan struct{}
	closeOnce  sync.Once
}

// openRTU opens path with the configured line settings. It leaves the modem
// lines alone (InitialStatusBits nil, no DTR/RTS ioctls): a pty rejects those.
// It is the seam tests replace to make an open fail the way a real adapter can.
func openRTU(path string, s Serial) (port, error) {
	mode := &serial.Mode{BaudRate: s.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}
	if mode.BaudRate <= 0 {
		mode.BaudRate = 9600
	}
	switch s.Parity {
	case "even":
		mode.Parity = serial.EvenParity
	case "odd":
		mode.Parity = serial.OddParity
	}
	if s.StopBits == 2 {
		mode.StopBits = serial.TwoStopBits
	}
	sp, err := serial.Open(path, mode)
	if err != nil {
		return nil, openError(path, err)
	}
	if err := sp.SetReadTimeout(readSlice); err != nil {
		_ = sp.Close()
		return nil, fmt.Errorf("open %s: set read timeout: %w", path, err)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	return &rtuPort{sp: sp, unit: s.Address, timeout: timeout, window: answerWindow, closing: make(chan struct{})}, nil
}

// openError gives back the errno go.bug.st/serial folds into its own codes,
// so classifyOpen can tell EACCES (not in dialout) from EBUSY.
func openError(path string, err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PermissionDenied:
			return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
		case serial.PortBusy:
			return &fs.PathError{Op: "open", Path: path, Err: syscall.EBUSY}
		case serial.InvalidSerialPort:
			// The node opened but its termios calls failed: a tty whose device
			// is going or gone (EIO, ENODEV; the library keeps the errno to
			// itself). Seen on a real kernel while the old node was still held.
			return fmt.Errorf("open %s: %w (%w)", path, syscall.ENODEV, err)
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &fs.PathError{Op: "open", Path: path, Err: errno}
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// Close ends a request in flight within a read slice and closes the port.
func (p *rtuPort) Close() error {
	p.closeOnce.Do(func() { close(p.closing) })
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sp.Close()
}

// ReadRegisters reads quantity holding registers (function 03) at addr.
func (p *rtuPort) ReadRegisters(ctx context.Context, addr, quantity uint16) ([]uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if quantity < 1 || quantity > 125 {
		return nil, fmt.Errorf("read %d registers at %04Xh: %w", quantity, addr, modbus.ErrUnexpectedParameters)
	}
	if err := p.settle(ctx); err != nil {
		return nil, err
	}
	req := appendCRC([]byte{p.unit, 0x03, byte(addr >> 8), byte(addr), byte(quantity >> 8), byte(quantity)})
	sent := time.Now()
	if _, err := p.sp.Write(req); err != nil {
		p.settleFrom = sent.Add(p.window)
		return nil, fmt.Errorf("write request for %04Xh: %w", addr, lineError(err))
	}
	words, err := p.readReply(ctx, quantity, sent.Add(p.timeout))
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
	if err := p.sp.ResetInputBuffer(); err != nil {
		return fmt.Errorf("flush input: %w", lineError(err))
	}
	return nil
}

// readReply reads and checks one reply to a function 03 request for quantity
// registers: anything but a frame of exactly 2×quantity bytes from our unit,
// with a good CRC, is an error and never data.
func (p *rtuPort) readReply(ctx context.Context, quantity uint16, deadline time.Time) ([]uint16, error) {
	var buf [3 + 250 + 2]byte
	head := buf[:3]
	if err := p.readFull(ctx, head, deadline, true); err != nil {
		return nil, err
	}
	if head[0] != p.unit {
		return nil, fmt.Errorf("reply from unit %d, want %d: %w", head[0], p.unit, modbus.ErrBadUnitId)
	}
	switch head[1] {
	case 0x03:
	case 0x83:
		frame := buf[:5]
		if err := p.readFull(ctx, frame[3:], deadline, false); err != nil {
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
	if err := p.readFull(ctx, frame[3:], deadline, false); err != nil {
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

// readFull fills b in read slices until the deadline; first says no byte of
// the reply has come yet (a timeout then is "no answer", not a short frame).
func (p *rtuPort) readFull(ctx context.Context, b []byte, deadline time.Time, first bool) error {
	for got := 0; got < len(b); {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-p.closing:
			return os.ErrClosed
		default:
		}
		if !time.Now().Before(deadline) {
			if first && got == 0 {
				return modbus.ErrRequestTimedOut
			}
			return fmt.Errorf("%d of %d bytes before the timeout: %w", got, len(b), modbus.ErrShortFrame)
		}
		n, err := p.sp.Read(b[got:])
		got += n
		if err != nil {
			return lineError(err)
		}
	}
	return nil
}

// lineError names what a failed read, write or ioctl means for the link:
// go.bug.st/serial reports a hung-up tty (read of 0 bytes, no error) as
// PortClosed, the kernel answers EIO once it is hung up.
func lineError(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
		return fmt.Errorf("%w: %w", errHungUp, err)
	}
	return err
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

package link

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"syscall"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// readSlice bounds one blocking read: between slices the request checks its
// ctx, its deadline and Close, so none of them waits for the line. A slice
// that returns nothing is a select timeout, not a busy loop.
const readSlice = 20 * time.Millisecond

// line is the byte stream a Modbus master talks over: a serial port, or a TCP
// connection to a gateway. Read waits at most one read slice and returns 0
// bytes and no error when nothing came; any error means the line is gone.
type line interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Flush() error // drops whatever has arrived and not been read
	Close() error
}

// errHungUp: a read returned 0 bytes without an error (go.bug.st/serial says
// "port closed"), which on a tty means the line hung up: the adapter is gone.
var errHungUp = errors.New("serial line hung up")

// serialLine is a local USB-RS485 adapter.
type serialLine struct{ sp serial.Port }

// openRTU opens path with the configured line settings, for RTU. It leaves
// the modem lines alone (InitialStatusBits nil, no DTR/RTS ioctls): a pty
// rejects those. It is the seam tests replace to make an open fail the way a
// real adapter can.
func openRTU(path string, s Serial, sys sysfs, log *slog.Logger) (port, error) {
	l, err := openSerial(path, s, sys, log)
	if err != nil {
		return nil, err
	}
	return newRTUPort(l, s), nil
}

// openSerial opens the port; an FTDI adapter's latency timer is set to 1 ms
// on the way (see latency.go).
func openSerial(path string, s Serial, sys sysfs, log *slog.Logger) (serialLine, error) {
	if timer, ok := ftdiLatencyTimer(sys, path); ok && timer != "1" {
		// Through an fd of our own, opened first and held across
		// serial.Open: the driver's open (a reset and the line settings,
		// USB control transfers each) runs once, for this fd, and the
		// library's is a second open of an open tty. go.bug.st/serial keeps
		// its fd to itself, and its TIOCEXCL would refuse an open after it.
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return serialLine{}, openError(path, err)
		}
		defer unix.Close(fd)
		if err := setLowLatency(fd); err != nil {
			log.Warn("FTDI latency timer left as it was: the end of every reply may wait for it", "device", path, "latency_timer", timer, "err", err)
		} else {
			log.Debug("FTDI latency timer set to 1 ms", "device", path, "was", timer)
		}
	}
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
		return serialLine{}, openError(path, err)
	}
	if err := sp.SetReadTimeout(readSlice); err != nil {
		_ = sp.Close()
		return serialLine{}, fmt.Errorf("open %s: set read timeout: %w", path, err)
	}
	return serialLine{sp}, nil
}

func (l serialLine) Read(b []byte) (int, error) {
	n, err := l.sp.Read(b)
	return n, lineError(err)
}

func (l serialLine) Write(b []byte) (int, error) {
	n, err := l.sp.Write(b)
	return n, lineError(err)
}

func (l serialLine) Flush() error { return lineError(l.sp.ResetInputBuffer()) }

func (l serialLine) Close() error { return l.sp.Close() }

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
